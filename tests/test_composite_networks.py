"""Composite networks from parts: multi-task's trunk (§7.7) and the autoencoder's encoder,
decoder and classifier (§7.6) are any nn.Modules, sized by the size contract
(models/sizes.py), and model=conv_autoencoder is a convolutional one for images.

Checked: the part a config names is the class the user wrote, it receives the sizes its
constructor declares and its parameters are trained; the convolutional autoencoder
reconstructs test digits better than their mean image; parts that do not fit are one-line
errors. Kept fast: tiny widths, 2–4 epochs.
"""

import functools
from typing import ClassVar

import pytest
import torch
from hydra.utils import instantiate
from torch import nn

import reglab
from reglab.config import ConfigError
from reglab.engine.run import build
from reglab.models import CNN, MLP, Autoencoder, ConvDecoder, MultiTaskNet, Task
from reglab.models.cnn import pooled_shapes

QUIET = ["callbacks.progress_bar=null", "logger=none", "threads=1", "optimizer.lr=0.01"]
MULTITASK = ["model=multitask", "data=digits_multitask", "model.shared_size=32"]
# a user's part by _target_: the MLP part's own keys removed
USER_TRUNK = [
    *(f"~model.trunk.{key}" for key in ("hidden_sizes", "activation", "dropout")),
    "model.trunk._target_=test_composite_networks.UserTrunk",
]
USER_CLASSIFIER = [
    *(f"~model.classifier.{key}" for key in ("hidden_sizes", "activation", "dropout")),
    "model.classifier._target_=test_composite_networks.UserHead",
]
IDENTITY_ENCODER = [  # returns the image itself: not the (N, features) of a code
    *(f"~model.encoder.{key}" for key in ("hidden_sizes", "activation", "dropout")),
    "model.encoder._target_=torch.nn.Identity",
]
TINY_CONV_AE = [
    "model=conv_autoencoder",
    "model.encoder.channels=[16]",
    "model.decoder.channels=[16]",
]


