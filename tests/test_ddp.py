"""trainer=ddp: one run over 2 CPU processes (gloo) takes the steps of the same run in one.

Both runs walk the same global minibatches of data.batch_size rows; each DDP process
computes the mean gradient of its half and DDP averages the halves. The weights then agree
to float32 rounding: the halves' sums are added in another order than the whole batch's,
which moves the weights by about 2e-7 after 51 Adam steps (measured). The tolerance, 1e-5,
is 50 times that. With the gradients not synchronized (DDPStrategy.pre_backward made a
no-op, so DDP's reducer never all-reduces), each process trains on its half alone and the
weights differ by 0.05 (measured): these tests would fail.
"""

import json
import os
import textwrap
from pathlib import Path

import pytest
import torch
from conftest import read_metrics, run_cli, run_python
from torch import nn

import reglab
from reglab.config import ConfigError
from reglab.data import BootstrapLoader, ChunkLoader
from reglab.engine.distributed import RankSeeds
from reglab.engine.run import build

slow = pytest.mark.slow

# 3 epochs of 17 steps, validating each epoch; the last minibatch of each epoch has 55 rows,
# which do not split in 2: both processes take it whole
RUN = ("threads=1", "debug=fast", "trainer.max_epochs=3", "callbacks.progress_bar=null")
DDP = ("trainer=ddp", "trainer.devices=2", "trainer.accelerator=cpu")
WEIGHT_TOLERANCE = 1e-5

# Installed through PYTHONPATH: in every process with RANK > 0, records each file or
# directory it creates, writes, renames or removes under ROOT, into LOG.rank<RANK>.<pid> at exit
# (torch.save's C++ writer escapes Python's audit hooks, but reglab's checkpoints are
# renamed into place and their directory made: both are recorded).
AUDIT = """
import atexit, json, os, sys

ROOT, LOG, RANK = {root!r}, {log!r}, os.environ.get("RANK")
WRITE = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
if RANK not in (None, "0"):
    events = []

    def hook(event, args):
        if event == "open":
            path, mode, flags = args
            writes = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
                isinstance(flags, int) and flags & WRITE
            )
            paths = [path] if writes else []
        elif event in ("os.mkdir", "os.remove", "os.rmdir", "os.truncate"):
            paths = [args[0]]
        elif event in ("os.rename", "os.symlink", "os.link"):
            paths = list(args[:2])
        else:
            return
        for path in paths:
            if isinstance(path, (str, bytes, os.PathLike)):
                path = os.path.abspath(os.fsdecode(path))
                if path.startswith(ROOT):
                    events.append(event + " " + path)

    sys.addaudithook(hook)
    record = LOG + ".rank" + RANK + "." + str(os.getpid())
    atexit.register(lambda: open(record, "w").write(json.dumps(events)))
"""


def audit_other_ranks(monkeypatch, root: Path, log: Path) -> None:
    """Processes started from now on with RANK > 0 record their writes under `root`."""
    hook_dir = log.parent / "sitecustomize"
    hook_dir.mkdir(exist_ok=True)
    (hook_dir / "sitecustomize.py").write_text(AUDIT.format(root=str(root), log=str(log)))
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join(filter(None, [str(hook_dir), os.environ.get("PYTHONPATH")]))
    )


def rank_writes(log: Path, processes: int = 1) -> list[str]:
    """What the processes of rank > 0 since the last call recorded (`processes` of them)."""
    records = sorted(log.parent.glob(f"{log.name}.rank*"))
    assert len(records) == processes, f"{len(records)} records of {processes} processes"
    events = [e for r in records for e in json.loads(r.read_text())]
    for record in records:
        record.unlink()
    return events


def weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return torch.load(run_dir / "checkpoints" / "best.ckpt", weights_only=True)["state_dict"]


def dirs(root: Path) -> set[Path]:
    return {p.relative_to(root) for p in root.rglob("*") if p.is_dir()}


# -- the data: each process's part of every global minibatch --------------------------------
@pytest.mark.parametrize("loader", ["chunk", "bootstrap"])
def test_the_parts_of_the_processes_make_up_the_single_process_minibatches(loader):
    n, batch = 45, 8  # 5 minibatches of 8 rows, then one of 5 (odd: no halves)
    x, y = torch.arange(n * 3.0).view(n, 3), torch.arange(n)
    kwargs = {"batch_size": batch, "shuffle": True, "seed": 3}
    if loader == "bootstrap":
        make, dim = BootstrapLoader, 1
        kwargs["index"] = torch.stack([torch.randperm(n), torch.randint(0, n, (n,))])
    else:
        make, dim = ChunkLoader, 0
    whole = list(make(x, y, **kwargs))
    parts = [list(make(x, y, **kwargs, rank=r, world_size=2)) for r in range(2)]
    assert len(parts[0]) == len(parts[1]) == len(whole) == 6  # same steps on every process
    for (xw, yw), (x0, y0), (x1, y1) in zip(whole, *parts, strict=True):
        if xw.shape[dim] % 2:  # the last, 5 rows: each process takes all of them
            assert torch.equal(x0, xw) and torch.equal(x1, xw) and torch.equal(y1, yw)
        else:  # halves of equal size, in order
            assert x0.shape[dim] == x1.shape[dim] == xw.shape[dim] // 2
            assert torch.equal(torch.cat([x0, x1], dim), xw)
            assert torch.equal(torch.cat([y0, y1], dim), yw)


