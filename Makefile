# One-command set-up on a fresh machine: `make run` and `make test` create the
# virtualenv, install the project (pip; torch from the machine's wheel cache when
# present) and run. The venv is reused while pyproject.toml is unchanged.
VENV    ?= .venv
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.installed-$(shell sha256sum pyproject.toml | cut -c1-16)
export KEDRO_DISABLE_TELEMETRY := true
export PATH := $(abspath $(VENV))/bin:$(PATH)

.PHONY: install run test test-fast lint clean-data

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install -q -e '.[dev]'
	rm -f $(VENV)/.installed-*
	touch $@

install: $(STAMP)

## train + evaluate the default grid (embedded datasets), then print R@1 / MAP@R
## per method and dataset and the report's path (`dvc metrics show` has them all)
run: install
	dvc repro
	$(PY) -m dml_pipelines.run_summary

## the whole suite, slow end-to-end tests included (what CI runs)
test: install
	$(PY) -m pytest -q -m "not gpu"

## unit tests only
test-fast: install
	$(PY) -m pytest -q -m "not gpu and not slow"

lint: install
	$(VENV)/bin/ruff format --check src tests benchmarks
	$(VENV)/bin/ruff check src tests benchmarks

.PHONY: viz exp-show

## static kedro-viz site of every pipeline in build/ (serve it: `kedro viz run`
## for the live app, or any static server on build/)
viz: install
	$(VENV)/bin/kedro viz build

## experiments side by side in under 160 columns: the parameters that differ
## between the experiments and R@1 / MAP@R (mean over seeds, percent) of the
## methods they touch, from the report's summary.json (`dvc exp show` has all)
exp-show:
	python -m dml_pipelines.run_summary --experiments
