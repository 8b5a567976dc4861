"""Every strategy on any network: images in their natural shape, models.CNN and models.ResNet,
a user's own nn.Module by `_target_` (the size contract of engine.run.build_net), penalties
on conv and linear weights only, and Monte Carlo dropout on any dropout layer.

Kept fast: tiny widths, 1–3 epochs, no progress bar, CSV logs.
"""

import functools
import re
from concurrent.futures import ThreadPoolExecutor
from typing import ClassVar

import kornia.augmentation as K
import pytest
import torch
from conftest import read_metrics, run_cli
from hydra.utils import instantiate
from torch import nn

import reglab
from reglab.config import ConfigError
from reglab.data.augmentation import Augmentation
from reglab.engine.run import build, build_net
from reglab.models import (
    CNN,
    MLP,
    Autoencoder,
    Ensemble,
    Linear,
    MultiTaskNet,
    ResNet,
)
from reglab.regularization import L1, WeightDecay, penalized_named_parameters, penalized_parameters
from reglab.regularization.dropout import MonteCarlo, has_dropout

QUIET = ["callbacks.progress_bar=null", "logger=csv", "threads=1"]
TINY_CNN = ["model=cnn", "model.channels=[8,16]", "model.hidden_sizes=[32]"]
FAST = ["optimizer.lr=0.01"]  # tiny networks, 2–3 epochs: Adam's default 1e-3 is too slow
TINY_RESNET = ["model=resnet", "model.depth=8", "model.width=4"]
CODER = functools.partial(MLP, hidden_sizes=[16])  # an autoencoder's MLP encoder or decoder
# a user's module by _target_: the linear model's config, its dropout key removed
USER = ["model=linear", "~model.dropout", "model._target_=test_networks.TinyConvNet"]


class TinyConvNet(nn.Module):
    """A user's network, as a user writes it: two convolutions, spatial dropout, a linear head."""

    def __init__(self, in_channels: int, out_features: int, width: int = 8, p: float = 0.0):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1),
            nn.BatchNorm2d(width),
            nn.ReLU(),
            nn.Dropout2d(p),
            nn.Conv2d(width, width, 3, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(4),
            nn.Flatten(),
        )
        self.head = nn.Linear(width * 16, out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        assert x.dim() == 4, x.shape  # images arrive as (N, C, H, W)
        return self.head(self.body(x))


class TakesEverything(nn.Module):
    """A **kwargs constructor: it gets every size reglab knows."""

    received: ClassVar[dict] = {}

    def __init__(self, **sizes):
        super().__init__()
        TakesEverything.received = dict(sizes)
        self.linear = nn.Linear(sizes["in_features"], sizes["out_features"])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x.flatten(1))


def _cfg(tmp_path, *overrides: str):
    return reglab.compose([*QUIET, *overrides], output_dir=tmp_path / "run")


# -- inputs in their natural shape ----------------------------------------------------------------
def test_images_arrive_as_nchw_standardized_per_feature_tables_stay_flat(tmp_path):
    images = instantiate(_cfg(tmp_path).data).prepare()
    flat = instantiate(_cfg(tmp_path, "data.image_shape=null").data).prepare()
    for split in ("train", "val", "test"):
        x = images.splits[split][0]
        assert x.shape[1:] == (1, 8, 8)
        # the same numbers as the flat standardization, feature by feature
        assert torch.equal(x.flatten(1), flat.splits[split][0])
    assert images.n_features == 64 and images.example_shape == (1, 8, 8)
    x, _ = next(iter(images.train_dataloader()))
    assert x.shape == (images.batch_size, 1, 8, 8)
    xv, _ = next(iter(images.val_dataloader()))
    assert xv.shape[1:] == (1, 8, 8)
    images.members, images._train_loader = 3, None  # bagging's loader: (k, rows, C, H, W)
    xb, yb = next(iter(images.train_dataloader()))
    assert xb.shape == (3, images.batch_size, 1, 8, 8) and yb.shape == (3, images.batch_size)
    table = instantiate(_cfg(tmp_path, "data=breast_cancer").data).prepare()
    assert table.splits["train"][0].shape[1:] == (30,) and table.example_shape == (30,)