def test_ddp_trains_one_minibatch_per_lightning_step(tmp_path):
    single = build(reglab.compose(["threads=1"], output_dir=tmp_path / "single"))
    assert single.dm.steps_per_chunk == single.dm.steps_per_epoch == 17  # a chunk per epoch
    ddp = build(reglab.compose(["threads=1", *DDP], output_dir=tmp_path / "ddp"))
    assert ddp.trainer.world_size == 2 and ddp.dm.steps_per_chunk == 1
    assert ddp.trainer.val_check_interval == 17  # still every epoch, in optimizer steps
    assert any(isinstance(c, RankSeeds) for c in ddp.trainer.callbacks)


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("trainer.devices=auto", "trainer.devices=auto"),
        ("trainer.strategy=ddp_spawn", "trainer.strategy=ddp_spawn"),
        ("trainer.num_nodes=2", "trainer.num_nodes=2"),
    ],
)
def test_ddp_settings_that_cannot_work_are_one_line_errors(tmp_path, override, key):
    cfg = reglab.compose(["threads=1", *DDP, override], output_dir=tmp_path / "run")
    with pytest.raises(ConfigError, match=key.replace(".", r"\.") + r".*\(allowed: "):
        reglab.train(cfg)
    assert not (tmp_path / "run").exists()  # refused before anything started or was written


# -- end to end --------------------------------------------------------------------------------
@slow
def test_two_processes_end_with_the_weights_and_metrics_of_one(
    train_api, tmp_path, tmp_path_factory, monkeypatch
):
    log = tmp_path_factory.mktemp("audit") / "writes"
    audit_other_ranks(monkeypatch, tmp_path, log)
    single, single_dir = train_api(*RUN)
    threads = torch.get_num_threads()
    parallel, ddp_dir = train_api(*RUN, *DDP)  # this process is rank 0, one more is started

    diffs = {
        k: (v - weights(ddp_dir)[k]).abs().max().item() for k, v in weights(single_dir).items()
    }
    assert max(diffs.values()) < WEIGHT_TOLERANCE, diffs
    assert parallel.keys() == single.keys()
    assert {k: parallel[k] for k in ("best_step", "stopped_step")} == {
        k: single[k] for k in ("best_step", "stopped_step")
    }
    assert parallel == pytest.approx(single, rel=1e-5)
    # written once, by rank 0; the other process wrote nothing at all
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("metrics.json")) == [
        Path("run0/metrics.json"),
        Path("run1/metrics.json"),
    ]
    assert len(list(ddp_dir.glob("events.out.tfevents.*"))) == 1
    assert json.loads((ddp_dir / "run.json").read_text())["status"] == "completed"
    assert rank_writes(log) == []
    # and this process is left as it was: no process group, no DDP variables, its threads
    assert not torch.distributed.is_initialized()
    assert not {"LOCAL_RANK", "RANK", "WORLD_SIZE", "MASTER_PORT"} & set(os.environ)
    assert torch.get_num_threads() == threads


class UserConv(nn.Module):
    """A user's network by `_target_` (rank 1 imports it too: tests/ is on its PYTHONPATH)."""

    def __init__(self, in_channels: int, out_features: int, width: int = 4) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, width, 3, padding=1)
        self.head = nn.Linear(width * 16, out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(nn.functional.max_pool2d(self.conv(x).relu(), 2).flatten(1))


# test_protocols.UserNet: a user's network with BatchNorm; under DDP it normalizes by the
# global minibatch's statistics (trainer.sync_batchnorm, engine/batchnorm.py), as one process
# does. (With trainer.sync_batchnorm=false each process uses its part's, and model=resnet's
# weights differ from one process's by 1.7e-2 after this epoch: measured.)
NETS = {
    "cnn": ("model=cnn", "model.channels=[4,8]", "model.hidden_sizes=[16]"),
    "resnet": ("model=resnet", "model.depth=8", "model.width=4"),
    "user": ("model=linear", "~model.dropout", "model._target_=test_ddp.UserConv"),
    "user_batchnorm": ("model=linear", "~model.dropout", "model._target_=test_protocols.UserNet"),
}


@slow
@pytest.mark.parametrize("net", list(NETS))
def test_two_processes_train_image_networks_to_the_weights_of_one(train_api, monkeypatch, net):
    """Convolutions' gradients are all-reduced like linear layers', in reglab's CNN and in a
    user's module."""
    tests = str(Path(__file__).parent)  # where rank 1 finds the user modules
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([tests, os.environ.get("PYTHONPATH", "")]))
    args = (*RUN, *NETS[net], "logger=none", "trainer.max_epochs=1")
    single, single_dir = train_api(*args)
    parallel, ddp_dir = train_api(*args, *DDP)
    diffs = {
        k: (v - weights(ddp_dir)[k]).abs().max().item() for k, v in weights(single_dir).items()
    }
    assert any(".conv" in k or "features.0" in k for k in diffs)
    assert max(diffs.values()) < WEIGHT_TOLERANCE, diffs
    assert parallel == pytest.approx(single, rel=1e-5)


