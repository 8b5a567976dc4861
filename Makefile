# Two commands do all set-up on a fresh machine: `make train` and `make test`.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
ARGS   ?=

.PHONY: install train test lint format benchmark clean

install: $(STAMP)

# Re-install only when the declared or pinned dependencies change.
$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev,launchers]'
	touch $(STAMP)

train: install
	$(BIN)/python train.py $(ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

test: lint
	$(BIN)/python -m pytest $(ARGS)

benchmark: install
	$(BIN)/python scripts/benchmark.py $(ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache src/*.egg-info
