"""How much reglab's conveniences cost: reglab vs a plain PyTorch loop on the same work.

Both train the default digits MLP (64-256-256-10, Adam, batch 64) for 20 epochs with a
validation pass after every epoch, on 2 threads, over the same in-memory tensors;
repetitions are interleaved so drift in the machine hits both alike, and the ratio is the
median of the per-repetition ratios. Targets: ≤ 1.5× (required), ≤ 1.25× (goal).

    python scripts/benchmark.py [--reps 11] [--epochs 20]
"""

import argparse
import statistics
import tempfile
import time

import torch
import torch.nn.functional as F

import reglab
from reglab.models import MLP


def plain_loop(dm, epochs: int, seed: int) -> tuple[float, float]:
    """The loop a person writes by hand: shuffle, step, validate; returns (seconds, val acc)."""
    torch.manual_seed(seed)
    x, y = dm.splits["train"]
    xv, yv = dm.splits["val"]
    net = MLP(x.shape[1], 10, (256, 256))
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    start = time.perf_counter()
    for _ in range(epochs):
        net.train()
        perm = torch.randperm(len(x))
        for idx in perm.split(64):
            loss = F.cross_entropy(net(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        net.eval()
        with torch.no_grad():
            acc = (net(xv).argmax(1) == yv).float().mean().item()
    return time.perf_counter() - start, acc


def reglab_run(epochs: int, seed: int, extra: list[str]) -> tuple[float, float, float]:
    """reglab with its default logging; returns (fit seconds, end-to-end seconds, test acc)."""
    with tempfile.TemporaryDirectory() as out:
        overrides = [f"trainer.max_epochs={epochs}", f"seed={seed}", "data.batch_size=64"]
        overrides += ["callbacks.early_stopping.patience=1000", *extra]
        cfg = reglab.compose(overrides, output_dir=out)
        start = time.perf_counter()
        metrics = reglab.train(cfg)
        total = time.perf_counter() - start
        run = reglab.records.read_json(f"{out}/run.json")
    return run["fit_seconds"], total, metrics.get("test/acc", float("nan"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=11)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    dm = reglab.compose(["seed=0"], output_dir="/tmp").data
    dm = reglab.instantiate(dm).prepare()

    reglab_run(1, 0, [])  # warm-up: imports, first-call allocations
    plain_loop(dm, 1, 0)
    plain, fit, total = [], [], []
    for rep in range(args.reps):
        plain.append(plain_loop(dm, args.epochs, rep)[0])
        f, t, _ = reglab_run(args.epochs, rep, [])
        fit.append(f)
        total.append(t)
    # the machine's speed drifts between repetitions: compare each pair, then take the median
    fit_ratio = statistics.median(f / p for f, p in zip(fit, plain, strict=True))
    total_ratio = statistics.median(t / p for t, p in zip(total, plain, strict=True))
    p, f, t = (statistics.median(v) for v in (plain, fit, total))
    print(f"digits MLP, {args.epochs} epochs, batch 64, {args.threads} threads, {args.reps} reps")
    print(f"  plain PyTorch loop        {p:7.3f} s  (median)")
    print(
        f"  reglab trainer.fit        {f:7.3f} s  ratio {fit_ratio:.2f}×  (need ≤1.5×, goal ≤1.25×)"
    )
    print(
        f"  reglab.train end to end   {t:7.3f} s  ratio {total_ratio:.2f}×  (+ setup, test, files)"
    )


if __name__ == "__main__":
    main()
