# CSE Gateway — every command a person or CI runs.
#   make demo   run a small gateway network on 127.0.0.1, show messages flowing, keep it
#               and the operator console up until Ctrl-C
#   make test   create .venv, install what the tests need (OS packages too), run the suite
#   make check  ruff + mypy --strict
#   make bench  run every benchmark under bench/ and print the figures

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: all venv os-deps test test-unit test-integration check bench demo clean

all: test

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test,dev]'
	touch $(STAMP)

venv: $(STAMP)

os-deps:
	@bash scripts/os-deps.sh

test: venv os-deps
	$(PY) -m pytest -q tests

test-unit: venv
	$(PY) -m pytest -q -m "not integration" tests

test-integration: venv os-deps
	$(PY) -m pytest -q -m integration tests

check: venv
	$(VENV)/bin/ruff check gateway transports tests bench
	$(VENV)/bin/mypy

bench: venv os-deps
	$(PY) -m bench

demo: venv os-deps
	$(PY) -m gateway demo --keep-running

clean:
	rm -rf $(VENV) build dist .pytest_cache .mypy_cache .ruff_cache
