# Two commands on a fresh machine: `make run` (set up and serve) and `make test` (install and test).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: run test lint bench install browser promtool clean lock

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

install: $(BIN)/python browser promtool
	$(BIN)/pip install --quiet -c constraints.txt -e '.[test]'

## Debian's chromium for the dashboard's browser test (Playwright drives it; its own browser download is unreachable).
browser:
	@test -x /usr/bin/chromium || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

## Prometheus's promtool checks and unit-tests the shipped alert rules (tests/test_alert_rules.py runs it).
promtool:
	@command -v promtool >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null; }

## Set everything up and run the all-in-one service on SQLite with demo data (http://127.0.0.1:8000/docs).
run: $(BIN)/python
	$(BIN)/pip install --quiet -c constraints.txt -e .
	$(BIN)/takedown run --demo

## Install the test dependencies, lint, type-check services/ and shared/ (mypy, strict), and run every test on SQLite and PostgreSQL.
test: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/pytest -q -n auto --maxprocesses 4

lint: install
	$(BIN)/ruff check . && $(BIN)/ruff format --check . && $(BIN)/mypy

bench: $(BIN)/python
	$(BIN)/pip install --quiet -c constraints.txt -e '.[test,bench]'
	@command -v wrk >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; }
	$(BIN)/python bench/store.py
	$(BIN)/python bench/notifier.py
	$(BIN)/python bench/intake.py

clean:
	rm -rf $(VENV) takedown.db takedown.db-wal takedown.db-shm

## Pin what the tests passed with: the installed versions become constraints.txt (run after `make test`).
lock: $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test,bench]'
	{ sed -n '1,2p' constraints.txt; $(BIN)/pip freeze --exclude-editable; } > constraints.txt.new && mv constraints.txt.new constraints.txt
