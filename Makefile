# The two commands that set everything up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint-code typecheck unit bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

## demo: create the environment, install, run hushflow on the bundled example
demo: $(STAMP)
	@echo "== hushflow lint examples/telemetry-block (the deny as users wrote it) =="
	-$(BIN)/hushflow lint examples/telemetry-block
	@echo
	@echo "== hushflow summary examples/telemetry-block =="
	$(BIN)/hushflow summary examples/telemetry-block

## test: install what the tests need, then ruff, mypy and pytest
test: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/mypy
	$(BIN)/pytest

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_lint.py

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache .mypy_cache .ruff_cache
