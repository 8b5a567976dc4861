# Two commands do all set-up on a fresh machine: `make train` and `make test`.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
# .runtime: what `make train` needs (reglab and its dependencies); .installed: that and the
# test, lint, launcher, Optuna, Parquet (tables) and MLflow extras, for `make test`
RUNTIME := $(VENV)/.runtime
STAMP  := $(VENV)/.installed
PIP    := $(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt
ARGS   ?=
# Python caches compiled bytecode (.pyc) beside what it imports; an environment that sets
# PYTHONDONTWRITEBYTECODE (as this project's machines do) makes every process compile torch
# and Lightning from source again: ~20 s of CPU per `python` here, paid by each of the test
# suite's subprocesses. The cache lives in .venv and git-ignored __pycache__/ folders.
unexport PYTHONDONTWRITEBYTECODE

.PHONY: install train test lint format benchmark clean

install: $(STAMP)

# Re-install only when the declared or pinned dependencies change. --no-compile: Python
# compiles what it imports on first use; compiling every file of every package up front
# took 40 s of a fresh `make train` here.
$(RUNTIME): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) --no-compile -e .
	touch $(RUNTIME)

$(STAMP): $(RUNTIME)
	$(PIP) --no-compile -e '.[dev,launchers,optuna,tables,mlflow]'
	touch $(STAMP)

train: $(RUNTIME)
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
# two pytest workers (pytest-xdist) on two cores; a file's tests stay on one worker, so its
# module-scoped fixtures (the runs its tests read) run once. --no-loadscope-reorder: files go
# out in tests/conftest.py's order (longest first), not xdist's (most tests first), which
# sent the minutes-long SLURM file out last, to run alone at the end
PYTEST_WORKERS ?= -n 2 --dist loadfile --no-loadscope-reorder
test: lint
	@export SLURM_LOCAL_DIR=$(SLURM_LOCAL_DIR) SLURM_CONF=$(SLURM_LOCAL_DIR)/slurm.conf; \
	scripts/slurm_local.sh up >/dev/null || echo "make test: no local SLURM: the slurm tests will skip"; \
	trap 'scripts/slurm_local.sh down' EXIT; trap 'exit 130' INT TERM; \
	$(BIN)/python -m pytest $(PYTEST_WORKERS) --durations=15 $(ARGS)

benchmark: install
	$(BIN)/python scripts/benchmark.py $(ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache src/*.egg-info
