"""The GPU switches, checked on the CPU: `trainer.precision=bf16-mixed` runs every forward
under bfloat16 autocast and still learns; `trainer.channels_last=true` lays out the
network's 4-D weights and the image batches channels-last and computes what the contiguous
run computes; `trainer.compile=true` trains what the eager network trains, with the same
checkpoint keys, and resumes."""

from types import SimpleNamespace
from typing import ClassVar

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from conftest import read_metrics
from omegaconf import OmegaConf
from torch import nn

import reglab
from reglab.config import ConfigError
from reglab.engine.run import build
from reglab.engine.speed import NetworkSpeed

QUIET = ["logger=none", "callbacks.progress_bar=null", "threads=1"]
# 3-channel 8×8 images without files: data=synthetic's 192 features as (3, 8, 8)
IMAGES = [
    "data=synthetic",
    "data.source.n_features=192",
    "+data.image_shape=[3,8,8]",
    "data.source.n_classes=3",
    "data.source.n_samples=400",
]
USER = ["model=linear", "~model.dropout"]  # then model._target_=test_speed_settings.<class>
CL = torch.channels_last


class DtypeNet(nn.Module):
    """A user's network that records, at every forward, its mode and its hidden layer's dtype."""

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        self.hidden, self.out = nn.Linear(in_features, 32), nn.Linear(32, out_features)
        self.seen: set[tuple[bool, torch.dtype]] = set()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.hidden(x.flatten(1))
        self.seen.add((self.training, h.dtype))
        return self.out(h.relu())


class TinyConv(nn.Module):
    """A user's convolutional network: conv(3×3) → ReLU → global average → linear."""

    def __init__(self, in_channels: int, out_features: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, 6, 3, padding=1)
        self.head = nn.Linear(6, out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.conv(x).relu().mean((2, 3)))


