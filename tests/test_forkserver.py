"""The fork server (tests/forkserver.py) stands in for `python train.py` only where a fresh
process leaves exactly what its child leaves: exit status, stdout, stderr and files."""

import re
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from conftest import CLI_ENV, _fork_server, cli_env, run_cli

RUN = ("debug=fast", "threads=1", "trainer.max_epochs=2", "regularizer=l1")
COMMANDS = {
    # Lightning's MLflow logger says that it creates the experiment: through Hydra's logging
    # to cli.log and stdout, as in a fresh process, only if the server imported Lightning as
    # a run does (forkserver._import_quietly)
    "trains": (*RUN, "logger=mlflow", "logger.mlflow.tracking_uri=file:${output_dir}/mlruns"),
    "config error": ("regularizer.alpha=-1",),
    "unknown option": ("regularizer=foo",),
    # the loss overflows in the first steps: a failed run, one line naming its directory
    "diverges": ("debug=fast", "threads=1", "optimizer=sgd", "optimizer.lr=1e6"),
}


def _name(path: str) -> str:
    """A run's file without what names it by host, time or a random id (TensorBoard's event
    file, MLflow's experiment and run)."""
    path = re.sub(r"tfevents\..*", "tfevents", path)
    path = re.sub(r"mlruns/\d+", "mlruns/EXPERIMENT", path)
    return re.sub(r"EXPERIMENT/[0-9a-f]{32}", "EXPERIMENT/RUN", path)


def _files(run_dir) -> dict[str, bytes]:
    """A run directory's files by name."""
    return {
        _name(str(p.relative_to(run_dir))): p.read_bytes()
        for p in sorted(run_dir.rglob("*"))
        if p.is_file() and p.suffix != ".log" and p.name != "run.json"
    }


def _same_output(text: str, fresh_dir, fork_dir) -> str:
    """Output with its run directory and its durations (`(0.06 s)`) masked."""
    text = text.replace(str(fresh_dir), "RUN").replace(str(fork_dir), "RUN")
    return re.sub(r"\d+\.\d+ s\b", "S", text)


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    """Each command as a fresh process and as a fork server's child, the two side by side."""
    base = tmp_path_factory.mktemp("forks")
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {
            (name, fresh): pool.submit(
                run_cli, *args, f"hydra.run.dir={base / f'{name}-{fresh}'}", fresh=fresh
            )
            for name, args in COMMANDS.items()
            for fresh in (True, False)
        }
        return {key: (f.result(), base / f"{key[0]}-{key[1]}") for key, f in futures.items()}


def test_the_suite_has_a_fork_server():
    assert _fork_server(dict(CLI_ENV)) is not None


@pytest.mark.parametrize("name", list(COMMANDS))
def test_a_fork_leaves_what_a_fresh_process_leaves(pairs, name):
    (fresh, fresh_dir), (fork, fork_dir) = pairs[name, True], pairs[name, False]
    assert fork.returncode == fresh.returncode
    for stream in ("stdout", "stderr"):
        a, b = getattr(fresh, stream), getattr(fork, stream)
        assert _same_output(b, fresh_dir, fork_dir) == _same_output(a, fresh_dir, fork_dir)
    if name in ("trains", "diverges"):
        assert fresh_dir.is_dir()
        fresh_files, fork_files = _files(fresh_dir), _files(fork_dir)
        assert fresh_files.keys() == fork_files.keys()
        for key in ("metrics.json", "checkpoints/best.ckpt", ".hydra/config.yaml"):
            if key in fresh_files:
                assert fork_files[key] == fresh_files[key], key


def test_a_command_past_its_timeout_is_killed_with_what_it_started(tmp_path):
    args = ("threads=1", "trainer.max_epochs=100000", "callbacks.early_stopping.patience=100000")
    args += (f"hydra.run.dir={tmp_path / 'run'}",)
    assert _fork_server(cli_env()) is not None  # the worker's run so far left it usable
    with pytest.raises(subprocess.TimeoutExpired):
        run_cli(*args, timeout=10)
    # it was training, and nothing trains on: its log stops growing
    log = tmp_path / "run" / "cli.log"
    size = log.stat().st_size
    time.sleep(1)
    assert "epoch 1/" in log.read_text() and log.stat().st_size == size


def test_a_changed_environment_gets_a_process_of_its_own():
    assert _fork_server({**CLI_ENV, "PYTHONPATH": "/elsewhere"}) is None
