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
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev,launchers,optuna]'
	touch $(STAMP)

train: install
	$(BIN)/python train.py $(ARGS)

# ruff, then the architecture: import-linter's contracts in pyproject.toml (layers, no cycle)
lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports --no-cache

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# The slurm tests (tests/test_slurm.py) run on a throwaway local SLURM, started before pytest
# where it can be (root, Debian) and always stopped after it; elsewhere they skip.
SLURM_LOCAL_DIR ?= /tmp/reglab-slurm
test: lint
	@export SLURM_LOCAL_DIR=$(SLURM_LOCAL_DIR) SLURM_CONF=$(SLURM_LOCAL_DIR)/slurm.conf; \
	scripts/slurm_local.sh up >/dev/null || echo "make test: no local SLURM: the slurm tests will skip"; \
	trap 'scripts/slurm_local.sh down' EXIT; trap 'exit 130' INT TERM; \
	$(BIN)/python -m pytest $(ARGS)

benchmark: install
	$(BIN)/python scripts/benchmark.py $(ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache src/*.egg-info