class FlatConv(TinyConv):
    """A user's network that flattens its feature maps: `.view` needs contiguous memory,
    `.flatten` takes any layout."""

    def __init__(self, in_channels: int, out_features: int, image_shape: list[int]) -> None:
        super().__init__(in_channels, out_features)
        self.head = nn.Linear(6 * image_shape[1] * image_shape[2], out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv(x).relu()
        return self.head(h.view(len(h), -1) if self.view else h.flatten(1))


def fit_and_test(tmp_path, *overrides: str):
    run = build(reglab.compose([*QUIET, *overrides], output_dir=tmp_path))
    run.trainer.fit(run.module, datamodule=run.dm)
    run.trainer.test(run.module, datamodule=run.dm, verbose=False)
    return run


@pytest.mark.parametrize("precision, dtype", [("bf16-mixed", torch.bfloat16), ("32-true", None)])
def test_bf16_mixed_runs_training_validation_and_test_under_autocast(tmp_path, precision, dtype):
    dtype = dtype or torch.float32
    args = [*USER, "model._target_=test_speed_settings.DtypeNet", "trainer.max_epochs=1"]
    config = [*QUIET, *args, f"trainer.precision={precision}"]
    run = build(reglab.compose(config, output_dir=tmp_path))
    net = run.module.net
    net.seen.clear()  # the size probe's forward (float32, outside any Trainer)
    run.trainer.fit(run.module, datamodule=run.dm)
    assert net.seen == {(True, dtype), (False, dtype)}  # training steps and validations
    assert run.module._direct  # bf16 needs no loss scale: the direct step path still holds
    net.seen.clear()
    run.trainer.test(run.module, datamodule=run.dm, verbose=False)
    assert net.seen == {(False, dtype)}


def test_bf16_mixed_learns_digits_with_clipping_and_fused_adam(train_api):
    """Lightning's mixed-precision plugin refuses clipping with a fused optimizer (a check
    for 16-mixed's loss scale); bf16 clips as full precision does."""
    args = [*QUIET, "trainer.max_epochs=5", "trainer.gradient_clip_val=1.0"]
    bf16, _ = train_api(*args, "trainer.precision=bf16-mixed")
    fp32, _ = train_api(*args)
    assert bf16["test/acc"] > 0.9
    assert bf16["test/loss"] != fp32["test/loss"]  # the forward really ran in bfloat16
    assert bf16["test/acc"] == pytest.approx(fp32["test/acc"], abs=0.03)


@pytest.mark.parametrize(
    "net",
    [
        ["model=multitask", "data=digits_multitask", "inference=weight_scaling"],
        ["model=cnn", "model.channels=[4]", "model.hidden_sizes=[8]"],
    ],
    ids=["multitask", "cnn"],
)
def test_bf16_test_outputs_reach_predictions_npz_as_float32(train_api, net):
    """numpy has no bfloat16: the multi-task run's predictions.npz ended in a TypeError."""
    metrics, run_dir = train_api(
        *QUIET, *net, "trainer.max_epochs=1", "trainer.precision=bf16-mixed"
    )
    arrays = np.load(run_dir / "predictions.npz")
    probs = [arrays[k] for k in arrays.files if k.startswith("probs")]
    assert probs and all(p.dtype == np.float32 for p in probs)
    assert all(np.allclose(p.sum(-1), 1, atol=0.02) for p in probs)  # bf16's 3 digits
    assert all(np.isfinite(v) for v in metrics.values() if isinstance(v, float))


class Layouts(pl.Callback):
    """Whether every 4-D input the network received was channels-last, and whether its
    4-D parameters are, at the end of the fit."""

    def on_fit_start(self, trainer, pl_module) -> None:
        self.inputs: list[bool] = []
        self.handle = pl_module.net.register_forward_pre_hook(self.record)

    def record(self, net: nn.Module, args: tuple) -> None:
        self.inputs.append(args[0].is_contiguous(memory_format=CL))

    def on_fit_end(self, trainer, pl_module) -> None:
        self.handle.remove()
        weights = [p for p in pl_module.net.parameters() if p.dim() == 4]
        assert weights and all(w.shape[1] > 1 and w.shape[-1] > 1 for w in weights)
        self.weights = [w.is_contiguous(memory_format=CL) for w in weights]


SPY = f"{__name__}.Layouts"
NETS = {
    "cnn": ["model=cnn", "model.channels=[4,8]", "model.hidden_sizes=[16]"],
    "user": [*USER, "model._target_=test_speed_settings.TinyConv"],
    # streamed minibatches: laid out as they are read (data/stream.py), not at rest
    "cnn-streamed": [
        "model=cnn",
        "model.channels=[4,8]",
        "model.hidden_sizes=[16]",
        "data.in_memory=false",
    ],
}


@pytest.mark.parametrize("net", list(NETS))
def test_channels_last_lays_out_weights_and_batches_and_changes_no_metric(tmp_path, net):
    results = {}
    for layout in (False, True):
        args = [*IMAGES, *NETS[net], "trainer.max_epochs=2", f"trainer.channels_last={layout}"]
        run = fit_and_test(tmp_path / str(layout), *args, f"+callbacks.layouts._target_={SPY}")
        seen = next(cb for cb in run.trainer.callbacks if isinstance(cb, Layouts))
        assert seen.inputs and set(seen.inputs) == {layout}  # training and validation batches
        assert set(seen.weights) == {layout}
        results[layout] = run.module.test_results
    for key, value in results[False].items():
        assert float(results[True][key]) == pytest.approx(float(value), rel=1e-4, abs=1e-6), key


@pytest.mark.parametrize("net", ["cnn", "user"])
def test_channels_last_trains_a_vectorized_bagging_ensemble_as_without(train_api, net):
    """Stacked members' convolution weights are 5-D, (k, out, in, kh, kw): they keep their
    layout (channels-last is a 4-D format; `Module.to(memory_format=…)` raised on them)."""
    args = [*QUIET, *IMAGES, *NETS[net], "trainer.max_epochs=2"]
    args += ["ensemble=bagging", "ensemble.members=2"]
    plain, _ = train_api(*args)
    laid_out, _ = train_api(*args, "trainer.channels_last=true")
    assert laid_out.keys() == plain.keys()
    for key, value in plain.items():
        assert laid_out[key] == pytest.approx(value, rel=1e-4, abs=1e-6), key


@pytest.mark.parametrize("view", [True, False], ids=["view", "flatten"])
def test_a_network_that_cannot_take_channels_last_is_refused_in_one_line(
    tmp_path, monkeypatch, view
):
    """Checked before training, on a copy of the network (it used to end the first step
    in a traceback); a forward that flattens any layout trains."""
    monkeypatch.setattr(FlatConv, "view", view, raising=False)
    args = [*QUIET, *IMAGES, *USER, f"model._target_={__name__}.FlatConv"]
    args += ["trainer.channels_last=true", "trainer.max_epochs=1"]
    if not view:
        run = fit_and_test(tmp_path, *args)
        assert run.module.test_results["test/acc"] > 0
        return
    with pytest.raises(ConfigError) as err:
        build(reglab.compose(args, output_dir=tmp_path))
    message = str(err.value)
    assert "\n" not in message and "allowed" in message, message
    for word in ("trainer.channels_last=true", "FlatConv", "view", ".flatten"):
        assert word in message, (word, message)


def test_channels_last_leaves_tabular_data_and_networks_as_they_are(train_api):
    args = [*QUIET, "data=diabetes", "trainer.max_epochs=2"]
    plain, _ = train_api(*args)
    laid_out, _ = train_api(*args, "trainer.channels_last=true")
    assert laid_out == plain


def test_channels_last_refuses_the_cpu_convolution_onednn_corrupts(tmp_path):
    """ResNet's strided 1×1 shortcut at width 4: oneDNN's channels-last weight gradient
    writes past its buffer on the CPU (engine/speed.py); a one-line error, before training."""
    args = ["model=resnet", "model.depth=8", "model.width=4", "trainer.channels_last=true"]
    with pytest.raises(ConfigError) as err:
        build(reglab.compose([*QUIET, *args], output_dir=tmp_path / "narrow"))
    message = str(err.value)
    assert "\n" not in message and "trainer.channels_last" in message and "allowed" in message
    wide = build(reglab.compose([*QUIET, *args, "model.width=16"], output_dir=tmp_path / "wide"))
    assert wide.cfg.trainer.channels_last


class Compiled(pl.Callback):
    """Records whether the module's network was compiled when training started."""

    seen: ClassVar[list[bool]] = []

    def on_train_start(self, trainer, pl_module) -> None:
        Compiled.seen.append(getattr(pl_module.net, "_compiled_call_impl", None) is not None)


def test_a_compiled_network_is_compiled_once_and_tested_eagerly():
    """The test pass registers hooks after compilation, which compiled code need not call
    (under DDP it did not): the network runs it eagerly, then is compiled again."""
    module = SimpleNamespace(net=nn.Linear(2, 2))
    speed = NetworkSpeed(compile=True)
    speed.setup(None, module, "fit")
    compiled = module.net._compiled_call_impl
    assert compiled is not None
    speed.setup(None, module, "test")  # a later Trainer's setup keeps what was compiled
    speed.on_test_start(None, module)
    assert module.net._compiled_call_impl is None
    speed.on_test_end(None, module)
    assert module.net._compiled_call_impl is compiled


def checkpoint_keys(run_dir) -> dict[str, list[str]]:
    ckpts = ("best", "last")
    return {
        c: sorted(torch.load(run_dir / f"checkpoints/{c}.ckpt", weights_only=False)["state_dict"])
        for c in ckpts
    }


@pytest.mark.slow  # torch.compile on the CPU: about 30 s for a first compilation
def test_compile_trains_the_same_network_keeps_checkpoint_keys_and_resumes(train_api):
    # 4 full minibatches: a partial one is a new shape, which inductor compiles again (the
    # user network's test below has one)
    net = ["model=cnn", "model.channels=[4]", "model.hidden_sizes=[8]", "data.train_size=256"]
    args = [*QUIET, *net, "callbacks.early_stopping.patience=100"]
    spy = f"+callbacks.spy._target_={__name__}.Compiled"
    eager, eager_dir = train_api(*args, "trainer.max_epochs=2")
    Compiled.seen.clear()
    compiled, compiled_dir = train_api(*args, "trainer.max_epochs=2", "trainer.compile=true", spy)
    assert Compiled.seen == [True]
    assert compiled.keys() == eager.keys()
    for key, value in eager.items():
        assert compiled[key] == pytest.approx(value, rel=1e-4, abs=1e-6), key
    assert checkpoint_keys(compiled_dir) == checkpoint_keys(eager_dir)
    # 1 epoch, then resumed to 2: where the compiled 2-epoch run ends
    _, part = train_api(*args, "trainer.max_epochs=1", "trainer.compile=true")
    saved = OmegaConf.load(part / "config.yaml")
    saved.trainer.max_epochs = 2
    OmegaConf.save(saved, part / "config.yaml")
    reglab.train(reglab.compose([f"resume={part}"], output_dir=part))
    resumed = read_metrics(part)
    assert resumed["stopped_step"] == compiled["stopped_step"] == 2 * 4
    for key, value in compiled.items():
        assert resumed[key] == pytest.approx(value, rel=1e-5, abs=1e-7), key


@pytest.mark.slow  # torch.compile on the CPU: a first compilation of a tiny network
def test_compile_trains_a_users_network_as_the_eager_one(train_api):
    args = [*QUIET, *IMAGES, *NETS["user"], "trainer.max_epochs=2"]
    spy = f"+callbacks.spy._target_={__name__}.Compiled"
    eager, eager_dir = train_api(*args)
    Compiled.seen.clear()
    compiled, compiled_dir = train_api(*args, "trainer.compile=true", spy)
    assert Compiled.seen == [True]
    assert compiled.keys() == eager.keys()
    for key, value in eager.items():
        assert compiled[key] == pytest.approx(value, rel=1e-4, abs=1e-6), key
    assert checkpoint_keys(compiled_dir) == checkpoint_keys(eager_dir)


@pytest.mark.slow  # compiles the grouped-convolution ensemble: about 30 s here
def test_compile_trains_a_vectorized_bagging_ensemble_as_the_eager_one(train_api):
    args = [*QUIET, *NETS["cnn"], "data.train_size=192", "trainer.max_epochs=2"]  # 3 full batches
    args += ["ensemble=bagging", "ensemble.members=3"]
    eager, _ = train_api(*args)
    compiled, _ = train_api(*args, "trainer.compile=true")
    for key, value in eager.items():
        assert compiled[key] == pytest.approx(value, rel=1e-4, abs=1e-6), key
