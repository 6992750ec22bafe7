# `make demo`: set everything up and run the demo. `make test`: set up and run the tests.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# OpenMP busy-waiting makes torch 10x slower on a loaded 2-core machine.
export OMP_WAIT_POLICY ?= PASSIVE

.PHONY: demo test lint typecheck docs bench clean

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[test]'
	touch $@

demo: $(VENV)/.installed
	$(BIN)/seqae demo --out seqae-demo

lint: $(VENV)/.installed
	$(BIN)/ruff check seqae tests benchmarks

typecheck: $(VENV)/.installed
	KERAS_BACKEND=torch $(BIN)/mypy seqae

# The API site from the docstrings (site/); warnings are errors.
docs: $(VENV)/.installed
	NO_MKDOCS_2_WARNING=1 KERAS_BACKEND=torch $(BIN)/mkdocs build --strict --quiet

test: lint typecheck docs
	$(BIN)/python -m pytest

bench: $(VENV)/.installed
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[bench]'
	$(BIN)/python benchmarks/throughput.py
	$(BIN)/python benchmarks/words.py

clean:
	rm -rf $(VENV) seqae-demo site .pytest_cache .ruff_cache .mypy_cache
