# Two commands on a fresh machine: `make run` (set up and serve) and `make test` (install and test).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: run test lint bench install browser nginx promtool clean lock audit secrets

# The venv's own pip is the one that checks the hashes; the lock then puts its pinned pip in its place.
$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Every package from the hash-locked requirements.lock (pip refuses any file whose hash differs), then the project
# itself without dependencies: nothing is resolved at install time.
install: $(BIN)/python browser nginx promtool
	$(BIN)/pip install --quiet --require-hashes -r requirements.lock
	$(BIN)/pip install --quiet --no-deps -e .

## Debian's chromium for the dashboard's browser test (Playwright drives it; its own browser download is unreachable).
browser:
	@test -x /usr/bin/chromium || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

## Debian's nginx for tests/ops/test_proxy.py, which runs ops/nginx/takedown.conf unprivileged in a temp prefix.
nginx:
	@test -x /usr/sbin/nginx || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx >/dev/null; }

## Prometheus's promtool checks and unit-tests the shipped alert rules (tests/test_alert_rules.py runs it).
promtool:
	@command -v promtool >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null; }

## Set everything up and run the all-in-one service on SQLite with demo data (http://127.0.0.1:8000/docs).
## Loopback is allow-listed so that the demo platform's webhook, this process's demo receiver, is pushed to.
run: $(BIN)/python
	$(BIN)/pip install --quiet --require-hashes -r requirements-runtime.lock
	$(BIN)/pip install --quiet --no-deps -e .
	TAKEDOWN_WEBHOOK_ALLOW_LIST=$${TAKEDOWN_WEBHOOK_ALLOW_LIST:-'["127.0.0.1"]'} $(BIN)/takedown run --demo

## Install the test dependencies, lint, type-check services/ and shared/ (mypy, strict), and run every test on SQLite and PostgreSQL.
test: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/pytest -q -n auto --maxprocesses 4

lint: install
	$(BIN)/ruff check . && $(BIN)/ruff format --check . && $(BIN)/mypy

bench: $(BIN)/python
	$(BIN)/pip install --quiet --require-hashes -r requirements.lock
	$(BIN)/pip install --quiet --no-deps -e .
	@command -v wrk >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; }
	$(BIN)/python bench/store.py
	$(BIN)/python bench/notifier.py
	$(BIN)/python bench/intake.py

## The secret files docker-compose.yml mounts (./secrets/*.txt): random passwords and keys; existing ones are kept.
secrets:
	$(PYTHON) ops/make_secrets.py secrets

clean:
	rm -rf $(VENV) takedown.db takedown.db-wal takedown.db-shm

## Re-lock after a change to pyproject.toml: uv keeps every version already in requirements.lock (to move one:
## `$(BIN)/uv pip compile ... --upgrade-package NAME`), adds hashes of every file of each release, and derives the
## image's requirements-runtime.lock from it (the same versions, runtime packages only).
lock: install
	$(BIN)/uv pip compile pyproject.toml --extra test --extra bench --extra tools --generate-hashes \
		--python-version 3.11 --custom-compile-command "make lock" --quiet -o requirements.lock
	$(BIN)/uv pip compile pyproject.toml --generate-hashes -c requirements.lock \
		--python-version 3.11 --custom-compile-command "make lock" --quiet -o requirements-runtime.lock

## Known vulnerabilities in every locked package (PyPI's advisories; AUDIT_SERVICE=osv for OSV's). --strict: a package
## that could not be looked up fails the audit too, so an unreachable advisory service never passes for a clean one.
AUDIT_SERVICE ?= pypi
audit: install
	$(BIN)/pip-audit --requirement requirements.lock --require-hashes --disable-pip --strict \
		--vulnerability-service $(AUDIT_SERVICE) --progress-spinner off
