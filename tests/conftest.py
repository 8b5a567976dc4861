"""Shared helpers: run reglab in-process (`train_api`) or as a user would (`run_cli`)."""

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

# Under pytest-xdist each worker is a process beside the others: torch's default of one
# thread per core would put workers × cores OpenMP threads on the cores, and its spinning
# threads then slow small runs tenfold (measured here: a 1.4 s fit took 23 s). Each worker,
# and every run it starts, gets its share of the cores; set before torch is imported.
if "PYTEST_XDIST_WORKER_COUNT" in os.environ and "OMP_NUM_THREADS" not in os.environ:
    _share = len(os.sched_getaffinity(0)) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"])
    os.environ["OMP_NUM_THREADS"] = str(max(1, _share))

# runs with logger=mlflow that a test does not point elsewhere (the CLI cases) track into a
# throwaway store, not the repository's mlruns/ (conf/logger/mlflow.yaml reads the variable)
os.environ.setdefault("MLFLOW_TRACKING_URI", Path(tempfile.mkdtemp(prefix="mlruns-")).as_uri())

import pytest

import reglab

ROOT = Path(__file__).resolve().parents[1]

# the scalars every default run logs to TensorBoard (and their last values to metrics.json)
SCALAR_TAGS = frozenset(
    {
        "train/loss",
        "train/data_loss",
        "train/penalty",
        "train/acc",
        "val/loss",
        "val/acc",
        "test/loss",
        "test/acc",
        "test/nll",
        "test/ece",
        "test/brier",
        "weights/l1_norm",
        "weights/l2_norm",
        "weights/sparsity",
        "best_step",
        "stopped_step",
        "val/best",
    }
)


@pytest.fixture(autouse=True)
def restore_torch_threads():
    """`threads=N` overrides are process-wide: give every test the thread count it found."""
    import torch

    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def train_api(tmp_path):
    """reglab.train(compose(overrides)) in a fresh run directory; returns (metrics, run_dir)."""
    counter = iter(range(1_000_000))

    def run(*overrides: str):
        run_dir = tmp_path / f"run{next(counter)}"
        cfg = reglab.compose(list(overrides), output_dir=run_dir)
        return reglab.train(cfg), run_dir

    return run


def run_cli(
    *args: str, cwd: Path = ROOT, timeout: float = 300, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """`python train.py ARGS…` in a subprocess (stdout is a pipe, as in CI and on SLURM);
    `env` adds to the environment."""
    env = {**os.environ, "HYDRA_FULL_ERROR": "0", "PYTHONWARNINGS": "default", **(env or {})}
    return subprocess.run(
        [sys.executable, str(ROOT / "train.py"), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def read_metrics(run_dir: Path) -> dict:
    return json.loads((Path(run_dir) / "metrics.json").read_text())


# the files whose tests take longest run first (as measured: `--durations=0`, summed per
# file): under `make test`'s two xdist workers a file's tests stay on one worker, and a long
# file sent out last (the SLURM time-limit test: minutes, mostly waiting for the job) ends
# the suite alone; sent out longest first, the workers end together. The Makefile's
# `--no-loadscope-reorder` keeps this order (xdist's own sorts files by their test count).
FIRST = (
    "test_slurm.py",
    "test_ddp.py",
    "test_resume.py",
    "test_cli.py",
    "test_bad_input.py",
    "test_report.py",
    "test_bagging.py",
    "test_launchers.py",
    "test_optuna.py",
    "test_semi_supervised.py",
    "test_networks.py",
    "test_checkpoints.py",
    "test_multitask.py",
    "test_sync_batchnorm.py",
)


def pytest_collection_modifyitems(items: list) -> None:
    items.sort(key=lambda item: FIRST.index(item.path.name) if item.path.name in FIRST else 99)
