"""The size contract: a network gets the sizes its constructor declares, and only those.

reglab never asks a network what it is: it reads the constructor's signature and passes the
sizes named there among `in_features` (C·H·W for images), `out_features`, `in_channels` and
`image_shape` (image data only). The same contract sizes the parts of a composite network
(multi-task's trunk, an autoencoder's encoder, decoder and classifier), so any nn.Module
that fits a whole model also fits a part: `build_part` is what `engine.run.build_net` does
for a model, one level down.
"""

import inspect
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from reglab.config import ConfigError

IMAGE_ARGUMENTS = ("in_channels", "image_shape")  # sizes only image data has
FOR_TABLES = "image data such as data=digits, or a model of tables: model=mlp or model=linear"

Part = Callable[..., nn.Module]  # a class, or a partial of one (`_partial_: true` in YAML)


def accepted_sizes(
    constructor: Any,
    sizes: dict[str, Any],
    target: str,
    allowed: str = FOR_TABLES,
) -> dict[str, Any]:
    """The sizes `constructor` declares (all of them if it takes **kwargs); ConfigError if it
    requires an image's size and `sizes` has none (the input is flat)."""
    try:
        parameters = inspect.signature(constructor).parameters
    except (TypeError, ValueError):  # no signature to read (a builtin): hand it everything
        return sizes
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return sizes
    for name in IMAGE_ARGUMENTS:
        p = parameters.get(name)
        if p is not None and p.default is inspect.Parameter.empty and name not in sizes:
            raise ConfigError(
                f"model {target} takes images ({name}), but the data has no data.image_shape:"
                f" it is tabular (allowed: {allowed})"
            )
    return {k: v for k, v in sizes.items() if k in parameters}


def input_sizes(
    in_features: int, in_channels: int | None, image_shape: Sequence[int] | None
) -> dict[str, Any]:
    """The data's sizes as a composite network received them, to hand on to its first part."""
    sizes: dict[str, Any] = {"in_features": in_features}
    if image_shape is not None:
        sizes |= {"in_channels": in_channels or image_shape[0], "image_shape": list(image_shape)}
    return sizes


def build_part(part: Part, sizes: dict[str, Any], key: str) -> nn.Module:
    """`part(**the sizes it declares)`: one component of a composite network (`key`, e.g.
    model.trunk, names it in errors)."""
    name = getattr(getattr(part, "func", part), "__qualname__", type(part).__name__)
    allowed = f"a {key} that takes flat input (in_features), e.g. reglab.models.MLP"
    return part(**accepted_sizes(part, sizes, f"{key}={name}", allowed))


@torch.no_grad()
def probe(
    net: nn.Module,
    example_shape: Sequence[int],
    layout: torch.memory_format = torch.preserve_format,
) -> torch.Tensor:
    """net's output for 2 zero examples (in memory `layout`, e.g. channels-last), in eval
    mode and leaving no trace: neither the RNG state (dropout) nor BatchNorm's running
    statistics change, training modes are restored."""
    modes = [(m, m.training) for m in net.modules()]
    net.eval()
    try:
        with torch.random.fork_rng(devices=[]):
            return net(torch.zeros(2, *example_shape).to(memory_format=layout))
    finally:
        for m, mode in modes:
            m.training = mode


def output_width(net: nn.Module, example_shape: Sequence[int], key: str) -> int:
    """d of a part that maps (N, *example_shape) to features (N, d), measured: a part that
    declares `out_features` returns as many, one that does not says so by its output."""
    out = probe(net, example_shape)
    if not isinstance(out, torch.Tensor) or out.dim() != 2:
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        example = ", ".join(map(str, example_shape))
        raise ConfigError(
            f"{key} returned shape {shape} for input of shape (2, {example}), expected"
            " (2, features) (allowed: a part whose forward returns (N, features))"
        )
    return out.shape[1]