@slow
def test_cli_run_and_sweep_of_ddp_runs_leave_only_their_own_directories(
    tmp_path, tmp_path_factory, monkeypatch
):
    """Lightning's own launcher would start `train.py` again for rank 1: under -m, a whole
    second sweep. reglab starts rank 1 itself, from the job's config."""
    root = tmp_path / "outputs_root"
    root.mkdir()
    log = tmp_path_factory.mktemp("audit") / "writes"
    audit_other_ranks(monkeypatch, root, log)
    proc = run_cli(*RUN, *DDP, cwd=root)  # Hydra's default run directory, under root
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert rank_writes(log) == []
    proc = run_cli("-m", "seed=0,1", *RUN, *DDP, f"hydra.sweep.dir={root / 'sweep'}", cwd=root)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert rank_writes(log, processes=2) == []  # rank 1 of each job

    (run_dir,) = (root / "outputs").glob("*/*")
    runs = [run_dir.relative_to(root), Path("sweep/0"), Path("sweep/1")]
    expected = {Path("outputs"), run_dir.parent.relative_to(root), Path("sweep")}
    expected |= {r / sub for r in runs for sub in ("", ".hydra", "checkpoints")}
    assert dirs(root) == expected
    metrics = sorted(p.parent.relative_to(root) for p in root.rglob("metrics.json"))
    assert metrics == sorted(runs)
    assert read_metrics(root / "sweep" / "0") == pytest.approx(read_metrics(run_dir), rel=1e-5)


K_STEPS = """
import sys
import pytorch_lightning as pl
import torch
from torch import nn

K, OUT = 3, sys.argv[1]


def data(rank):  # each process its own rows
    g = torch.Generator().manual_seed(100 + rank)
    return torch.randn(4 * K * 8, 5, generator=g), torch.randn(4 * K * 8, 1, generator=g)


def net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 1))


class Chunks(pl.LightningModule):  # K optimizer steps per training_step, as RegLabModule
    def __init__(self):
        super().__init__()
        self.automatic_optimization, self.net = False, net()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)

    def training_step(self, chunk, i):
        opt = self.optimizers()
        for xb, yb in zip(*(t.split(8) for t in chunk)):
            opt.zero_grad()
            self.manual_backward(nn.functional.mse_loss(self.net(xb), yb))
            opt.step()


class Chunk:  # 4 chunks of K minibatches of 8 rows
    def __init__(self, rank):
        self.x, self.y = data(rank)

    def __len__(self):
        return 4

    def __iter__(self):
        return iter(zip(self.x.split(K * 8), self.y.split(K * 8)))


class Data(pl.LightningDataModule):
    def train_dataloader(self):
        return Chunk(self.trainer.global_rank)


if __name__ == "__main__":
    torch.set_num_threads(1)
    module = Chunks()
    trainer = pl.Trainer(
        strategy="ddp", accelerator="cpu", devices=2, max_epochs=1, logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
    )
    trainer.fit(module, datamodule=Data())
    if trainer.global_rank == 0:  # each step on the mean of both processes' minibatches
        ref = net()
        opt = torch.optim.SGD(ref.parameters(), lr=0.1)
        (x0, y0), (x1, y1) = data(0), data(1)
        for s in range(0, len(x0), 8):
            opt.zero_grad()
            loss = nn.functional.mse_loss(ref(x0[s : s + 8]), y0[s : s + 8])
            loss = (loss + nn.functional.mse_loss(ref(x1[s : s + 8]), y1[s : s + 8])) / 2
            loss.backward()
            opt.step()
        pairs = zip(module.net.parameters(), ref.parameters())
        open(OUT, "w").write(str(max((a - b).abs().max().item() for a, b in pairs)))
"""


@slow
def test_ddp_all_reduces_every_one_of_several_backward_passes_in_a_training_step(tmp_path):
    """Why the module's chunks need no change under DDP: Lightning's `manual_backward` calls
    DDP's `prepare_for_backward` before every backward pass, so each of the K steps of one
    training_step is all-reduced (a plain `loss.backward()` after the first is not: the
    processes then drift apart by about 0.07). reglab still takes one step per chunk under
    DDP, for the data's sake (trainer.build_trainer)."""
    script, out = tmp_path / "k_steps.py", tmp_path / "diff.txt"
    script.write_text(textwrap.dedent(K_STEPS))
    proc = run_python(script, str(out), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert float(out.read_text()) < 1e-6
