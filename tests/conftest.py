"""Shared helpers: run reglab in-process (`train_api`) or as a user would (`run_cli`)."""

import atexit
import json
import os
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

# Under pytest-xdist each worker is a process beside the others: torch's default of one
# thread per core would put workers × cores OpenMP threads on the cores, and its spinning
# threads then slow small runs tenfold (measured here: a 1.4 s fit took 23 s). Each worker,
# and every run it starts, gets its share of the cores; set before torch is imported.
# torch.compile's inductor compiles in a pool of fresh Python processes, each importing torch
# again: beside the workers there are no cores for it to win back (the compile tests took
# 16 s less CPU compiling in the worker itself); read when inductor is imported
if "PYTEST_XDIST_WORKER_COUNT" in os.environ:
    _share = len(os.sched_getaffinity(0)) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"])
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, _share)))
    os.environ.setdefault("TORCHINDUCTOR_COMPILE_THREADS", "1")

# runs with logger=mlflow that a test does not point elsewhere (the CLI cases) track into a
# throwaway store, not the repository's mlruns/ (conf/logger/mlflow.yaml reads the variable)
os.environ.setdefault("MLFLOW_TRACKING_URI", Path(tempfile.mkdtemp(prefix="mlruns-")).as_uri())

import pytest
from forkserver import ForkServer

import reglab

ROOT = Path(__file__).resolve().parents[1]


def cli_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of run_cli's processes: this one's, with `extra` added."""
    return {**os.environ, "HYDRA_FULL_ERROR": "0", "PYTHONWARNINGS": "default", **(extra or {})}


# the fork server starts with the environment of this worker's start (tests/forkserver.py)
CLI_ENV = cli_env()
# variables read only at run time, which the fork's child is given with the rest: pytest's
# for each test, MLflow's (the server does not import it), and those an in-process run
# leaves in the worker (Lightning's seed, device check and torch inductor's cache; libiomp's,
# which torch's libgomp ignores)
RUN_TIME_ONLY = {
    "PYTEST_CURRENT_TEST",
    "_MLFLOW_TELEMETRY_SESSION_ID",
    "PL_GLOBAL_SEED",
    "PL_SEED_WORKERS",
    "PYTORCH_NVML_BASED_CUDA_CHECK",
    "TORCHINDUCTOR_CACHE_DIR",
    "_TORCHINDUCTOR_PYOBJECT_TENSOR_DATA_PTR",  # set by a compilation, for inductor's workers
    "MLFLOW_ALLOW_FILE_STORE",
    "KMP_DUPLICATE_LIB_OK",
    "KMP_INIT_AT_FORK",
}
_server: list[ForkServer] = []
_server_lock = threading.Lock()

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
    *args: str,
    cwd: Path = ROOT,
    timeout: float = 300,
    env: dict[str, str] | None = None,
    fresh: bool = False,
) -> subprocess.CompletedProcess:
    """`python train.py ARGS…` in a process of its own (stdout is a pipe, as in CI and on
    SLURM); `env` adds to the environment."""
    return run_python(ROOT / "train.py", *args, cwd=cwd, timeout=timeout, env=env, fresh=fresh)


def run_python(
    script: Path,
    *args: str,
    cwd: Path = ROOT,
    timeout: float = 300,
    env: dict[str, str] | None = None,
    fresh: bool = False,
) -> subprocess.CompletedProcess:
    """`python SCRIPT ARGS…` with its output captured as text: a child of the worker's fork
    server, which has imported torch and Lightning already, unless the environment differs
    from the one it started with or `fresh` asks for a process started from nothing
    (tests/forkserver.py)."""
    env = cli_env(env)
    server = None if fresh else _fork_server(env)
    if server is not None:
        return server.run([str(script), *args], cwd, timeout, env)
    return subprocess.run(
        [sys.executable, str(script), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _fork_server(env: dict[str, str]) -> ForkServer | None:
    """The worker's fork server, started on first use, if it can run a command with `env`."""
    if _import_time(env) != _import_time(CLI_ENV):
        return None  # modules read variables when imported: a process of its own
    with _server_lock:
        if not _server:
            _server.append(ForkServer(CLI_ENV))
            atexit.register(_server[0].close)
    return _server[0] if _server[0].usable else None


def _import_time(env: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in env.items() if k not in RUN_TIME_ONLY}


def read_metrics(run_dir: Path) -> dict:
    return json.loads((Path(run_dir) / "metrics.json").read_text())


# the files whose tests take longest run first (as measured: `--durations=0`, summed per
# file): under `make test`'s xdist workers a file's tests stay on one worker, and a long
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
    "test_speed_settings.py",  # torch.compile: about 70 s from an empty inductor cache (CI's)
    "test_optuna.py",
    "test_semi_supervised.py",
    "test_networks.py",
    "test_checkpoints.py",
    "test_multitask.py",
    "test_sync_batchnorm.py",
    "test_augmentation.py",
    "test_theory.py",
)


def pytest_collection_modifyitems(items: list) -> None:
    items.sort(key=lambda item: FIRST.index(item.path.name) if item.path.name in FIRST else 99)