def test_an_image_shape_that_does_not_hold_the_features_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match=r"data.image_shape=\[1, 4, 4\].*64 features"):
        build(_cfg(tmp_path, "data.image_shape=[1,4,4]"))


def test_flattening_models_give_the_same_outputs_for_images_and_flat_input():
    x = torch.randn(5, 1, 8, 8)
    tasks = {
        "a": {"kind": "classification", "outputs": 3},
        "b": {"kind": "regression", "outputs": 1},
    }
    for net in (
        MLP(64, 10, [16]),
        Linear(64, 10),
        MultiTaskNet(64, 4, tasks, shared_size=16),
        Autoencoder(64, 10, CODER, CODER, code_size=8),
    ):
        assert torch.equal(net(x), net(x.flatten(1)))
    auto = Autoencoder(64, 10, CODER, CODER, code_size=8)
    assert auto.reconstruct(x).shape == (5, 64)  # compared with the flat input
    stacked = Ensemble([MLP(64, 10, [16]) for _ in range(3)], example_shape=(1, 8, 8))
    shared, own = stacked(x), stacked(x.expand(3, *x.shape))
    assert shared.shape == own.shape == (3, 5, 10) and torch.equal(shared, own)
    member = stacked.member(1)
    torch.testing.assert_close(member(x), shared[1])


def test_image_augmentation_acts_on_nchw_in_pixel_units():
    mean, std = torch.rand(64) * 5, torch.rand(64) + 0.5
    augment = Augmentation(
        [K.RandomHorizontalFlip(p=1.0)], image_shape=(1, 8, 8), mean=mean, std=std
    )
    x = torch.randn(6, 1, 8, 8)
    pixels = x * std.view(1, 8, 8) + mean.view(1, 8, 8)
    expected = (pixels.flip(-1) - mean.view(1, 8, 8)) / std.view(1, 8, 8)
    torch.testing.assert_close(augment(x), expected)
    stacked = x.expand(2, *x.shape)  # bagging's (k, N, C, H, W)
    torch.testing.assert_close(augment(stacked), expected.expand(2, *x.shape))


# -- built-in networks through the command line ---------------------------------------------------
@pytest.fixture(scope="module")
def cli_runs(tmp_path_factory):
    """cnn and resnet trained on digits by `python train.py`, two at a time."""
    base = tmp_path_factory.mktemp("nets")
    commands = {
        "cnn": [*TINY_CNN, *FAST, "trainer.max_epochs=3"],
        "resnet": [*TINY_RESNET, "model.preact=true", "trainer.max_epochs=3"],
    }
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {
            name: pool.submit(run_cli, *QUIET, *args, f"hydra.run.dir={base / name}")
            for name, args in commands.items()
        }
        return {name: (f.result(), base / name) for name, f in futures.items()}


@pytest.mark.parametrize("name", ["cnn", "resnet"])
def test_builtin_networks_learn_digits_through_the_cli(cli_runs, name):
    proc, run_dir = cli_runs[name]
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = read_metrics(run_dir)
    assert metrics["test/acc"] > 0.6, metrics  # chance: 0.1
    # the penalized tensors are named once in the run's log: conv and linear weights
    lines = [line for line in (proc.stdout + proc.stderr).splitlines() if "penalized by" in line]
    assert len(lines) == 1, lines
    names = lines[0].rsplit(": ", 1)[1].split(", ")
    assert names and all(n.startswith("net.") and n.endswith(".weight") for n in names), names
    assert not any("bn" in n for n in names), names


