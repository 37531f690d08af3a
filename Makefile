# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test bench faults docs clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/lfr demo --auto-adjudicate

test: $(STAMP)
	$(BIN)/pytest

# Every fault-injection scenario (tests/faults); figures in tests/results/faults.json.
faults: $(STAMP)
	LFR_HYPOTHESIS_PROFILE=long $(BIN)/pytest tests/faults tests/reliability -m '' -q

bench: $(STAMP)
	$(BIN)/python benchmarks/models.py
	$(BIN)/python benchmarks/matcher.py
	$(BIN)/python benchmarks/pipeline.py
	$(BIN)/python benchmarks/security.py
	$(BIN)/python benchmarks/cameras.py
	$(BIN)/python benchmarks/frame_formats.py

# The documentation site into site/ (git-ignored); `$(BIN)/mkdocs serve` to browse it live.
docs: $(STAMP)
	$(BIN)/lfr docs
	$(BIN)/mkdocs build --strict

clean:
	rm -rf $(VENV) .pytest_cache
