# Edgehouse: the two commands are `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python
PIP     = $(VENV)/bin/pip
STAMP   = $(VENV)/.installed-$(shell sha1sum pyproject.toml | cut -c1-12)

.PHONY: demo test test-slow bench lint schemas clean venv

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -e ".[edge,cloud,sim,demo,dev,routing]"
	rm -f $(VENV)/.installed-*; touch $(STAMP)

venv: $(STAMP)

## Run broker, cloud, two gateways and a simulated fleet for about two minutes.
demo: $(STAMP)
	$(VENV)/bin/edgehouse demo

## The default test run (what CI runs): unit, contract, integration against real Mosquitto and PostgreSQL.
test: $(STAMP)
	$(VENV)/bin/lint-imports
	$(PY) -m pytest -q

## Slow soak/fault suites (kill -9 at scale, long outages); not part of `make test`.
test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow

bench: $(STAMP)
	$(PY) bench/ingest.py
	$(PY) bench/faults.py

schemas: $(STAMP)
	$(VENV)/bin/edgehouse protocols schema --out protocols/schemas

lint: $(STAMP)
	$(VENV)/bin/ruff check .

clean:
	rm -rf $(VENV) var out build *.egg-info
