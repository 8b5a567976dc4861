"""resume=<run dir>: a run killed with SIGKILL continues from its last checkpoint, in place,
and ends exactly where an uninterrupted run with the same seed ends."""

import os
import signal
import subprocess
import sys
import time

import pytest
from conftest import ROOT, read_metrics, run_cli

ARGS = (
    "trainer.max_epochs=12",
    "callbacks.early_stopping.patience=100",
    "trainer.checkpoint_min_interval=0",  # write every checkpoint at once: SIGKILL loses none
    "threads=1",
)


def start(run_dir) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(ROOT / "train.py"), *ARGS, f"hydra.run.dir={run_dir}"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


@pytest.mark.slow
def test_a_killed_run_resumes_to_the_uninterrupted_result(tmp_path):
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    proc = start(killed)
    epochs = 0
    deadline = time.monotonic() + 120
    while epochs < 5 and time.monotonic() < deadline:
        line = proc.stdout.readline()
        epochs += line.startswith("epoch ")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert epochs == 5 and not (killed / "metrics.json").exists()
    assert (killed / "checkpoints" / "last.ckpt").exists()

    resumed = run_cli(f"resume={killed}")
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stderr.strip() == ""
    assert run_cli(*ARGS, f"hydra.run.dir={whole}").returncode == 0
    # bit-identical on CPU: same data order (the shuffling generator is in the checkpoint),
    # same optimizer state, same early-stopping state
    assert (killed / "metrics.json").read_bytes() == (whole / "metrics.json").read_bytes()
    assert read_metrics(killed)["stopped_step"] == 12 * 17


def test_resume_needs_a_run_directory_with_a_checkpoint(tmp_path):
    proc = run_cli(f"resume={tmp_path / 'nothing'}")
    assert proc.returncode != 0
    assert proc.stderr.count("\n") == 1 and "resume=" in proc.stderr
    assert "checkpoints/last.ckpt" in proc.stderr and "Traceback" not in proc.stderr


def test_a_run_from_before_the_layered_layout_is_refused_in_one_line(tmp_path):
    """Its config.yaml names modules that have moved (reglab.regularizers.…) and has no
    `objective`: resuming it is a one-line error, not an import traceback."""
    old = tmp_path / "old"
    (old / "checkpoints").mkdir(parents=True)
    (old / "checkpoints" / "last.ckpt").write_bytes(b"")
    (old / "config.yaml").write_text("regularizer:\n  _target_: reglab.regularizers.L2\n")
    proc = run_cli(f"resume={old}")
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "before the layered layout" in proc.stderr


def test_runs_started_together_get_their_own_directories(tmp_path):
    """Run directories carry microseconds: simultaneous runs (or sweeps) never collide."""
    procs = [
        subprocess.Popen(
            [sys.executable, str(ROOT / "train.py"), *extra, "debug=fast", "threads=1"],
            cwd=tmp_path,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for extra in ([], [], ["-m", "seed=0"], ["-m", "seed=0"])
    ]
    assert [p.wait(timeout=300) for p in procs] == [0, 0, 0, 0]
    runs = [d for d in (tmp_path / "outputs").glob("*/*") if d.parent.name != "multirun"]
    sweeps = list((tmp_path / "outputs" / "multirun").glob("*/*"))
    assert len(runs) == 2 and len(sweeps) == 2
    assert all((d / "metrics.json").exists() for d in runs)
    assert all((d / "0" / "metrics.json").exists() for d in sweeps)
