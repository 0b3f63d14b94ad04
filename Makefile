# The two commands of the README: `make demo` and `make test`. Both set up .venv first.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# torch is pinned to the CPU build that lies on disk on the reference machine; an unpinned
# torch pulls a multi-GB CUDA build. Override with `make TORCH=torch==X` elsewhere.
TORCH ?= torch==2.13.0
# the tests run with at most 2 OpenMP threads per process; the demo decides its own (model.threads=0)
TEST_THREADS ?= 2

.PHONY: setup demo test test-slow test-dist bench check-vllm clean

$(BIN)/.installed: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q "$(TORCH)"
	$(BIN)/pip install -q -e ".[test]"
	touch $@

setup: $(BIN)/.installed

demo: setup
	$(BIN)/groupo demo --force

test: setup
	OMP_NUM_THREADS=$(TEST_THREADS) $(BIN)/python -m pytest

test-slow: setup
	OMP_NUM_THREADS=$(TEST_THREADS) $(BIN)/python -m pytest -m slow

# 2 processes (torchrun, gloo) vs 1: prints the largest weight difference per case
test-dist: setup
	OMP_NUM_THREADS=1 $(BIN)/python scripts/dist_check.py

# groupo vs TRL side by side (TRL in its own venv, same torch pin): fp32 pairs (the targets) and bf16
# pairs, ~15 min on 2 cores; prints target lines at the end.
# `make bench BENCH_ARGS="--sizes 1M --reps 1"` for a quick look; bench/run.py --help for the options.
BENCH_VENV ?= .venv-bench
BENCH_ARGS ?=
.PHONY: bench

$(BENCH_VENV)/.installed: bench/requirements.txt
	$(PY) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/pip install -q "$(TORCH)"
	$(BENCH_VENV)/bin/pip install -q -r bench/requirements.txt
	$(BENCH_VENV)/bin/pip install -q --no-deps -e .
	touch $@

bench: setup $(BENCH_VENV)/.installed
	$(BIN)/python bench/run.py --trl-python $(BENCH_VENV)/bin/python $(BENCH_ARGS)

# groupo's vLLM calls against the pinned vLLM's source (no GPU, no venv: the checker is plain Python
# and never imports vLLM): downloads the wheel without its dependencies (~300 MB), checks that its API
# equals tests/vllm_api.json (which the CPU tests' fake vllm is built from), then every call in
# groupo/rollout/vllm.py against it. Another version: `make check-vllm VLLM_VERSION=0.31.0`;
# re-record the JSON: `make check-vllm VLLM_CHECK_ARGS=--write`.
VLLM_VERSION ?= $(shell $(PY) scripts/check_vllm.py --pinned)
VLLM_WHEELS ?= /tmp/groupo-vllm-wheels
VLLM_CHECK_ARGS ?=

check-vllm:
	$(PY) -m pip download -q --no-deps --only-binary=:all: --dest $(VLLM_WHEELS) "vllm==$(VLLM_VERSION)"
	$(PY) scripts/check_vllm.py $(VLLM_CHECK_ARGS) \
		--wheel "$$(ls $(VLLM_WHEELS)/vllm-$(VLLM_VERSION)-*.whl | head -n 1)"

clean:
	rm -rf $(VENV) runs
