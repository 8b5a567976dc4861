"""BatchNorm over the whole global minibatch under DDP, on CPU processes as well as GPUs
(`trainer.sync_batchnorm`, on by default in trainer=ddp).

Batch normalization standardizes each channel by its mean and variance over the minibatch.
Under DDP each process holds only its part of the global minibatch, so a plain BatchNorm
normalizes by that part's statistics: the run is then not the single-process run it stands
for (its weights drift by ~1e-2 after an epoch of model=resnet). torch's SyncBatchNorm
all-reduces the statistics but refuses CPU tensors, and CPU processes (gloo) are how reglab
is tested and how a laptop runs trainer=ddp. `GlobalBatchNorm` computes the same thing on
any device with two differentiable all-reduces (sum, then the sum of squared deviations
from the global mean: the two-pass variance of one process, so the statistics agree with
a single process's to rounding). Its backward all-reduces the
gradients of the statistics, which makes each process's parameter gradient its part of the
full minibatch's gradient, as torch's SyncBatchNorm does.

`SyncBatchNorm` is the Lightning LayerSync plugin that swaps every BatchNorm*d for it at fit
time (sharing its parameters and buffers) and back at teardown, so what the run saves and
returns is the user's own network.
"""

from collections.abc import Callable
from typing import Any

import pytorch_lightning as pl
import torch
import torch.distributed as dist
from pytorch_lightning.plugins import LayerSync
from torch import Tensor, nn


class _AllReduceSum(torch.autograd.Function):
    """Sum over the processes; the gradient of a sum of every process's tensor is the sum of
    every process's output gradient (torch.distributed.nn's version is deprecated)."""

    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, tensor: Tensor) -> Tensor:
        tensor = tensor.clone()
        dist.all_reduce(tensor)
        return tensor

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: Tensor) -> Tensor:
        return _AllReduceSum.apply(grad)


class GlobalBatchNorm(nn.modules.batchnorm._BatchNorm):
    """BatchNorm*d whose training statistics are the global minibatch's (eval: its own)."""

    def __init__(self, like: nn.modules.batchnorm._BatchNorm) -> None:
        super().__init__(like.num_features, like.eps, like.momentum, like.affine,
                         like.track_running_stats)  # fmt: skip
        self.original = type(like)  # what `revert` turns it back into
        self.replicas = 1  # processes holding the same rows (a minibatch that did not split)
        _share(like, self)

    def _check_input_dim(self, x: Tensor) -> None:
        self.original._check_input_dim(self, x)

    def forward(self, x: Tensor) -> Tensor:
        syncing = self.training and dist.is_available() and dist.is_initialized()
        if not syncing or dist.get_world_size() == 1:
            return super().forward(x)
        self._check_input_dim(x)
        dtype, x = x.dtype, x.float()  # statistics in float32 whatever the precision
        dims = [0, *range(2, x.dim())]  # all but the channel dimension
        rows = torch.tensor([x.numel() / x.shape[1]], device=x.device)
        sums = _AllReduceSum.apply(torch.cat([x.sum(dims), rows]))
        n = sums[-1].detach()
        mean, shape = sums[:-1] / n, [1, -1] + [1] * (x.dim() - 2)
        centred = x - mean.view(shape)
        var = _AllReduceSum.apply((centred * centred).sum(dims)) / n
        self._track(mean.detach(), var.detach(), n / self.replicas)
        y = centred * torch.rsqrt(var + self.eps).view(shape)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y.to(dtype)

    @torch.no_grad()
    def _track(self, mean: Tensor, var: Tensor, n: Tensor) -> None:
        """Running statistics as torch updates them: the unbiased variance of the n distinct
        rows, momentum or a cumulative average (momentum=None). (Mean and biased variance
        are the same whether rows are counted once or once per process.)"""
        if not self.track_running_stats:
            return
        self.num_batches_tracked.add_(1)
        m = 1.0 / self.num_batches_tracked.item() if self.momentum is None else self.momentum
        self.running_mean.lerp_(mean, m)
        self.running_var.lerp_(var * n / (n - 1).clamp(min=1), m)


class SyncBatchNorm(LayerSync, pl.Callback):
    """Lightning's `sync_batchnorm` plugin with GlobalBatchNorm, which works on CPU too.
    (torch's SyncBatchNorm cannot be subclassed for this: DDP refuses it on CPU modules.)
    As a callback it tells the layers, step by step, whether every process holds the
    minibatch whole (the train loader's `replicated`), so its rows count once."""

    def __init__(self) -> None:
        self.layers: list[GlobalBatchNorm] = []

    def apply(self, model: nn.Module) -> nn.Module:
        self.layers = []
        return _swap(model, lambda m: isinstance(m, nn.modules.batchnorm._BatchNorm), self._make)

    def _make(self, bn: nn.modules.batchnorm._BatchNorm) -> GlobalBatchNorm:
        self.layers.append(GlobalBatchNorm(bn))
        return self.layers[-1]

    def on_train_batch_start(
        self, trainer: pl.Trainer, module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        replicated = getattr(trainer.train_dataloader, "replicated", lambda block: False)
        replicas = trainer.world_size if replicated(batch_idx) else 1
        for layer in self.layers:
            layer.replicas = replicas

    def revert(self, model: nn.Module) -> nn.Module:
        return _swap(model, lambda m: isinstance(m, GlobalBatchNorm), _restore)


def _restore(sync: GlobalBatchNorm) -> nn.Module:
    bn = sync.original(sync.num_features, sync.eps, sync.momentum, sync.affine,
                       sync.track_running_stats)  # fmt: skip
    _share(sync, bn)
    return bn


def _share(src: nn.Module, dst: nn.Module) -> None:
    """`dst` holds `src`'s parameters and buffers themselves (no copies) and its mode."""
    for name, p in src.named_parameters(recurse=False):
        setattr(dst, name, p)
    for name, b in src.named_buffers(recurse=False):
        setattr(dst, name, b)
    dst.train(src.training)


def _swap(module: nn.Module, match: Callable[[nn.Module], bool], make: Callable) -> nn.Module:
    """`module` with every submodule that matches replaced by make(submodule)."""
    if match(module):
        return make(module)
    for name, child in module.named_children():
        module.add_module(name, _swap(child, match, make))
    return module
