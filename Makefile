# The two commands of the README:
#   make demo       set up (venv, Java check, Delta JARs), then run the whole pipeline on generated data
#   make test       set up, then lint, type-check, check the import layers and run the full test suite (CI)
# and for development:
#   make test-fast  the unit and model tests only (no end-to-end pipeline, notebook, cluster or whole-step runs)
# Both do their own setup through scripts/setup.sh, which reuses one environment per machine.
SHELL := /bin/bash
CACHE ?= $(HOME)/.cache/spotrec
DELTA_JAR_VERSION ?= 4.4.0
export SPOTREC_DELTA_JARS ?= $(CACHE)/jars/delta-$(DELTA_JAR_VERSION)
export PYTHONPATH := $(CURDIR)$(if $(PYTHONPATH),:$(PYTHONPATH))
export PYSPARK_PYTHON = $(VENV)/bin/python
VENV = $(shell scripts/setup.sh)
PY = $(VENV)/bin/python
DEMO_ARGS ?=
PYTEST_ARGS ?=

.PHONY: demo test test-fast lint setup clean bench

setup:
	@echo "environment: $(VENV)"

demo:
	$(PY) -m spotrec pipeline --config conf/demo.yaml $(DEMO_ARGS)

lint:
	$(VENV)/bin/ruff check spotrec jobs tests benchmarks
	$(VENV)/bin/ruff format --check spotrec jobs tests benchmarks
	$(VENV)/bin/mypy spotrec
	$(VENV)/bin/lint-imports

test: lint
	$(PY) -m pytest --durations=15 $(PYTEST_ARGS)

test-fast:
	$(PY) -m pytest -m "not slow and not cluster and not integration" --durations=10 $(PYTEST_ARGS)

clean:
	rm -rf warehouse spark-warehouse metastore_db .pytest_cache .mypy_cache