@pytest.mark.parametrize("shape", [(1, 8, 8), (3, 32, 32)])
@pytest.mark.parametrize(
    "make",
    [
        lambda c, s: CNN(c, 10, s, channels=[4, 8, 8, 8, 8], hidden_sizes=[8]),  # 5 blocks on 8×8
        lambda c, s: ResNet(c, 10, depth=8, width=4),
        lambda c, s: ResNet(c, 10, depth=14, width=4, preact=True),
    ],
)
def test_builtin_networks_take_small_and_cifar_sized_images(make, shape):
    net = make(shape[0], shape)
    out = net(torch.randn(3, *shape))
    assert out.shape == (3, 10)
    out.sum().backward()
    assert all(p.grad is not None for p in net.parameters())


def test_resnet_has_6n_plus_2_weight_layers_at_three_widths():
    net = ResNet(3, 10, depth=20, width=16)
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3)]
    assert len(convs) + 1 == 20  # 19 3×3 convolutions and the linear layer
    assert sorted({m.out_channels for m in convs}) == [16, 32, 64]
    assert any(isinstance(m, nn.BatchNorm2d) for m in net.modules())


# -- a user's own module --------------------------------------------------------------------------
def test_a_user_module_trains_with_the_sizes_its_constructor_declares(train_api):
    metrics, run_dir = train_api(*QUIET, *USER, "+model.width=8", *FAST, "trainer.max_epochs=3")
    assert metrics["test/acc"] > 0.3, metrics  # chance: 0.1
    assert (run_dir / "metrics.json").exists()


def test_a_kwargs_constructor_gets_every_size(tmp_path):
    cfg = _cfg(
        tmp_path, "model=linear", "~model.dropout", "model._target_=test_networks.TakesEverything"
    )
    dm = instantiate(cfg.data).prepare()
    build_net(cfg, dm)
    assert TakesEverything.received == {
        "in_features": 64,
        "out_features": 10,
        "in_channels": 1,
        "image_shape": [1, 8, 8],
    }


# -- penalties on any network ---------------------------------------------------------------------
def test_penalties_select_conv_and_linear_weights_never_norm_layers():
    cnn = CNN(1, 10, (1, 8, 8), channels=[4, 8], hidden_sizes=[16], dropout={"channel": 0.1})
    names = [n for n, _ in penalized_named_parameters(cnn)]
    assert names == [
        "features.0.weight",
        "features.4.weight",
        "classifier.1.weight",
        "classifier.3.weight",
    ]
    resnet = ResNet(1, 10, depth=8, width=4)
    weights = {id(p) for p in penalized_parameters(resnet)}
    affine = [m for m in resnet.modules() if isinstance(m, nn.Conv2d | nn.Linear)]
    assert weights == {id(m.weight) for m in affine}
    with_bias = {id(p) for p in penalized_parameters(resnet, include_bias=True)}
    assert with_bias == weights | {id(resnet.head[-1].bias)}  # the convolutions have none
    norms = [p for m in resnet.modules() if isinstance(m, nn.BatchNorm2d) for p in m.parameters()]
    assert norms and not {id(p) for p in norms} & with_bias
    layer_norm = nn.Sequential(nn.Linear(4, 4), nn.LayerNorm(4), nn.GroupNorm(2, 4))
    assert [n for n, _ in penalized_named_parameters(layer_norm, True)] == ["0.weight", "0.bias"]


@pytest.mark.parametrize("include_bias", [False, True])
def test_penalties_on_reglab_networks_are_what_they_were(include_bias):
    """The rule before convolutions: every parameter, but biases unless asked."""
    tasks = {"a": {"kind": "classification", "outputs": 3}}
    nets = [
        MLP(64, 10, [16, 16], dropout={"input": 0.1, "hidden": 0.2}),
        Linear(64, 10),
        MultiTaskNet(64, 3, tasks, shared_size=16, head_sizes=[8]),
        Autoencoder(64, 10, CODER, CODER, functools.partial(MLP, hidden_sizes=[4]), code_size=8),
        Ensemble([MLP(64, 10, [16]) for _ in range(3)]),
    ]
    for net in nets:
        old = [p for n, p in net.named_parameters() if include_bias or not n.endswith("bias")]
        new = penalized_parameters(net, include_bias)
        assert [id(p) for p in new] == [id(p) for p in old], type(net).__name__


