# Two entry points: `make demo` (the main job) and `make test` (the whole suite, as CI runs it).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test check setup protos system-packages

# `make demo ARGS=--keep-running` keeps everything up after the shift, the desk's screen too.
demo: setup
	$(BIN)/baken demo $(ARGS)

# The suite in two processes (pytest-xdist), then what must run by itself.
test: setup check system-packages
	$(BIN)/pytest -n 2 -m "not alone"
	$(BIN)/pytest -m alone

# Chromium, chromedriver and docker-compose, from Debian, for the browser tests (the report, the
# desk's screen) and the compose check.
system-packages:
	bash scripts/system-packages.sh

# Static checks: generated code fresh, protos linted and compatible, lint, format, types, and
# the import contract (.importlinter: the layers, no cycles).
check: setup
	$(BIN)/python scripts/protos.py check
	$(BIN)/python scripts/protos.py lint
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet --editable '.[dev]'
	touch $@

# Regenerate baken/**/v1/*_pb2*.py(i) after editing proto/.
protos: setup
	$(BIN)/python scripts/protos.py gen
