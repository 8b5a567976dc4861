"""data.in_memory=false: the same batches, in the same order, as in memory (any number of
workers, bagging's resamples, a mid-epoch resume), hence the same metrics; CIFAR streamed
from .npy copies made once; scikit-learn's sets streamed with their StandardScaler."""

import os

import pytest
import torch
from publisher_files import write_cifar10, write_mnist

import reglab
from reglab import instantiate
from reglab.config import compose
from reglab.data import cifar
from reglab.data.rows import MappedArray
from reglab.data.stream import StreamLoader

STREAMED = ("data.in_memory=false", "data.num_workers=1")  # one worker: the worker path
QUIET = ("logger=none", "callbacks.progress_bar=null", "callbacks.weight_histograms=null")


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    write_mnist(root / "mnist", n_train=40, n_test=10)
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
    for epoch in range(3):  # the order moves on alike, with the workers kept or started anew
        if epoch == 2:
            streamed.close()  # what DataModule.teardown does: the next epoch starts new ones
        for (xa, ya), (xb, yb) in zip(blocks(memory), blocks(streamed), strict=True):
            assert torch.equal(xa, xb) and torch.equal(ya, yb)


def test_a_mid_epoch_resume_draws_the_rest_of_the_epoch(root):
    args = ("data.batch_size=6", *STREAMED)
    whole = datamodule(root, *args).train_dataloader()
    first, expected = blocks(whole), blocks(whole)  # epochs 1 and 2
    interrupted = datamodule(root, *args).train_dataloader()
    blocks(interrupted)
    seen = iter(interrupted)
    for _ in range(2):
        next(seen)
    interrupted.consumed = lambda: 2  # what the Trainer reports two blocks into epoch 2
    state = interrupted.state_dict()
    resumed = datamodule(root, *args)
    resumed.load_state_dict(state)
    rest = blocks(resumed.train_dataloader())
    assert len(first) == len(expected) == len(rest) + 2
    for (xa, ya), (xb, yb) in zip(expected[2:], rest, strict=True):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)


def test_the_splits_read_as_in_memory(root):
    memory, streamed = datamodule(root), datamodule(root, "data.in_memory=false")
    for split in ("train", "val", "test"):
        x, y = streamed.splits[split]
        assert torch.equal(x[:], memory.splits[split][0]) and torch.equal(
            y, memory.splits[split][1]
        )


def metrics(run_dir, *overrides):
    return reglab.train(compose(list(overrides), output_dir=run_dir))


CONFIGS = {"single": (), "bagging": ("ensemble=bagging", "ensemble.members=3")}


@pytest.fixture(scope="module", params=list(CONFIGS))
def trained(request, root, tmp_path_factory):
    """One epoch in memory and one streamed, per configuration: (in memory, streamed)."""
    args = [
        "data=mnist",
        f"data.root={root}",
        "data.download=false",
        "data.val_fraction=0.25",
        "data.batch_size=8",  # 30 training rows: 4 steps
        "trainer.max_epochs=1",
        "trainer.val_check_interval=2",  # steps, not epochs: validation falls mid-epoch
        "model.hidden_sizes=[16]",
        *QUIET,
        *CONFIGS[request.param],
    ]
    out = tmp_path_factory.mktemp(request.param)
    return metrics(out / "memory", *args), metrics(out / "streamed", *args, *STREAMED)


def test_the_same_seed_gives_the_same_metrics_streamed(trained):
    memory, streamed = trained
    assert memory["stopped_step"] == 4 and streamed == memory


def test_scikit_learn_sets_stream_with_their_standard_scaler(tmp_path):
    """digits streamed: StandardScaler's statistics and float32 rows, bit for bit, and
    therefore the in-memory run's metrics."""
    args = ["data=digits", "debug=fast", "model.hidden_sizes=[16]", "data.batch_size=256", *QUIET]
    memory = instantiate(compose(args).data).prepare()
    streamed = instantiate(compose([*args, *STREAMED]).data).prepare()
    for split, (x, y) in streamed.splits.items():
        assert torch.equal(x[:], memory.splits[split][0]) and x[:].dtype == torch.float32
        assert torch.equal(y, memory.splits[split][1])
    assert torch.equal(streamed.feature_std, memory.feature_std)
    assert metrics(tmp_path / "streamed", *args, *STREAMED) == metrics(tmp_path / "m", *args)


def test_streamed_cifar_reads_a_npy_copy_made_once(tmp_path, monkeypatch):
    write_cifar10(tmp_path / "cifar10")
    args = ["data=cifar10", f"data.root={tmp_path}", "data.download=false", "data.val_fraction=0.5"]
    memory = instantiate(compose(args).data).prepare()
    streamed = instantiate(compose([*args, "data.in_memory=false"]).data).prepare()
    assert isinstance(streamed.splits["train"][0].rows, MappedArray)  # read per minibatch
    for split, (x, y) in streamed.splits.items():
        assert torch.equal(x[:], memory.splits[split][0])
        assert torch.equal(y, memory.splits[split][1])
    copy = tmp_path / "cifar10" / ".unpacked" / "cifar10" / "train_x.npy"
    before = copy.stat()

    def converted_again(*args):
        raise AssertionError("the pickles were read again")

    monkeypatch.setattr(cifar, "_read_all", converted_again)
    again = instantiate(compose([*args, "data.in_memory=false"]).data).prepare()
    assert torch.equal(again.splits["test"][0][:], memory.splits["test"][0])
    assert (copy.stat().st_ino, copy.stat().st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert not list(copy.parent.glob("*.part"))
    monkeypatch.undo()
    archive = tmp_path / "cifar10" / "cifar-10-python.tar.gz"
    os.utime(archive, ns=(before.st_mtime_ns + 10**9,) * 2)  # the archive fetched again
    instantiate(compose([*args, "data.in_memory=false"]).data).prepare()
    assert copy.stat().st_ino != before.st_ino  # converted again, into a new file
