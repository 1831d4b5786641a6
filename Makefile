# `make demo` and `make test` do all the set-up on a fresh machine with Python 3.10+.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test bench screenshots clean

# two runs side by side, one torch thread each: on 2 cores faster than one run on two threads
demo: $(STAMP)
	$(BIN)/bindbench run --workers 2

test: $(STAMP)
	$(BIN)/ruff check src tests tools
	$(BIN)/python -m pytest

bench: $(STAMP)
	$(BIN)/bindbench bench

# the newest `make demo` report (or REPORT=path/report.html) as a reader sees it, in headless
# Chromium (Debian: apt-get install chromium): pages of 1,400 px in runs/screenshots/
screenshots: $(STAMP)
	$(BIN)/python tools/screenshots.py $${REPORT:-$$(ls -td runs/default-quick-*/ | head -1)report.html} runs/screenshots

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# torch is pinned in constraints.txt (the CPU wheel); an unpinned torch pulls a CUDA build.
$(STAMP): $(BIN)/python pyproject.toml constraints.txt
	$(BIN)/python -m pip install -q -c constraints.txt torch
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[dev,parquet,ray,mlflow,tensorboard,hf]'
	$(BIN)/bindbench list > /dev/null  # builds the listing's cache (bindbench.catalog): list starts fast
	touch $(STAMP)

clean:
	rm -rf $(VENV) runs
