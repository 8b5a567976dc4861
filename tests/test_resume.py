"""resume=<run dir>: a run killed (SIGKILL) or signalled (SIGTERM, SIGINT, SIGUSR1/2)
continues from its last checkpoint, in place, and ends exactly where an uninterrupted run
with the same seed ends. The signals and kills reach real processes where the exit status
is the point; resuming runs in this process (the command line runs the same `train`)."""

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
from conftest import ROOT, read_metrics, run_cli
from omegaconf import OmegaConf
from test_protocols import UserNet  # noqa: F401  (its _target_ here: test_resume.UserNet)

import reglab
from reglab.config import ConfigError, Interrupted
from reglab.records import read_json

# validation every 5 steps of 17 an epoch: blocks of 1 step, so a signal lands mid-epoch
SIGNALLED = (
    "trainer.max_epochs=25",
    "callbacks.early_stopping.patience=1000",
    "trainer.val_check_interval=5",
    "threads=1",
)
# every checkpoint written at once, last.ckpt after every block of steps: SIGKILL loses none
# (when checkpoints are written changes nothing the run computes)
EVERY_BLOCK = ("trainer.checkpoint_min_interval=0", "trainer.checkpoint_every_min=0")


def start(run_dir, args) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(ROOT / "train.py"), *args, f"hydra.run.dir={run_dir}"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def read_epochs(proc: subprocess.Popen, epochs: int) -> int:
    """Read the run's output until `epochs` epoch lines (or two minutes) have passed."""
    seen, deadline = 0, time.monotonic() + 120
    while seen < epochs and time.monotonic() < deadline:
        seen += proc.stdout.readline().startswith("epoch ")
    return seen


def resume(run_dir: Path, *overrides: str) -> dict:
    """`resume=run_dir`, in this process (the command line's path is the same `train`)."""
    return reglab.train(reglab.compose([f"resume={run_dir}", *overrides], output_dir=run_dir))


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> bytes:
    run_dir = tmp_path_factory.mktemp("whole")
    reglab.train(reglab.compose(SIGNALLED, output_dir=run_dir))
    return (run_dir / "metrics.json").read_bytes()


def test_a_killed_run_resumes_to_the_uninterrupted_result(tmp_path, uninterrupted):
    killed = tmp_path / "killed"
    proc = start(killed, (*SIGNALLED, *EVERY_BLOCK))
    epochs = read_epochs(proc, 5)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert epochs == 5 and not (killed / "metrics.json").exists()
    assert (killed / "checkpoints" / "last.ckpt").exists()
    resume(killed)
    # bit-identical on CPU: same data order (the shuffling generator is in the checkpoint),
    # same optimizer state, same early-stopping state
    assert (killed / "metrics.json").read_bytes() == uninterrupted
    assert read_metrics(killed)["stopped_step"] == 25 * 17


def check_interrupted(run_dir: Path, sig: signal.Signals) -> dict:
    """run.json says which signal at which step, and last.ckpt holds that step (mid-run)."""
    record = read_json(run_dir / "run.json")
    assert record["status"] == "interrupted" and record["signal"] == sig.name
    state = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert state["global_step"] == record["step"] >= 17  # past the first epoch's end
    assert record["step"] < 25 * 17 and not (run_dir / "metrics.json").exists()
    return record


def test_sigterm_from_outside_exits_143_within_seconds_and_resumes_to_the_same_end(
    tmp_path, uninterrupted
):
    """Preemption or `scancel`, through the command line: last.ckpt at the current step
    (mid-epoch here), run.json `interrupted`, exit 128 + 15 within 10 s, a hint to resume."""
    run_dir = tmp_path / "run"
    proc = start(run_dir, SIGNALLED)
    read_epochs(proc, 3)
    sent = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=30)
    assert time.monotonic() - sent < 10
    assert proc.returncode == 128 + signal.SIGTERM, out[-2000:]
    check_interrupted(run_dir, signal.SIGTERM)
    assert f"resume={run_dir}" in out
    resume(run_dir)
    assert (run_dir / "metrics.json").read_bytes() == uninterrupted


def _signal_when_training(run_dir: Path, sig: signal.Signals) -> None:
    """From another thread: the signal, once the run has written last.ckpt (an epoch in)."""
    deadline = time.monotonic() + 120
    while not (run_dir / "checkpoints" / "last.ckpt").exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    os.kill(os.getpid(), sig)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGUSR1, signal.SIGUSR2])
