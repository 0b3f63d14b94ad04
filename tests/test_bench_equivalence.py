"""groupo's loss and gradients equal TRL GRPOTrainer's on a fixed batch (bench/equivalence.py).

Slow, and needs TRL: run in-process when ``trl`` imports here, else with the bench
virtualenv (``.venv-bench``, made by ``make bench``); skipped when neither is there.
"""
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BENCH_PY = ROOT / ".venv-bench" / "bin" / "python"


@pytest.mark.slow
def test_groupo_loss_and_gradients_match_trl():
    if importlib.util.find_spec("trl") is not None:
        py = sys.executable
    elif BENCH_PY.exists():
        py = str(BENCH_PY)
    else:
        pytest.skip("trl is not installed here and there is no .venv-bench (make bench creates it)")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run([py, str(ROOT / "bench" / "equivalence.py"), "--json"], capture_output=True, text=True,
                       env=env, timeout=900, cwd=ROOT)
    line = next((ln for ln in r.stdout.splitlines() if ln.startswith("RESULT_JSON ")), None)
    assert line is not None, r.stdout[-2000:] + r.stderr[-4000:]
    rows = json.loads(line[len("RESULT_JSON "):])
    checked = [x for x in rows if not x["informative"]]
    assert {x["beta"] for x in checked} == {0.0, 0.04}
    for x in checked:
        assert x["params_compared"] > 0 and not x["params_missing"], x
        assert x["loss_abs_diff"] <= 1e-5 and x["grad_max_abs_diff"] <= 1e-5, x
    assert r.returncode == 0, r.stdout[-2000:]
