# cmrseg: two commands on a fresh machine: `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
export WANDB_MODE ?= offline

.PHONY: install lock demo test test-all lint format clean

install: $(STAMP)

# Exact versions from constraints.txt (the lock). torch first: that picks the CPU wheel on disk
# instead of a multi-GB CUDA build.
$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -c constraints.txt torch==2.13.0
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

# Rewrite constraints.txt from the ranges in pyproject.toml (newest matching releases).
lock:
	rm -rf $(VENV)-lock
	$(PYTHON) -m venv $(VENV)-lock
	$(VENV)-lock/bin/pip install --quiet torch==2.13.0
	$(VENV)-lock/bin/pip install --quiet '.[dev]'
	{ head -n 2 constraints.txt; $(VENV)-lock/bin/pip freeze --all | grep -v '^pip=' | grep -v '^cmrseg' | sed 's/+cpu$$//'; } > constraints.txt.new
	mv constraints.txt.new constraints.txt
	rm -rf $(VENV)-lock

# synthesize the default cohort, train the U-Net, evaluate it, predict new patients: outputs/demo/
demo: install
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" bash experiments/demo.sh outputs/demo

test: install
	$(PY) -m pytest -m "not slow" -q

test-all: install
	$(PY) -m pytest -q

# ruff, and notebooks committed without outputs (nbstripout, as the pre-commit hook does)
lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/nbstripout --verify notebooks/*.ipynb

format: install
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

clean:
	rm -rf $(VENV) outputs multirun .pytest_cache .ruff_cache
