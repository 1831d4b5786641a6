# `make demo` and `make test` do all the set-up on a fresh machine with Python 3.10+.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test bench clean

# two runs side by side, one torch thread each: on 2 cores faster than one run on two threads
demo: $(STAMP)
	$(BIN)/bindbench run --workers 2

test: $(STAMP)
	$(BIN)/ruff check src tests
	$(BIN)/python -m pytest

bench: $(STAMP)
	$(BIN)/bindbench bench

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# torch is pinned in constraints.txt (the CPU wheel); an unpinned torch pulls a CUDA build.
$(STAMP): $(BIN)/python pyproject.toml constraints.txt
	$(BIN)/python -m pip install -q -c constraints.txt torch
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[dev,parquet,ray]'
	touch $(STAMP)

clean:
	rm -rf $(VENV) runs