def test_a_signalled_run_saves_its_step_passes_the_signal_on_and_resumes_to_the_same_end(
    tmp_path, uninterrupted, sig
):
    """Ctrl-C, SLURM's time-limit warning: the run stops at the current step with last.ckpt
    and run.json written, then calls the handler installed before it (submitit's, under
    SLURM, which requeues the job), and resume= ends byte-identical to the run that was
    never interrupted."""
    run_dir = tmp_path / "run"
    passed_on = []  # what the earlier handler saw in run.json when it was called
    previous = signal.signal(sig, lambda *_: passed_on.append(read_json(run_dir / "run.json")))
    try:
        threading.Thread(target=_signal_when_training, args=(run_dir, sig), daemon=True).start()
        # last.ckpt at every epoch's end, whatever the epoch's length: the thread signals
        # once the first exists, mid-run
        every_epoch = [*SIGNALLED, "trainer.checkpoint_min_interval=0"]
        with pytest.raises(Interrupted) as err:
            reglab.train(reglab.compose(every_epoch, output_dir=run_dir))
    finally:
        signal.signal(sig, previous)
    record = check_interrupted(run_dir, sig)
    assert err.value.step == record["step"] and err.value.exit_code == 128 + sig
    assert passed_on == [record]  # once, after the run recorded the signal
    resume(run_dir)
    assert (run_dir / "metrics.json").read_bytes() == uninterrupted


# image networks, tiny: reglab's CNN, a ResNet (BatchNorm: its running statistics resume
# too) and a user's module with BatchNorm, by _target_
NETS = {
    "cnn": ["model=cnn", "model.channels=[4,8]", "model.hidden_sizes=[16]"],
    "resnet": ["model=resnet", "model.depth=8", "model.width=4"],
    "user": ["model=linear", "~model.dropout", "model._target_=test_resume.UserNet"],
}


@pytest.mark.slow  # three runs
@pytest.mark.parametrize("net", list(NETS))
def test_an_image_run_continued_for_longer_ends_where_one_run_of_that_length_ends(train_api, net):
    """In-process: 1 epoch, then resume= with the config's max_epochs raised to 2 (what
    `resume=DIR trainer.max_epochs=2` does on the command line), against 2 epochs at once:
    metrics.json is byte-identical (the network's state, optimizer and data order resumed)."""
    small = [*NETS[net], "threads=1", "data.train_size=300"]  # 5 steps an epoch
    quiet = [*small, "callbacks.progress_bar=null", "callbacks.early_stopping.patience=100"]
    _, whole = train_api(*quiet, "trainer.max_epochs=2")
    _, part = train_api(*quiet, "trainer.max_epochs=1")
    saved = OmegaConf.load(part / "config.yaml")
    saved.trainer.max_epochs = 2
    OmegaConf.save(saved, part / "config.yaml")
    reglab.train(reglab.compose([f"resume={part}"], output_dir=part))
    assert read_metrics(part)["stopped_step"] == 2 * 5
    assert (part / "metrics.json").read_bytes() == (whole / "metrics.json").read_bytes()


def test_a_truncated_last_checkpoint_falls_back_to_the_previous_one(tmp_path, caplog):
    """A crash mid-write leaves last.ckpt short: resume= takes last.prev.ckpt; with both
    unreadable it is a one-line error naming them."""
    run_dir = tmp_path / "run"
    args = [*SIGNALLED, *EVERY_BLOCK, "trainer.max_epochs=3"]
    reglab.train(reglab.compose(args, output_dir=run_dir))
    last = run_dir / "checkpoints" / "last.ckpt"
    prev = run_dir / "checkpoints" / "last.prev.ckpt"
    assert prev.is_file()
    last.write_bytes(last.read_bytes()[:1000])
    assert last.stat().st_size == 1000
    with caplog.at_level(logging.WARNING, logger="reglab"):
        resume(run_dir)
    assert "resuming from last.prev.ckpt" in caplog.text
    last.write_bytes(b"not a checkpoint")
    prev.write_bytes(b"")
    with pytest.raises(ConfigError) as err:
        resume(run_dir)
    assert "\n" not in str(err.value) and "last.ckpt" in str(err.value)


def test_resuming_with_another_config_names_the_changed_keys(tmp_path):
    run_dir = tmp_path / "run"
    reglab.train(reglab.compose([*SIGNALLED, "trainer.max_epochs=2"], output_dir=run_dir))
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
    """Run directories carry microseconds: simultaneous runs (or sweeps) never collide.
    Hydra names and creates the directory before the job starts, so jobs that stop at once
    (a bad value: no torch to import) collide exactly as training ones would."""
    procs = [
        subprocess.Popen(
            [sys.executable, str(ROOT / "train.py"), *extra, "regularizer.alpha=-1"],
            cwd=tmp_path,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for extra in ([], [], ["-m", "seed=0"], ["-m", "seed=0"])
    ]
    assert [p.wait(timeout=300) for p in procs] == [2, 2, 1, 1]
    runs = [d for d in (tmp_path / "outputs").glob("*/*") if d.parent.name != "multirun"]
    sweeps = list((tmp_path / "outputs" / "multirun").glob("*/*"))
    assert len(runs) == 2 and len(sweeps) == 2
    assert all((d / ".hydra" / "config.yaml").exists() for d in runs)
    assert all((d / "0" / ".hydra" / "config.yaml").exists() for d in sweeps)
