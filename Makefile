# The two commands of the README:
#   make demo   set up (venv, Java check, Delta JARs), then run the whole pipeline on generated data
#   make test   set up, then lint, type-check and run the test suite
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

.PHONY: demo test lint setup clean bench

setup:
	@echo "environment: $(VENV)"

demo:
	$(PY) -m spotrec pipeline --config conf/demo.yaml $(DEMO_ARGS)

lint:
	$(VENV)/bin/ruff check spotrec jobs tests benchmarks
	$(VENV)/bin/ruff format --check spotrec jobs tests benchmarks
	$(VENV)/bin/mypy spotrec

test: lint
	$(PY) -m pytest $(PYTEST_ARGS)

clean:
	rm -rf warehouse spark-warehouse metastore_db .pytest_cache .mypy_cache
