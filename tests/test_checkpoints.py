"""CheckpointWriter: atomic writes, at most one per interval, nothing lost at the end; a
checkpoint that does not fit the model config: one line naming the keys, nothing touched."""

import shutil

import pytest
import torch
from conftest import run_cli
from omegaconf import OmegaConf

import reglab
from reglab.config import ConfigError
from reglab.engine.run import build
from reglab.records import CheckpointWriter, LatestCheckpoint, check_checkpoint_fits


def test_due_checkpoints_wait_in_memory_as_they_were_and_are_written_at_teardown(tmp_path):
    path = tmp_path / "checkpoints" / "best.ckpt"
    writer = CheckpointWriter(min_interval=3600)
    weight = torch.zeros(3)
    writer.save_checkpoint({"state_dict": {"w": weight}, "global_step": 1}, path)
    assert torch.load(path)["global_step"] == 1  # the first one is written at once

    weight += 1  # training goes on: the live tensor changes…
    writer.save_checkpoint({"state_dict": {"w": weight}, "global_step": 2}, path)
    weight += 1  # …and changes again after the second save
    assert torch.load(path)["global_step"] == 1  # within the interval: not yet on disk

    writer.teardown()  # Lightning calls this at the end of fit, also after an exception
    saved = torch.load(path)
    assert saved["global_step"] == 2
    assert torch.equal(saved["state_dict"]["w"], torch.ones(3))  # the state at save time
    assert not list(path.parent.glob("*.tmp"))


def test_a_checkpoint_saved_now_is_written_at_once_with_what_waits_and_never_copied(
    tmp_path, monkeypatch
):
    """`now()` (last.ckpt's writes) writes within the interval, and the best.ckpt waiting
    in memory with it; a checkpoint written at once is not copied first (a large model's
    state would take twice its memory)."""
    import reglab.records.checkpoints as checkpoints

    best, last = tmp_path / "best.ckpt", tmp_path / "last.ckpt"
    writer = CheckpointWriter(min_interval=3600)
    writer.save_checkpoint({"global_step": 1}, best)  # written at once: the first
    writer.save_checkpoint({"global_step": 2}, best)  # waits (copied)
    copies = []
    monkeypatch.setattr(checkpoints, "_copy_tensors", lambda c: copies.append(c) or c)
    with writer.now():
        writer.save_checkpoint({"global_step": 3}, last)
    assert (torch.load(best)["global_step"], torch.load(last)["global_step"]) == (2, 3)
    assert copies == []
    writer.save_checkpoint({"global_step": 4}, last)  # after the block: waits again
    assert torch.load(last)["global_step"] == 3 and len(copies) == 1


def test_without_an_interval_every_checkpoint_is_written(tmp_path):
    path = tmp_path / "best.ckpt"
    writer = CheckpointWriter(min_interval=0)
    for step in range(3):
        writer.save_checkpoint({"global_step": step}, path)
        assert torch.load(path)["global_step"] == step


def test_a_removed_checkpoint_is_not_written_later(tmp_path):
    path = tmp_path / "old.ckpt"
    writer = CheckpointWriter(min_interval=3600)
    writer.save_checkpoint({"global_step": 0}, tmp_path / "first.ckpt")
    writer.save_checkpoint({"global_step": 1}, path)
    writer.remove_checkpoint(path)
    writer.teardown()
    assert not path.exists()


# reglab's MLP, its CNN and a user's module (a convolution and BatchNorm, by _target_)
NETWORKS = {
    "mlp": [],
    "cnn": ["model=cnn", "model.channels=[4,8]", "model.hidden_sizes=[16]"],
    "user": ["model=linear", "~model.dropout", "model._target_=test_protocols.UserNet"],
}