class UserTrunk(nn.Module):
    """A user's convolutional trunk: it declares image sizes and out_features."""

    received: ClassVar[dict] = {}

    def __init__(self, in_channels: int, image_shape: list[int], out_features: int) -> None:
        super().__init__()
        UserTrunk.received = {"in_channels": in_channels, "image_shape": list(image_shape)}
        UserTrunk.received["out_features"] = out_features
        self.conv = nn.Conv2d(in_channels, 4, 3, padding=1)
        self.linear = nn.Linear(4 * image_shape[1] * image_shape[2], out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        assert x.dim() == 4, x.shape  # the trunk sees images as (N, C, H, W)
        return self.linear(self.conv(x).relu().flatten(1))


class UserHead(nn.Module):
    """A user's classifier on the code: flat sizes only."""

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        self.linear = nn.Linear(in_features, out_features)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.linear(h)


def _trained(tmp_path, *overrides: str) -> tuple[nn.Module, dict[str, torch.Tensor], dict]:
    """(the network as built, the state it trained to, the run's metrics)."""
    cfg = reglab.compose([*QUIET, *overrides], output_dir=tmp_path / "run")
    net = build(cfg).module.net  # seeded by cfg.seed: the same initial θ train starts from
    metrics = reglab.train(cfg)
    state = torch.load(tmp_path / "run" / "checkpoints" / "best.ckpt", weights_only=False)
    trained = {k.removeprefix("net."): v for k, v in state["state_dict"].items()}
    return net, trained, metrics


def _changed(net: nn.Module, prefix: str, trained: dict[str, torch.Tensor]) -> list[bool]:
    part = dict(net.named_parameters())
    return [not torch.equal(p, trained[n]) for n, p in part.items() if n.startswith(prefix)]


# -- multi-task: any trunk ------------------------------------------------------------------------
def test_a_user_trunk_by_target_gets_its_sizes_and_is_trained(tmp_path):
    net, trained, metrics = _trained(tmp_path, *MULTITASK, *USER_TRUNK, "trainer.max_epochs=3")
    assert type(net.trunk[1]) is UserTrunk
    assert UserTrunk.received == {"in_channels": 1, "image_shape": [1, 8, 8], "out_features": 32}
    assert all(head[0].in_features == 32 for head in net.heads.values())
    changed = _changed(net, "trunk.1.", trained)
    assert len(changed) == 4 and all(changed)  # conv and linear, weights and biases
    assert metrics["test/parity/acc"] > 0.75 and metrics["test/digit/acc"] > 0.6, metrics


def test_the_cnn_trunk_is_penalized_on_its_conv_weights(tmp_path):
    overrides = [*MULTITASK, "model/trunk=cnn", "model.trunk.channels=[4,8]"]
    cfg = reglab.compose([*QUIET, *overrides, "regularizer=l2"], output_dir=tmp_path)
    module = build(cfg).module
    assert isinstance(module.net.trunk[1], CNN)
    assert {"net.trunk.1.features.0.weight", "net.trunk.1.features.3.weight"} <= set(
        module.weight_names
    )
    assert not any(name.endswith("bias") for name in module.weight_names)


def test_a_trunk_without_out_features_sets_the_heads_width_by_its_output():
    tasks = [Task("a", "classification", 3)]

    def trunk(in_channels: int) -> nn.Module:  # features of its own width: 5·4·4 = 80
        return nn.Sequential(nn.Conv2d(in_channels, 5, 3, padding=1), nn.AvgPool2d(2), nn.Flatten())

    net = MultiTaskNet(64, 3, tasks, trunk, in_channels=1, image_shape=[1, 8, 8])
    assert net.heads["a"][0].in_features == 80
    assert net(torch.randn(6, 1, 8, 8)).shape == (6, 3)


# -- semi-supervised: any encoder, decoder, classifier; the convolutional autoencoder ------------
@pytest.mark.parametrize("shape", [(1, 8, 8), (3, 7, 5), (2, 1, 1)])
def test_conv_decoder_mirrors_the_cnn_map_sizes_back_to_the_image(shape):
    encoder = CNN(shape[0], 12, shape, channels=[4, 6], hidden_sizes=[])
    decoder = ConvDecoder(12, shape, channels=[6, 4])
    x = torch.randn(3, *shape)
    assert decoder(encoder(x)).shape == (3, *shape)
    sizes = [m.size for m in decoder.modules() if isinstance(m, nn.Upsample)]
    assert sizes == pooled_shapes(*shape[1:], 2)[-2::-1]  # the encoder's sizes, reversed


def test_conv_autoencoder_reconstructs_better_than_the_mean_image(tmp_path):
    overrides = [*TINY_CONV_AE, "data.labeled_fraction=0.1", "trainer.max_epochs=4"]
    net, trained, metrics = _trained(tmp_path, *overrides)
    assert isinstance(net.encoder[1], CNN) and isinstance(net.decoder, ConvDecoder)
    # the mean image's error, in the same units (pixels over the mean feature variance):
    # standardized, the training mean is 0, so its residual on a test digit is x itself
    dm = instantiate(reglab.compose(overrides).data).prepare()
    scale = dm.feature_std / dm.feature_std.square().mean().sqrt()
    mean_image = (dm.splits["test"][0].flatten(1) * scale).square().mean().item()
    assert metrics["test/recon_mse"] < 0.6 * mean_image, (metrics, mean_image)
    assert all(_changed(net, "decoder.", trained))


def test_a_user_classifier_on_the_code_is_the_class_written_and_is_trained(tmp_path):
    overrides = ["model=autoencoder", "model.code_size=12", *USER_CLASSIFIER]
    net, trained, metrics = _trained(tmp_path, *overrides, "trainer.max_epochs=2")
    assert type(net.classifier) is UserHead
    assert (net.classifier.linear.in_features, net.classifier.linear.out_features) == (12, 10)
    assert all(_changed(net, "classifier.", trained))
    assert metrics["test/acc"] > 0.8, metrics


def test_parts_in_python_follow_the_same_contract():
    coder = functools.partial(MLP, hidden_sizes=[16])
    auto = Autoencoder(64, 10, CNN, coder, UserHead, code_size=8, image_shape=[1, 8, 8])
    x = torch.randn(5, 1, 8, 8)
    scores, reconstruction = auto.forward_both(x)
    assert scores.shape == (5, 10) and reconstruction.shape == (5, 64)
    assert auto.decoder[0].in_features == 8 and auto.decoder[-1].out_features == 64


# -- errors: one line, naming the part ---------------------------------------------------------
@pytest.mark.parametrize(
    ("overrides", "words"),
    [
        (["model=conv_autoencoder", "data=breast_cancer"], ["model.encoder=CNN", "tabular"]),
        (
            [*MULTITASK, "model.trunk._target_=nowhere.Trunk"],
            ["model.trunk._target_=nowhere.Trunk", "cannot be imported"],
        ),
        (
            ["model=autoencoder", *IDENTITY_ENCODER],
            ["model.encoder", "(2, 1, 8, 8)", "(2, features)"],
        ),
    ],
    ids=["conv-encoder-on-tables", "trunk-not-importable", "encoder-not-flat"],
)
def test_a_part_that_does_not_fit_is_a_one_line_error(tmp_path, overrides, words):
    with pytest.raises(ConfigError) as err:
        build(reglab.compose([*QUIET, *overrides], output_dir=tmp_path))
    message = str(err.value)
    assert "\n" not in message and "allowed" in message
    for word in words:
        assert word in message, (word, message)
