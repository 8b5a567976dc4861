"""data.in_memory=false: the same batches, in the same order, as in memory (any number of
workers, bagging's resamples, a mid-epoch resume), hence the same metrics."""

import pytest
import torch
from publisher_files import write_mnist

from reglab import instantiate
from reglab.config import compose
from reglab.data.stream import StreamLoader


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    write_mnist(root / "mnist", n_train=80, n_test=20)
    return root


def datamodule(root, *overrides, members=None):
    args = ["data=mnist", f"data.root={root}", "data.download=false", "data.val_fraction=0.25"]
    dm = instantiate(compose([*args, *overrides], output_dir="unused").data).prepare()
    dm.members = members
    return dm


def blocks(loader):
    return [(x.clone(), y.clone()) for x, y in loader]


@pytest.mark.parametrize("members", [None, 3])
def test_streamed_batches_equal_the_in_memory_ones(root, members):
    memory = datamodule(root, "data.batch_size=7", members=members).train_dataloader()
    streamed = datamodule(root, "data.batch_size=7", "data.in_memory=false", "data.num_workers=2",
                          members=members).train_dataloader()  # fmt: skip
    assert isinstance(streamed, StreamLoader) and len(streamed) == len(memory)
    for _ in range(2):  # two epochs: the order moves on alike
        for (xa, ya), (xb, yb) in zip(blocks(memory), blocks(streamed), strict=True):
            assert torch.equal(xa, xb) and torch.equal(ya, yb)


def test_a_mid_epoch_resume_draws_the_rest_of_the_epoch(root):
    args = ("data.batch_size=6", "data.in_memory=false", "data.num_workers=1")
    whole = datamodule(root, *args).train_dataloader()
    first, expected = blocks(whole), blocks(whole)  # epochs 1 and 2
    interrupted = datamodule(root, *args).train_dataloader()
    blocks(interrupted)
    seen = iter(interrupted)
    for _ in range(4):
        next(seen)
    interrupted.consumed = lambda: 4  # what the Trainer reports four blocks into epoch 2
    state = interrupted.state_dict()
    resumed = datamodule(root, *args)
    resumed.load_state_dict(state)
    rest = blocks(resumed.train_dataloader())
    assert len(first) == len(expected) == len(rest) + 4
    for (xa, ya), (xb, yb) in zip(expected[4:], rest, strict=True):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)


def test_the_splits_read_as_in_memory(root):
    memory, streamed = datamodule(root), datamodule(root, "data.in_memory=false")
    for split in ("train", "val", "test"):
        x, y = streamed.splits[split]
        assert torch.equal(x[:], memory.splits[split][0]) and torch.equal(
            y, memory.splits[split][1]
        )


@pytest.mark.slow
@pytest.mark.parametrize("extra", [(), ("ensemble=bagging", "ensemble.members=3")])
def test_the_same_seed_gives_the_same_metrics_streamed(root, train_api, extra):
    args = [
        "data=mnist",
        f"data.root={root}",
        "data.download=false",
        "data.val_fraction=0.25",
        "data.batch_size=8",
        "trainer.max_epochs=3",
        "trainer.val_check_interval=4",  # steps, not epochs: validation falls mid-epoch
        "model.hidden_sizes=[16]",
        "logger=none",
        *extra,
    ]
    memory, _ = train_api(*args)
    streamed, _ = train_api(*args, "data.in_memory=false", "data.num_workers=2")
    assert streamed == memory
