# The two commands of the README: `make demo` and `make test`. Both set up .venv first.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# torch is pinned to the CPU build that lies on disk on the reference machine; an unpinned
# torch pulls a multi-GB CUDA build. Override with `make TORCH=torch==X` elsewhere.
TORCH ?= torch==2.13.0
export OMP_NUM_THREADS ?= 2

.PHONY: setup demo test test-slow test-dist bench clean

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
	$(BIN)/python -m pytest

test-slow: setup
	$(BIN)/python -m pytest -m slow

# 2 processes (torchrun, gloo) vs 1: prints the largest weight difference per case
test-dist: setup
	OMP_NUM_THREADS=1 $(BIN)/python scripts/dist_check.py

# groupo vs TRL side by side (TRL in its own venv, same torch pin); prints target lines at the end
.venv-bench/.installed:
	$(PY) -m venv .venv-bench
	.venv-bench/bin/pip install -q "$(TORCH)"
	.venv-bench/bin/pip install -q trl==1.16.0 transformers==5.24.0 accelerate==1.15.0 datasets==5.2.0
	touch $@

bench: setup .venv-bench/.installed
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) runs
