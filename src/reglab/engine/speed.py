"""How the network runs on the device: `trainer.channels_last` and `trainer.compile`.

Neither changes what a run computes, up to float rounding (and, compiled, the dropout masks
drawn: inductor has its own random stream); both change how fast it runs on a GPU:

- channels-last memory format, (N, H, W, C) in memory for an (N, C, H, W) tensor: the
  layout that tensor cores' convolutions read, so cuDNN need not transpose every
  activation before and after each convolution. It takes both sides: the network's 4-D
  parameters (here) and the image batches (the DataModule lays out its in-memory splits
  once, `data/placement.py`; every permutation and slice of them keeps the layout).
- `torch.compile`, in place (`nn.Module.compile`): the network's forward and backward
  become a few fused kernels instead of one kernel per operation. In place, the module
  keeps its class and its `state_dict` keys, so checkpoints, resuming and early
  stopping's θ* read and write what an eager run's do; the network is compiled on its
  first call, and again for a new mode (training, evaluation) or input shape. The test
  pass runs eagerly: it registers forward hooks on the hidden layers (their sparsity,
  regularization/representation.py) after the network was compiled, and the compiled
  code need not call them (under DDP it did not: no `test/representation_sparsity`),
  while one pass over the test set gains little from compilation.

Both are applied by a callback when a fit, validation or test starts, before Lightning
moves the module to its device (`Module.to` keeps the layout), so every Trainer that
`build_trainer` makes applies them, in every protocol phase and to every module.

On the CPU, oneDNN's kernel for the weight gradient of a strided 1×1 convolution in the
channels-last layout writes past its workspace when the convolution has fewer input
channels than the kernel's vector block (8 with AVX2, 16 with AVX-512): the process
aborts with a corrupted heap, or the gradients are wrong (oneDNN issue 6035; measured here
with torch 2.13 on AVX2, e.g. ResNet's shortcut at model.width=4). `check_layout` refuses
that case before anything trains; cuDNN has no such case.
"""

import copy
from collections.abc import Sequence

import pytorch_lightning as pl
import torch
from torch import nn

from reglab.config import ConfigError, first_line
from reglab.models.sizes import probe


def channels_last(net: nn.Module) -> nn.Module:
    """`net` with its 4-D parameters and buffers in channels-last format (others as they
    were; a network without convolutions is unchanged). Not `net.to(memory_format=…)`: it
    also converts 5-D tensors, and refuses channels-last for them, which a stacked
    ensemble's convolution weights (k, out, in, kh, kw) are (models/stacked.py)."""
    for tensor in [*net.parameters(), *net.buffers()]:
        if tensor.dim() == 4:  # in place: the same Parameter objects, for the optimizer
            tensor.data = tensor.data.to(memory_format=torch.channels_last)
    return net


def cpu_layout_hazard(net: nn.Module) -> nn.Conv2d | None:
    """The first convolution of `net` that oneDNN mishandles channels-last (see above)."""
    for m in net.modules():
        strided_1x1 = isinstance(m, nn.Conv2d) and m.kernel_size == (1, 1) and m.stride != (1, 1)
        if strided_1x1 and 1 < m.in_channels // m.groups < 16:
            return m
    return None


def check_layout(net: nn.Module, device: torch.device, example_shape: Sequence[int]) -> None:
    """A one-line ConfigError for `trainer.channels_last=true` where it would corrupt memory,
    or where the network fails on channels-last input (a copy of it is run on 2 zero
    examples): e.g. a user's `h.view(len(h), -1)` after a convolution, which needs
    contiguous memory and would end the first training step in a traceback."""
    conv = cpu_layout_hazard(net) if device.type == "cpu" else None
    if conv is not None:
        raise ConfigError(
            "trainer.channels_last=true on the CPU: oneDNN's kernel for a strided 1×1"
            f" convolution of {conv.in_channels // conv.groups} input channels (e.g. ResNet's"
            " shortcut) corrupts memory in that layout (oneDNN issue 6035) (allowed:"
            " trainer.channels_last=false on the CPU, or ≥ 16 such channels, e.g. model.width=16)"
        )
    if len(example_shape) != 3:  # not images: nothing is laid out
        return
    try:
        probe(channels_last(copy.deepcopy(net)), example_shape, torch.channels_last)
    except Exception as err:
        raise ConfigError(
            f"trainer.channels_last=true: model {type(net).__name__} fails on channels-last"
            f" input of shape {(2, *example_shape)}: {type(err).__name__}: {first_line(err)}"
            " (allowed: trainer.channels_last=false, or a forward that flattens with .reshape or"
            " .flatten, which any layout takes, instead of .view)"
        ) from err


def compile_in_place(net: nn.Module) -> nn.Module:
    """`net`, compiled by torch.compile on its next call; once (a later phase's Trainer
    finds it compiled: compiling again would discard what was compiled)."""
    if getattr(net, "_compiled_call_impl", None) is None:
        net.compile()
    return net


class NetworkSpeed(pl.Callback):
    """Applies `trainer.channels_last` and `trainer.compile` to the module's network."""

    def __init__(self, channels_last: bool = False, compile: bool = False) -> None:
        self.channels_last, self.compile = channels_last, compile

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        net = _network(pl_module)
        if self.channels_last:
            channels_last(net)
        if self.compile:
            compile_in_place(net)

    def on_test_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.compile:  # eager for the test pass (see the module docstring)
            net = _network(pl_module)
            self._compiled, net._compiled_call_impl = net._compiled_call_impl, None

    def on_test_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.compile:  # compiled again, for a later fit of the same module
            _network(pl_module)._compiled_call_impl = self._compiled


def _network(pl_module: pl.LightningModule) -> nn.Module:
    return getattr(pl_module, "net", pl_module)
