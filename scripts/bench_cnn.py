"""`benchmark.py --suite cnn`: the digits CNN through reglab, and bagging 8 of them.

reglab vs plain   `model=cnn` (32-64 channels, a 128-unit classifier, fused Adam, batch
                  64, a validation pass per epoch) through `trainer.fit` vs a hand-written
                  loop of the same network and optimizer kernel over the same tensors
bagging           8 CNNs, one vectorized `ensemble=bagging` fit (models.StackedCNN:
                  grouped convolutions)
                  vs the 8 sequential fits of `ensemble.vectorized=false`; must be faster
memory            peak memory of a single fit, the vectorized and the sequential ensemble,
                  each in a fresh process (RSS above what the process held before
                  training; on a GPU, CUDA's max allocated), against 8 × a single fit's
                  and against the bound (see `memory`)
"""

import json
import os
import statistics
import subprocess
import sys

import torch

import reglab

CNN = ["model=cnn"]
# the fit alone (a protocol's run), in a fresh process, RSS polled every millisecond: the
# process's lifetime peak (ru_maxrss) is set by imports and plotting, not by training
MEASURE = """
import json, resource, tempfile, threading, time, torch, reglab
from reglab.engine.protocols import EarlyStopping71
from reglab.engine.run import build
run = build(reglab.compose({overrides!r}, output_dir=tempfile.mkdtemp()))
def rss_mb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20
before, peak, done = rss_mb(), [0.0], threading.Event()
def poll():
    while not done.is_set():
        peak[0] = max(peak[0], rss_mb())
        time.sleep(0.001)
threading.Thread(target=poll, daemon=True).start()
if torch.cuda.is_available():
    torch.cuda.reset_peak_memory_stats()
run.ensemble.protocol(EarlyStopping71()).run(run)
done.set()
cuda = torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else None
print(json.dumps({{"rss": max(peak[0], rss_mb()) - before, "cuda": cuda}}))
"""


# glibc raises its mmap threshold each time it frees a large block (up to 32 MB), so later
# blocks of that size come from the heap and stay resident after they are freed: RSS then
# counts memory that training no longer holds. A fixed threshold returns every large block
# to the system when it is freed, so RSS follows what is allocated (as CUDA's count does).
EXACT_MALLOC = {"MALLOC_MMAP_THRESHOLD_": "131072"}


def fit_memory_mb(overrides: list[str], env: dict[str, str] | None = None) -> dict:
    """Peak memory (MB) a fresh process adds while it trains `overrides` to the end."""
    code = MEASURE.format(overrides=[*overrides, "callbacks.progress_bar=null", "logger=none"])
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, **(env or {})},
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def data_mb(overrides: list[str]) -> float:
    """One copy of the data set's splits, as reglab holds them in memory."""
    dm = reglab.instantiate(reglab.compose(overrides, output_dir="unused").data).prepare()
    tensors = [t for split in dm.splits.values() for t in split]
    return sum(t.numel() * t.element_size() for t in tensors) / 2**20


def speed(bench, reps: int, epochs: int) -> None:
    """reglab's `model=cnn` against the plain loop of the same network and Adam kernel."""
    dm = reglab.instantiate(reglab.compose(["seed=0"], output_dir="unused").data).prepare()
    bench.reglab_run(1, 0, CNN), bench.plain_loop(dm, 1, 0, fused=True, net="cnn")  # warm-up
    plain, fit = [], []
    for rep in range(reps):
        plain.append(bench.plain_loop(dm, epochs, rep, fused=True, net="cnn")[0])
        fit.append(bench.reglab_run(epochs, rep, CNN)[0])
    print(f"cnn: digits CNN (32-64 channels), {epochs} epochs, batch 64, {reps} reps")
    print(f"  plain loop, fused Adam    {statistics.median(plain):7.3f} s")
    r = bench.ratio(fit, plain)
    print(f"  reglab trainer.fit        {statistics.median(fit):7.3f} s  {r:.2f}× the plain loop")


