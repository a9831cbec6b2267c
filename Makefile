# Edgehouse: the two commands are `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python
PIP     = $(VENV)/bin/pip
HASH   := $(shell sha1sum pyproject.toml | cut -c1-12)
# The demo retrains a model in the cloud (TensorFlow, train extra); the tests need every extra.
DEMO_STAMP = $(VENV)/.demo-$(HASH)
TEST_STAMP = $(VENV)/.test-$(HASH)

.PHONY: demo test test-slow bench lint schemas clean

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip

$(DEMO_STAMP): pyproject.toml | $(VENV)/bin/python
	$(PIP) install -q -e ".[edge,cloud,sim,demo,train]"
	touch $@

$(TEST_STAMP): pyproject.toml | $(VENV)/bin/python
	$(PIP) install -q -e ".[edge,cloud,sim,demo,routing,train,dev]"
	touch $@ $(DEMO_STAMP)

## Run broker, cloud, two gateways and a simulated fleet for about two minutes.
demo: $(DEMO_STAMP)
	$(VENV)/bin/edgehouse demo

## The default test run (what CI runs): unit, contract and end-to-end tests against real
## Mosquitto and PostgreSQL. Slow soak/fault suites are excluded (see test-slow).
test: $(TEST_STAMP)
	$(VENV)/bin/lint-imports
	$(PY) -m pytest -q

## Slow soak/fault suites; not part of `make test`.
test-slow: $(TEST_STAMP)
	$(PY) -m pytest -q -m slow

## Benchmarks of the backbone (each prints its figures; see README "Benchmarks").
bench: $(TEST_STAMP)
	$(PY) bench/ingest.py
	$(PY) bench/ingest.py --models
	$(PY) bench/faults.py

schemas: $(TEST_STAMP)
	$(VENV)/bin/edgehouse protocols schema

lint: $(TEST_STAMP)
	$(VENV)/bin/ruff check .

clean:
	rm -rf $(VENV) var build *.egg-info
