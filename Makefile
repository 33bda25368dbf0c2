# Signpost — the two set-up commands are `make run` and `make test` (see README.md).
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
RASA := $(VENV)/bin/rasa
export PYTHONPATH := $(CURDIR)
export SQLALCHEMY_SILENCE_UBER_WARNING := 1
export TF_CPP_MIN_LOG_LEVEL := 2
export RASA_TELEMETRY_ENABLED := false

.PHONY: run test test-fast train check validate bench clean install browser-deps reload

$(VENV)/.installed: requirements.txt requirements-dev.txt constraints.txt
	@py=$$(scripts/find-python310.sh) || exit 1; \
	if [ ! -x $(PY) ] || ! $(PY) -c 'import sys; sys.exit(0 if sys.version_info[:2]==(3,10) else 1)'; then \
	  echo "Creating $(VENV) with $$py"; rm -rf $(VENV); $$py -m venv $(VENV) || exit 1; fi
	$(PIP) install --quiet --upgrade "pip<24.1"
	$(PIP) install --quiet -r requirements-dev.txt -c constraints.txt
	$(PIP) check
	@touch $@

install: $(VENV)/.installed

## Install Chromium for the browser tests (Debian packages; needs root or sudo).
browser-deps:
	@command -v chromium >/dev/null 2>&1 || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq chromium chromium-driver >/dev/null; }

train: install
	$(PY) -m bot train

run: install
	$(PY) -m bot run

validate: install
	$(PY) -m bot build-responses
	$(RASA) data validate --domain domain --data data/nlu data/rules data/stories --config config.yml --fail-on-warnings

## Fast inner loop: unit tests only (no servers, no training).
test-fast: install
	$(PY) -m pytest -q -m "not e2e and not browser" tests

## The whole suite: validate, train once, unit + end-to-end + browser tests, Rasa story tests.
## (Browser tests run in their own pytest process: Playwright's sync API keeps an event loop
## running for the session, which would break the asyncio tests.)
test: install browser-deps validate train
	$(PY) -m pytest -q -m "not browser" tests
	$(PY) -m pytest -q -m browser tests
	$(RASA) test core --stories tests/stories --model models/$$($(PY) -c 'from bot.cli import current_model; print(current_model().name)') --fail-on-prediction-errors --out var/results

bench: install train
	$(PY) bench/run_all.py

clean:
	rm -rf var/results .pytest_cache

## Validate everything staff edit, with file and line for each problem.
check: install
	$(PY) -m bot check

## Train if needed and load the new model into every running Rasa instance (no downtime).
reload: install
	$(PY) -m bot reload