def bagging(bench, reps: int, epochs: int, members: int = 8) -> list[str]:
    """Vectorized vs sequential fits of `members` CNNs; returns the ensemble's overrides."""
    common = [*CNN, "ensemble=bagging", f"ensemble.members={members}"]
    bench.reglab_run(1, 0, common)
    vec, seq = [], []
    for rep in range(reps):
        vec.append(bench.reglab_run(epochs, rep, common)[0])
        seq.append(bench.reglab_run(epochs, rep, [*common, "ensemble.vectorized=false"])[0])
    r = bench.ratio(vec, seq)
    verdict = "ok" if r < 1 else "NOT FASTER"
    print(f"  bagging {members} CNNs, sequential fits   {statistics.median(seq):7.3f} s")
    print(
        f"  bagging {members} CNNs, vectorized fit    {statistics.median(vec):7.3f} s"
        f"  {r:.2f}×: {verdict}"
    )
    return common


def memory(bench, common: list[str], epochs: int, members: int = 8) -> None:
    """Peak memory of one fit, the vectorized ensemble and the sequential one, against

        bound = (single fit − its step) + k × a member's step + one copy of the data

    A fit holds what any fit holds (Lightning, loaders, kernels' caches, the data: the
    single fit's peak less its own training step's) and one training step's worth: θ, ∇,
    Adam's m and v, and what forward and backward allocate at once (`step_memory`). The
    issue's bound counts the members' own steps (k × one CNN's); the bound with the
    ensemble's measured step is printed beside it (under models.Ensemble's vmap it also
    held copies of each convolution's input in the grouped layout; StackedCNN keeps that
    layout throughout). Evaluation passes hold less
    than a step (BaggingModule evaluates a training batch at a time); the copy of the data
    is the most the bootstrap adds (k members' chunks are at most an epoch's rows).
    On CPU RSS is measured with a fixed mmap threshold (`EXACT_MALLOC`), and with the
    default allocator, whose RSS also counts freed heap blocks glibc keeps. The peak comes
    in the first epoch (its first validation included), so 3 epochs measure it.
    """
    run = [f"trainer.max_epochs={min(epochs, 3)}"]
    single_step, step = bench.step_memory(CNN), bench.step_memory(common)
    data = data_mb(CNN)
    for name, env in (("", EXACT_MALLOC), (" (default malloc)", None)):
        fits = [[*CNN, *run], [*common, *run], [*common, *run, "ensemble.vectorized=false"]]
        single, vec, seq = (fit_memory_mb(o, env) for o in fits)
        kind = "cuda" if single["cuda"] is not None else "rss"
        what = "CUDA max allocated" if kind == "cuda" else f"RSS above start{name}"
        print(f"  peak memory ({what}):")
        eight = members * single[kind]
        print(f"    single fit {single[kind]:.1f} MB; {members} × single = {eight:.1f} MB")
        print(f"    vectorized {vec[kind]:.1f} MB, sequential {seq[kind]:.1f} MB")
        base = single[kind] - single_step["peak"] + data
        for label, held in (
            (
                f"{members} × a member's step ({single_step['peak']:.1f} MB)",
                members * single_step["peak"],
            ),
            (f"the vectorized step ({step['activations']:.1f} MB saved activations)", step["peak"]),
        ):
            verdict = "ok" if vec[kind] <= base + held else "OVER"
            print(
                f"    bound: single − its step + {label} + the data ({data:.2f} MB)"
                f" = {base + held:.1f} MB: {verdict}"
            )
        if kind == "cuda":
            break  # the allocator's setting changes nothing on the GPU


def run(bench, reps: int, epochs: int) -> None:
    torch.manual_seed(0)
    speed(bench, reps, epochs)
    common = bagging(bench, reps, epochs)
    memory(bench, common, epochs)
