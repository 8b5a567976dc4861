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

# uv installs the pinned set in about 10 s, where pip took 55 s here (pip resolves, unpacks
# and writes one package at a time); pip installs it where uv cannot be had or fails. Neither
# compiles bytecode up front (pip: --no-compile; uv by default): Python compiles what it
# imports on first use, and compiling every file of every package took 40 s here.
UV     := $(BIN)/uv
INSTALL = { [ -x $(UV) ] && $(UV) pip install --quiet --python $(BIN)/python -c constraints.txt \
	  $(1); } || { [ ! -x $(UV) ] || echo "make install: uv failed: installing with pip"; \
	  $(PIP) --no-compile $(1); }
# pip finds the torch wheel on this machine's disk through its find-links (environment or
# pip.conf); uv reads only its own settings, so pip's are handed on: without them uv would
# take torch 2.13.0 from PyPI, a CUDA build of several GB
FIND_LINKS := $(or $(PIP_FIND_LINKS),$(shell $(PYTHON) -m pip config get global.find-links 2>/dev/null))
ifneq ($(FIND_LINKS),)
export UV_FIND_LINKS ?= $(FIND_LINKS)
endif

# Re-install only when the declared or pinned dependencies change.
$(RUNTIME): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	test -x $(UV) || $(PIP) uv || echo "make install: no uv: installing with pip"
	$(call INSTALL,-e .)
	touch $(RUNTIME)

EXTRAS := .[dev,launchers,optuna,tables,mlflow]
$(STAMP): $(RUNTIME)
	$(call INSTALL,-e '$(EXTRAS)')
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
# three pytest workers (pytest-xdist) on two cores: the third fills the time the others
# spend waiting on the processes they start and on SLURM (pytest 8 min 53 s with two, 8 min
# 0 s with three here). A file's tests stay on one worker, so its module-scoped fixtures
# (the runs its tests read) run once. --no-loadscope-reorder: files go out in
# tests/conftest.py's order (longest first), not xdist's (most tests first), which sent the
# minutes-long SLURM file out last, to run alone at the end
PYTEST_WORKERS ?= -n 3 --dist loadfile --no-loadscope-reorder
test: lint
	@export SLURM_LOCAL_DIR=$(SLURM_LOCAL_DIR) SLURM_CONF=$(SLURM_LOCAL_DIR)/slurm.conf; \
	scripts/slurm_local.sh up >/dev/null || echo "make test: no local SLURM: the slurm tests will skip"; \
	trap 'scripts/slurm_local.sh down' EXIT; trap 'exit 130' INT TERM; \
	$(BIN)/python -m pytest $(PYTEST_WORKERS) --durations=15 $(ARGS)

benchmark: install
	$(BIN)/python scripts/benchmark.py $(ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache src/*.egg-info
