"""GlobalBatchNorm (trainer.sync_batchnorm under DDP): two CPU processes holding halves of a
minibatch normalize, back-propagate and track running statistics as one BatchNorm does on
the whole minibatch; a minibatch every process holds whole counts its rows once.

Run in 2 gloo processes (torch.multiprocessing) against torch's own BatchNorm in the test.
"""

import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from lightning_fabric.plugins.environments.lightning import find_free_network_port
from torch import nn

from reglab.engine.batchnorm import GlobalBatchNorm, SyncBatchNorm

CASES = {  # layer, input shape, whether each process holds the whole minibatch
    "2d": (lambda: nn.BatchNorm2d(3), (8, 3, 4, 4), False),
    "1d_cumulative": (lambda: nn.BatchNorm1d(5, momentum=None), (6, 5), False),
    "2d_whole": (lambda: nn.BatchNorm2d(3), (7, 3, 2, 2), True),
}


def reference(case: str, x: torch.Tensor, steps: int = 3):
    """One process, the whole minibatch: output, input and weight gradients, buffers."""
    make, _, _ = CASES[case]
    bn = make()
    torch.manual_seed(1)
    nn.init.normal_(bn.weight), nn.init.normal_(bn.bias)
    for _ in range(steps):
        xi = x.clone().requires_grad_()
        out = bn(xi)
        (out * torch.arange(out.numel()).view_as(out).sin()).sum().backward()
    return out.detach(), xi.grad, bn.weight.grad, bn.running_mean, bn.running_var


def inputs(case: str) -> torch.Tensor:
    _, shape, _ = CASES[case]
    return torch.randn(*shape, generator=torch.Generator().manual_seed(0)) * 3 + 1


def _rank(rank: int, port: int, result: dict) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    for case in CASES:
        result[case, rank] = _train(rank, case, inputs(case))
    dist.destroy_process_group()


def _train(rank: int, case: str, x: torch.Tensor) -> tuple:
    """Three steps of this process's part, then the layer reverted to the user's."""
    make, _, whole = CASES[case]
    bn = make()
    torch.manual_seed(1)
    nn.init.normal_(bn.weight), nn.init.normal_(bn.bias)
    plugin = SyncBatchNorm()
    net = plugin.apply(nn.Sequential(bn))
    part = x if whole else x.chunk(2)[rank]
    for _ in range(3):
        for layer in plugin.layers:
            layer.replicas = 2 if whole else 1
        xi = part.clone().requires_grad_()
        out = net(xi)
        full = torch.arange(x.numel()).view_as(x).sin()
        weights = full if whole else full.chunk(2)[rank]
        (out * weights).sum().backward()
        for p in net.parameters():  # what DDP does: the mean of the processes' gradients
            dist.all_reduce(p.grad)
            p.grad /= 2
    reverted = plugin.revert(net)[0]
    return (out.detach(), xi.grad, reverted.weight.grad.clone(),
            reverted.running_mean, reverted.running_var, type(reverted))  # fmt: skip


@pytest.fixture(scope="module")
def two_processes() -> dict:
    """Every case's results in both processes, from one spawn."""
    with mp.Manager() as manager:
        result = manager.dict()
        mp.spawn(_rank, args=(find_free_network_port(), result), nprocs=2)
        return dict(result)


@pytest.mark.parametrize("case", list(CASES))
def test_two_processes_normalize_as_one_batchnorm_on_the_whole_minibatch(case, two_processes):
    whole = CASES[case][2]
    out, gx, gw, mean, var = reference(case, inputs(case))
    halves = [two_processes[case, r] for r in (0, 1)]
    got_out = halves[0][0] if whole else torch.cat([h[0] for h in halves])
    # the gradient of the sum of both processes' losses (each process's own rows)
    got_gx = halves[0][1] if whole else torch.cat([h[1] for h in halves])
    # DDP averages; the halves' losses add up to the whole's (whole: each is the whole's)
    scale = 1 if whole else 2
    torch.testing.assert_close(got_out, out, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(got_gx, gx, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(halves[0][2] * scale, gw, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(halves[0][3], mean, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(halves[0][4], var, rtol=1e-5, atol=1e-6)
    assert halves[0][5] is type(CASES[case][0]())  # the user's layer again after fit
    assert isinstance(SyncBatchNorm().apply(nn.Sequential(nn.BatchNorm2d(2)))[0], GlobalBatchNorm)
