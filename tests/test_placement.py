"""In-memory data on the training device: on CUDA the splits move there once, when the fit
starts (not a copy per step); on the CPU nothing moves."""

import pytest
import pytorch_lightning as pl
import torch

import reglab
from reglab import instantiate
from reglab.config import compose
from reglab.data.datamodule import DataModule
from reglab.data.placement import laid_out, place_splits

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def digits() -> DataModule:
    return instantiate(compose(["data=digits"]).data).prepare()


def test_on_the_cpu_the_splits_stay_the_same_tensors():
    dm = digits()
    before = {name: tuple(map(id, split)) for name, split in dm.splits.items()}
    assert place_splits(dm.splits, torch.device("cpu")) == dm.splits
    trainer = pl.Trainer(accelerator="cpu", logger=False, enable_checkpointing=False)
    dm.trainer = trainer
    dm.setup("fit")
    assert {name: tuple(map(id, split)) for name, split in dm.splits.items()} == before


def test_channels_last_lays_out_image_splits_once_and_leaves_the_rest():
    images, y = torch.randn(10, 3, 4, 4), torch.arange(10)
    placed = place_splits({"train": (images, y), "rows": (torch.randn(10, 5), y)}, "cpu", True)
    x, same_y = placed["train"]
    assert x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
    assert torch.equal(x, images) and same_y is y and placed["rows"][0].dim() == 2
    # an epoch's permutation, a chunk of it and a minibatch keep the layout: no copy per step
    minibatch = x[torch.randperm(10)].narrow(0, 2, 6).split(3)[1]
    assert laid_out(minibatch, True) is minibatch and laid_out(x, True) is x


@cuda
def test_on_cuda_the_splits_move_once_and_batches_arrive_on_the_device(tmp_path, monkeypatch):
    dm = digits()
    moved = place_splits(dm.splits, torch.device("cuda"))
    assert all(t.is_cuda for split in moved.values() for t in split)
    assert torch.equal(moved["train"][0].cpu(), dm.splits["train"][0])
    arriving = []  # the device of each batch Lightning is about to transfer

    def spy(self, batch, device, dataloader_idx):
        arriving.append(batch[0].device.type)
        return pl.LightningDataModule.transfer_batch_to_device(self, batch, device, dataloader_idx)

    monkeypatch.setattr(DataModule, "transfer_batch_to_device", spy)
    args = ["debug=fast", "trainer.accelerator=gpu", "logger=none", "callbacks.progress_bar=null"]
    metrics = reglab.train(compose(args, output_dir=tmp_path))
    assert arriving and set(arriving) == {"cuda"}  # already there: nothing copied per step
    assert metrics["test/acc"] > 0.5  # and it trained (digits, one epoch: ~0.8)
