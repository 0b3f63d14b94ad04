#!/usr/bin/env bash
# Render RUN_DIR/report.html to a PNG with headless chromium (for eyeballing reports).
# Usage: scripts/screenshot_report.sh RUN_DIR OUT.png
# Needs /usr/bin/chromium (e.g. `apt-get install -y chromium`); nothing else depends on it.
set -euo pipefail
if [ $# -ne 2 ]; then
  echo "usage: $0 RUN_DIR OUT.png" >&2
  exit 2
fi
run_dir=$1
out=$2
chrome=/usr/bin/chromium
report="$(cd "$run_dir" && pwd)/report.html"
if [ ! -x "$chrome" ]; then
  echo "skip: $chrome not found" >&2
  exit 0
fi
if [ ! -f "$report" ]; then
  echo "error: $report not found (write it with groupo.eval.report.write_report)" >&2
  exit 1
fi
case "$out" in /*) ;; *) out="$(pwd)/$out" ;; esac
profile=$(mktemp -d)
trap 'rm -rf "$profile"' EXIT
"$chrome" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
  --disable-background-networking --disable-component-update --disable-sync \
  --user-data-dir="$profile" --screenshot="$out" --window-size=1200,${WINDOW_HEIGHT:-2400} \
  "file://$report"
echo "wrote $out"