def test_proximal_l1_zeros_cnn_weights_and_not_its_biases(train_api):
    metrics, run_dir = train_api(
        *QUIET,
        *TINY_CNN,
        "regularizer=l1",
        "regularizer.alpha=0.05",
        "regularizer.proximal=true",
        "optimizer=sgd",
        "optimizer.lr=0.05",
        "trainer.max_epochs=2",
    )
    assert metrics["weights/sparsity"] > 0.2, metrics  # exact zeros: soft-thresholding
    state = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]
    for name in ("net.features.0", "net.features.3", "net.classifier.1"):
        weight, bias = state[f"{name}.weight"], state[f"{name}.bias"]
        assert (weight == 0).float().mean() > 0.1, name
        assert (bias != 0).all(), name  # biases are not penalized


def test_weight_decay_shrinks_resnet_convolutions_not_batchnorm():
    torch.manual_seed(0)
    net = ResNet(1, 10, depth=8, width=4)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-1, 1)
    before = {p: p.detach().clone() for p in net.parameters()}
    WeightDecay(alpha=0.1).before_step_(penalized_parameters(net), lr=0.5)  # × (1 − εα)
    shrunk = {m.weight for m in net.modules() if isinstance(m, nn.Conv2d | nn.Linear)}
    for p in net.parameters():
        torch.testing.assert_close(p.detach(), before[p] * (0.95 if p in shrunk else 1.0))


def test_weight_decay_on_resnet_in_training_gives_smaller_weights(train_api):
    common = [*QUIET, *TINY_RESNET, "optimizer=sgd", "optimizer.lr=0.05", "trainer.max_epochs=1"]
    plain, _ = train_api(*common)
    decayed, _ = train_api(*common, "regularizer=weight_decay", "regularizer.alpha=1.0")
    assert decayed["weights/l2_norm"] < 0.9 * plain["weights/l2_norm"], (plain, decayed)


def test_l1_on_resnet_penalty_counts_conv_and_linear_weights_only():
    net = ResNet(1, 10, depth=8, width=4)
    weights = penalized_parameters(net)
    expected = sum(
        m.weight.abs().sum() for m in net.modules() if isinstance(m, nn.Conv2d | nn.Linear)
    )
    torch.testing.assert_close(L1(alpha=1.0).penalty(weights), expected)


# -- Monte Carlo dropout on any network with dropout ----------------------------------------------
def test_mc_dropout_on_the_cnn(train_api):
    metrics, _ = train_api(
        *QUIET,
        *TINY_CNN,
        *FAST,
        "model.dropout.hidden=0.3",
        "inference=mc",
        "inference.samples=10",
        "trainer.max_epochs=2",
    )
    assert metrics["test/acc_mc_T10"] == pytest.approx(metrics["test/acc"])
    assert metrics["test/acc"] > 0.5
    assert metrics["test/acc_mc_T1"] < 1.0


def test_mc_dropout_on_a_user_module_with_dropout2d(train_api):
    metrics, _ = train_api(
        *QUIET, *USER, "+model.p=0.3", "inference=mc", "inference.samples=5", "trainer.max_epochs=2"
    )
    assert "test/acc_mc_T5" in metrics and "test/predictive_entropy" in metrics