@pytest.mark.parametrize("net", list(NETWORKS))
@pytest.mark.parametrize("min_interval", [2.0, 0.0])
def test_last_checkpoint_waits_min_interval_between_epoch_ends_and_is_written_after_the_last(
    train_api, monkeypatch, min_interval, net
):
    """Epochs of milliseconds: with the default 2 s between writes last.ckpt is written once,
    after the last epoch, at its final step (not θ*: early stopping restores that later);
    without a minimum and with any cost cheap, after every epoch."""
    steps = []
    save = LatestCheckpoint.save
    monkeypatch.setattr(
        LatestCheckpoint, "save", lambda s, t: steps.append(t.global_step) or save(s, t)
    )
    quick = [
        "trainer.max_epochs=4",
        "data.train_size=128",
        "logger=none",
        "callbacks.progress_bar=null",
    ]
    interval = [
        f"trainer.checkpoint_min_interval={min_interval}",
        "callbacks.latest_checkpoint.cheap=1e9",
    ]
    metrics, run_dir = train_api(
        *NETWORKS[net], *quick, *interval, "callbacks.early_stopping.patience=100"
    )
    assert steps == ([2, 4, 6, 8] if min_interval == 0 else [8])  # 2 steps an epoch
    last = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert last["global_step"] == metrics["stopped_step"] == 8
    best = torch.load(run_dir / "checkpoints" / "best.ckpt", weights_only=True)
    if metrics["best_step"] != 8:  # the latest state, not θ*
        assert any(not torch.equal(last["state_dict"][k], v) for k, v in best["state_dict"].items())


# -- a checkpoint that does not fit the model config ---------------------------------------------
def _files(run_dir):
    """Every file of a run (bytes and mtime), but the config that resume= rewrites."""
    return {
        p.relative_to(run_dir): (p.read_bytes(), p.stat().st_mtime_ns)
        for p in sorted(run_dir.rglob("*"))
        if p.is_file() and ".hydra" not in p.parts and p.name != "config.yaml"
    }


def test_resuming_with_a_model_config_the_checkpoint_does_not_fit_fails_in_one_line(tmp_path):
    run_dir = tmp_path / "run"
    proc = run_cli("trainer.max_epochs=1", "model.hidden_sizes=[32]", f"hydra.run.dir={run_dir}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    config = OmegaConf.load(run_dir / "config.yaml")
    config.model.hidden_sizes = [16, 16]  # the run's config no longer describes its checkpoint
    OmegaConf.save(config, run_dir / "config.yaml")
    before = _files(run_dir)

    proc = run_cli(f"resume={run_dir}")
    assert proc.returncode == 2
    errors = [line for line in proc.stderr.splitlines() if line.startswith("reglab: error:")]
    assert len(errors) == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert errors[0] == (
        f"reglab: error: checkpoint {run_dir / 'checkpoints' / 'last.ckpt'} does not fit model"
        " config: net.0.weight has shape (32, 64) in the checkpoint, (16, 64) in the model;"
        " net.0.bias has shape (32,) in the checkpoint, (16,) in the model;"
        " net.2.weight has shape (10, 32) in the checkpoint, (16, 16) in the model and 1 more;"
        " missing: net.4.weight, net.4.bias"
        " (allowed: the model config the checkpoint was trained with)"
    )
    assert _files(run_dir) == before  # checkpoints, event files, metrics, logs: untouched


def test_a_checkpoint_of_another_model_names_the_missing_and_unexpected_keys(tmp_path):
    quick = ["trainer.max_epochs=1", "logger=none", "callbacks.progress_bar=null"]
    mlp, linear = tmp_path / "mlp", tmp_path / "linear"
    reglab.train(reglab.compose([*quick, "model.hidden_sizes=[8]"], output_dir=mlp))
    reglab.train(reglab.compose([*quick, "model=linear"], output_dir=linear))
    last = mlp / "checkpoints" / "last.ckpt"
    check_checkpoint_fits(last, build(reglab.compose([f"resume={mlp}"])).module)  # its own: fits

    shutil.copy(linear / "checkpoints" / "last.ckpt", last)  # what resume= loads
    with pytest.raises(ConfigError) as err:
        reglab.train(reglab.compose([f"resume={mlp}"], output_dir=mlp))
    message = str(err.value)
    assert "\n" not in message and f"checkpoint {last} does not fit model config" in message
    assert "missing: net.0.weight, net.0.bias, net.2.weight and 1 more" in message
    assert "unexpected: net.weight, net.bias" in message
