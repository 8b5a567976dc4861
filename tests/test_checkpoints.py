"""CheckpointWriter: atomic writes, at most one per interval, nothing lost at the end."""

import torch

from reglab.records import CheckpointWriter


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