def test_has_dropout_sees_every_kind_of_dropout_layer():
    for layer in (
        nn.Dropout(0.1),
        nn.Dropout1d(0.1),
        nn.Dropout2d(0.1),
        nn.Dropout3d(0.1),
        nn.AlphaDropout(0.1),
    ):
        assert has_dropout(nn.Sequential(nn.Linear(2, 2), layer))
    assert not has_dropout(nn.Sequential(nn.Linear(2, 2), nn.Dropout2d(0.0)))
    assert not has_dropout(CNN(1, 10, (1, 8, 8)))
    assert has_dropout(CNN(1, 10, (1, 8, 8), dropout={"channel": 0.2}))


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_mc_sampling_keeps_batchnorm_in_eval_mode_and_its_statistics(mode):
    torch.manual_seed(0)
    net = TinyConvNet(1, 10, width=4, p=0.5)
    net.body[1].running_mean.uniform_(-1, 1)  # statistics as after training
    net.body[1].running_var.uniform_(0.5, 2)
    net.train(mode == "train")
    stats = {k: v.clone() for k, v in net.state_dict().items()}
    x = torch.randn(7, 1, 8, 8)
    outputs = MonteCarlo(samples=6, max_rows=10).sample(net, x)
    assert outputs.shape == (6, 7, 10)
    for key, value in net.state_dict().items():
        assert torch.equal(value, stats[key]), key  # running mean, var and count untouched
    assert net.training == (mode == "train") and net.body[1].training == (mode == "train")
    assert not torch.allclose(outputs[0], outputs[1])  # masks differ between samples
    # with the masks off (p = 0) sampling is the eval-mode network: BatchNorm used its stats
    net.body[3].p = 0.0
    still = MonteCarlo(samples=3).sample(net, x)
    net.eval()
    expected = net(x)
    for t in range(3):
        torch.testing.assert_close(still[t], expected)


# -- augmentation on the cnn ----------------------------------------------------------------------
def test_affine_augmentation_trains_a_cnn(train_api):
    metrics, _ = train_api(*QUIET, *TINY_CNN, *FAST, "augmentation=affine", "trainer.max_epochs=2")
    assert metrics["test/acc"] > 0.3


# -- errors: one line through the command line ----------------------------------------------------
ERRORS: dict[str, tuple[list[str], list[str]]] = {
    "cnn-on-tabular": (["model=cnn", "data=breast_cancer"], ["reglab.models.CNN", "tabular"]),
    "resnet-on-tabular": (["model=resnet", "data=diabetes"], ["reglab.models.ResNet", "tabular"]),
    "no-such-target": (
        ["model=linear", "~model.dropout", "model._target_=nowhere.Net"],
        ["model._target_=nowhere.Net", "cannot be imported"],
    ),
    "wrong-output-shape": (
        ["model=linear", "~model.dropout", "model._target_=torch.nn.Flatten"],
        ["torch.nn.Flatten", "(2, 64)", "(2, 1, 8, 8)", "expected (2, 10)"],
    ),
    "mc-without-dropout": (
        ["model=cnn", "inference=mc"],
        ["inference=mc", "reglab.models.CNN", "dropout"],
    ),
    "bagging-multitask": (
        ["model=multitask", "data=digits_multitask", "ensemble=bagging"],
        ["ensemble=bagging", "model=multitask", "model=cnn"],
    ),
    "bad-depth": (["model=resnet", "model.depth=10"], ["model.depth=10", "6n + 2"]),
}


THROUGH_THE_CLI = "cnn-on-tabular"  # one refusal as a user meets it; the rest in-process


def test_a_network_error_through_the_cli_is_one_line_and_refused_before_training(tmp_path):
    args, words = ERRORS[THROUGH_THE_CLI]
    proc = run_cli(*QUIET, *args, f"hydra.run.dir={tmp_path / 'run'}")
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("reglab: error: "), lines[0]
    assert all(word in lines[0] for word in words), lines[0]
    assert not re.search(r"epoch \d", proc.stdout)  # refused before training


@pytest.mark.parametrize("name", [n for n in ERRORS if n != THROUGH_THE_CLI])
def test_network_errors_are_one_line(tmp_path, name):
    """`build` raises the ConfigError the command line prints as its one line (the test
    above), before a Trainer exists."""
    args, words = ERRORS[name]
    with pytest.raises(ConfigError) as err:
        build(reglab.compose([*QUIET, *args], output_dir=tmp_path))
    message = str(err.value)
    assert "\n" not in message, message
    for word in words:
        assert word in message, (word, message)
