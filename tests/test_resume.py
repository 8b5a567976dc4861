"""resume=<run dir>: a run killed with SIGKILL continues from its last checkpoint, in place,
and ends exactly where an uninterrupted run with the same seed ends."""

import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from conftest import ROOT, read_metrics, run_cli
from omegaconf import OmegaConf

import reglab
from reglab.records import read_json

ARGS = (
    "trainer.max_epochs=12",
    "callbacks.early_stopping.patience=100",
    "trainer.checkpoint_min_interval=0",  # write every checkpoint at once: SIGKILL loses none
    "trainer.checkpoint_every_min=0",  # and last.ckpt after every block of steps
    "threads=1",
)
# validation every 5 steps of 17 an epoch: blocks of 1 step, so a signal lands mid-epoch
SIGNALLED = (
    "trainer.max_epochs=25",
    "callbacks.early_stopping.patience=1000",
    "trainer.val_check_interval=5",
    "threads=1",
)


def start(run_dir, args=ARGS) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(ROOT / "train.py"), *args, f"hydra.run.dir={run_dir}"],
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


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("whole")
    proc = run_cli(*SIGNALLED, f"hydra.run.dir={run_dir}")
    assert proc.returncode == 0, proc.stderr
    return (run_dir / "metrics.json").read_bytes()


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGUSR1, signal.SIGUSR2])
def test_a_signalled_run_saves_its_step_exits_nonzero_and_resumes_to_the_same_end(
    tmp_path, uninterrupted, sig
):
    """Preemption, Ctrl-C, SLURM's time-limit warning: last.ckpt at the current step (mid-
    epoch here), run.json `interrupted`, exit 128 + signal within 10 s; resume= then ends
    byte-identical to the run that was never interrupted."""
    run_dir = tmp_path / "run"
    proc = start(run_dir, SIGNALLED)
    deadline = time.monotonic() + 120
    epochs = 0
    while epochs < 3 and time.monotonic() < deadline:
        epochs += proc.stdout.readline().startswith("epoch ")
    sent = time.monotonic()
    proc.send_signal(sig)
    out, _ = proc.communicate(timeout=30)
    assert time.monotonic() - sent < 10
    assert proc.returncode == 128 + sig, out[-2000:]
    record = read_json(run_dir / "run.json")
    assert record["status"] == "interrupted" and record["signal"] == sig.name
    state = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert state["global_step"] == record["step"] > 3 * 17 - 17  # at least 2 epochs in
    assert "resume=" in out and not (run_dir / "metrics.json").exists()

    resumed = run_cli(f"resume={run_dir}")
    assert resumed.returncode == 0, resumed.stderr
    assert (run_dir / "metrics.json").read_bytes() == uninterrupted


@pytest.mark.slow  # three runs
def test_a_cnn_run_continued_for_longer_ends_where_one_run_of_that_length_ends(train_api):
    """In-process: 1 epoch, then resume= with the config's max_epochs raised to 2 (what
    `resume=DIR trainer.max_epochs=2` does on the command line), against 2 epochs at once:
    the CNN's metrics.json is byte-identical (its state, optimizer and data order resumed)."""
    tiny = ["model=cnn", "model.channels=[4,8]", "model.hidden_sizes=[16]", "threads=1"]
    quiet = [*tiny, "callbacks.progress_bar=null", "callbacks.early_stopping.patience=100"]
    _, whole = train_api(*quiet, "trainer.max_epochs=2")
    _, part = train_api(*quiet, "trainer.max_epochs=1")
    saved = OmegaConf.load(part / "config.yaml")
    saved.trainer.max_epochs = 2
    OmegaConf.save(saved, part / "config.yaml")
    reglab.train(reglab.compose([f"resume={part}"], output_dir=part))
    assert read_metrics(part)["stopped_step"] == 2 * 17
    assert (part / "metrics.json").read_bytes() == (whole / "metrics.json").read_bytes()


def test_a_truncated_last_checkpoint_falls_back_to_the_previous_one(tmp_path):
    """A crash mid-write leaves last.ckpt short: resume= takes last.prev.ckpt; with both
    unreadable it is a one-line error naming them."""
    run_dir = tmp_path / "run"
    args = [*ARGS[1:], "trainer.max_epochs=3", f"hydra.run.dir={run_dir}"]
    assert run_cli(*args).returncode == 0
    last = run_dir / "checkpoints" / "last.ckpt"
    prev = run_dir / "checkpoints" / "last.prev.ckpt"
    assert prev.is_file()
    last.write_bytes(last.read_bytes()[:1000])
    assert last.stat().st_size == 1000
    resumed = run_cli(f"resume={run_dir}")
    assert resumed.returncode == 0, resumed.stderr
    assert "last.prev.ckpt" in resumed.stdout + resumed.stderr
    last.write_bytes(b"not a checkpoint")
    prev.write_bytes(b"")
    broken = run_cli(f"resume={run_dir}")
    assert broken.returncode == 2
    assert broken.stderr.count("\n") == 1 and "last.ckpt" in broken.stderr, broken.stderr


def test_resuming_with_another_config_names_the_changed_keys(tmp_path):
    run_dir = tmp_path / "run"
    assert run_cli(*ARGS[1:], "trainer.max_epochs=2", f"hydra.run.dir={run_dir}").returncode == 0
    changed = run_cli(f"resume={run_dir}", "regularizer=l2", "optimizer.lr=0.5")
    assert changed.returncode == 2
    assert changed.stderr.count("\n") == 1, changed.stderr
    assert "regularizer, optimizer.lr" in changed.stderr
    longer = run_cli(f"resume={run_dir}", "trainer.max_epochs=4")  # continue for longer
    assert longer.returncode == 0, longer.stderr
    assert read_json(run_dir / "metrics.json")["stopped_step"] == 4 * 17


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
