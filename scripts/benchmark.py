"""How much reglab's conveniences cost, measured against plain PyTorch on the same work.

    python scripts/benchmark.py [--suite core|cnn|bagging|launchers|augmentation|mc|gpu|all]
                                [--reps N]

cnn      `model=cnn` vs a plain loop of the same network and Adam kernel; vectorized
         bagging of 8 CNNs vs 8 sequential fits, with peak memory (scripts/bench_cnn.py)
core     the default digits MLP (64-256-256-10, Adam, batch 64, 20 epochs, a validation
         pass per epoch, 2 threads) through reglab vs a hand-written loop over the same
         in-memory tensors. Target ≤ 1.5× (required), ≤ 1.25× (goal). Also a bare
         LightningModule doing the plain loop's work: what Lightning's loops alone cost;
         then both timed phase by phase (scripts/bench_phases.py): where the rest goes.
bagging  10 bootstrap members, one `ensemble=bagging` run (one pass, stacked parameters) vs
         ten sequential reglab runs, one per resample (`data.bootstrap=i`, each a whole
         reglab.train): target ≤ 0.35×. Also training alone: the vectorized fit vs the k fits
         of `ensemble.vectorized=false`. Peak memory of a training step (parameters,
         gradients, Adam's moments, saved activations) of the ensemble vs twice a single
         model's plus k copies of parameters and optimizer state.
launchers  a 4-job sweep with Hydra's joblib launcher and 2 workers vs the basic launcher,
         each as one `python train.py -m` process, for jobs that use one core (a 32-unit
         MLP) and for the default MLP, which can use both. Target ≥ 1.6× speed-up on
         2 cores; each line also prints the bound that the jobs' own thread scaling sets.
augmentation  the default digits run with `augmentation=affine` vs `none`: the cost of
         augmenting every training batch (per epoch, relative).
mc       Monte Carlo dropout, T = 100 masks: one batched pass vs a Python loop of T passes,
         on a batch of 64 and on the whole test set. Batched must be faster in both.
gpu      `model=cnn` and `model=resnet` on 3×32×32 images resident on a CUDA device, bf16
         autocast, channels-last, `trainer.compile` false and true, vs a plain loop with
         the same settings (scripts/bench_gpu.py): target ≤ 1.05×. Without a CUDA device it
         says so (`python scripts/bench_gpu.py --device cpu …` smoke-tests it on the CPU).

Repetitions are interleaved so drift in the machine hits both sides alike; ratios are the
median of the per-repetition ratios.
"""

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import bench_cnn  # scripts/: the cnn suite
import bench_floor  # scripts/: Lightning's loops alone, for the core suite
import bench_gpu  # scripts/: the gpu suite
import bench_phases  # scripts/: where the core suite's time goes
import torch
import torch.nn.functional as F

import reglab
from reglab.models import CNN, MLP
from reglab.regularization import MonteCarlo

QUIET = ["callbacks.progress_bar=null"]


def plain_loop(
    dm, epochs: int, seed: int, fused: bool = False, net: str = "mlp"
) -> tuple[float, float]:
    """The loop a person writes by hand: shuffle, step, validate; returns (seconds, val acc).

    `fused=False` is torch.optim.Adam as people write it; `fused=True` is the single-kernel
    Adam that reglab's optimizer config selects, to isolate the framework's own cost.
    `net`: reglab's default MLP (it flattens (N, 1, 8, 8) digits itself) or default CNN."""
    torch.manual_seed(seed)
    x, y = dm.splits["train"]
    xv, yv = dm.splits["val"]
    if net == "cnn":
        net = CNN(dm.image_shape[0], 10, dm.image_shape)
    else:
        net = MLP(dm.n_features, 10, (256, 256))
    opt = torch.optim.Adam(net.parameters(), lr=1e-3, fused=fused)
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
        overrides += ["callbacks.early_stopping.patience=1000", *QUIET, *extra]
        cfg = reglab.compose(overrides, output_dir=out)
        start = time.perf_counter()
        metrics = reglab.train(cfg)
        total = time.perf_counter() - start
        run = reglab.records.read_json(f"{out}/run.json")
    return run["fit_seconds"], total, metrics.get("test/acc", float("nan"))


def ratio(numerators: list[float], denominators: list[float]) -> float:
    return statistics.median(a / b for a, b in zip(numerators, denominators, strict=True))


def core(reps: int, epochs: int) -> None:
    dm = reglab.instantiate(reglab.compose(["seed=0"], output_dir="unused").data).prepare()
    reglab_run(1, 0, [])  # warm-up: imports, first-call allocations
    plain_loop(dm, 1, 0)
    bench_floor.bare_lightning(dm, 1, 0)
    plain, fused, floor, fit, total = [], [], [], [], []
    for rep in range(reps):
        plain.append(plain_loop(dm, epochs, rep)[0])
        fused.append(plain_loop(dm, epochs, rep, fused=True)[0])
        floor.append(bench_floor.bare_lightning(dm, epochs, rep))
        f, t, _ = reglab_run(epochs, rep, [])
        fit.append(f)
        total.append(t)
    p, pf, f, t = (statistics.median(v) for v in (plain, fused, fit, total))
    print(f"core: digits MLP, {epochs} epochs, batch 64, {reps} reps (ratios: medians of pairs)")
    print(f"  plain loop, Adam          {p:7.3f} s")
    print(f"  plain loop, fused Adam    {pf:7.3f} s  (reglab's default optimizer kernel)")
    print(
        f"  bare Lightning, same work {statistics.median(floor):7.3f} s  {ratio(floor, fused):.2f}×"
        " the fused loop: Lightning's loops alone (scripts/bench_floor.py)"
    )
    print(
        f"  reglab trainer.fit        {f:7.3f} s  {ratio(fit, plain):.2f}× the plain loop,"
        f" {ratio(fit, fused):.2f}× with the same Adam kernel (≤1.5×; goal ≤1.25×)"
    )
    print(
        f"  reglab.train end to end   {t:7.3f} s  {ratio(total, plain):.2f}× (+ setup, test, files)"
    )
    bench_phases.report(
        lambda: bench_floor.bare_lightning(dm, epochs, 0),
        lambda: reglab_run(epochs, 0, []),
        min(reps, 5),
        epochs,
    )


def process_peak_mb(overrides: list[str], epochs: int) -> float:
    """Peak resident memory (MB) of a fresh process that trains `overrides` to the end."""
    code = (
        "import resource, tempfile, reglab\n"
        f"cfg = reglab.compose({[*overrides, f'trainer.max_epochs={epochs}', *QUIET]!r},"
        " output_dir=tempfile.mkdtemp())\n"
        "reglab.train(cfg)\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def step_memory(overrides: list[str]) -> dict[str, float]:
    """MB one training step holds at its peak: parameters, gradients and Adam's two moments
    (4 × θ), plus the most that forward and backward have allocated at once (the saved
    activations and the backward's transient gradients, from the profiler's record of every
    allocation and free; `activations`: the saved ones alone, counted as autograd saves
    them). Measured on CPU; on a GPU the kernels' layouts differ a little."""
    from torch.profiler import ProfilerActivity, profile

    from reglab.engine.run import build

    run = build(reglab.compose([*overrides, "logger=none", *QUIET], output_dir=tempfile.mkdtemp()))
    module, loader = run.module, run.dm.train_dataloader()
    x, y = next(iter(loader))
    dim = module.batch_dim
    x, y = x.narrow(dim, 0, run.dm.batch_size), y.narrow(dim, 0, run.dm.batch_size)
    saved = 0

    def pack(t: torch.Tensor) -> torch.Tensor:
        nonlocal saved
        saved += t.numel() * t.element_size()
        return t

    def step() -> None:
        loss = module.step_loss(module.net(x), y)
        loss.backward()

    step()  # gradients exist from here on, as in training (counted in 4 × θ)
    hooks = torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t)
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof, hooks:
        step()
    events = [e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"]
    held = peak = 0
    for e in sorted(events, key=lambda e: e.start_ns()):
        held += e.nbytes()  # negative for a free
        peak = max(peak, held)
    params = sum(p.numel() * p.element_size() for p in module.parameters())
    mb = 2**20
    return {"params": params / mb, "activations": saved / mb, "peak": (4 * params + peak) / mb}


def bagging(reps: int, epochs: int, members: int = 10) -> None:
    common = [f"ensemble.members={members}", "ensemble=bagging"]
    vec, seq, vec_total, runs_total = [], [], [], []
    reglab_run(1, 0, common)
    for rep in range(reps):
        fit, total, _ = reglab_run(epochs, rep, common)
        vec.append(fit)
        vec_total.append(total)
        seq.append(reglab_run(epochs, rep, [*common, "ensemble.vectorized=false"])[0])
        # what a user would otherwise do: k runs, one per resample, each a whole reglab.train
        runs = [reglab_run(epochs, rep, [f"data.bootstrap={i}"])[1] for i in range(members)]
        runs_total.append(sum(runs))
    print(f"bagging: {members} digits MLPs, {epochs} epochs, {reps} reps")
    print(f"  training only: {members} members one after another  {statistics.median(seq):7.3f} s")
    v, r = statistics.median(vec), ratio(vec, seq)
    print(f"  training only: vectorized, one pass  {v:7.3f} s  ratio {r:.2f}×  (≤0.35×)")
    t, rt = statistics.median(vec_total), ratio(vec_total, runs_total)
    print(
        f"  whole runs: {members} runs (data.bootstrap=i)  {statistics.median(runs_total):7.3f} s"
    )
    print(f"  whole runs: one ensemble=bagging run  {t:7.3f} s  ratio {rt:.2f}×  (≤0.35×)")
    single, ensemble = step_memory([]), step_memory(common)
    state = members * 3 * single["params"]  # k × (θ, Adam's m and v)
    rss_single, rss_ensemble = process_peak_mb([], epochs), process_peak_mb(common, epochs)
    verdict = "ok" if rss_ensemble <= 2 * rss_single + state else "OVER"
    print(
        f"  peak process memory: single run {rss_single:.0f} MB, ensemble {rss_ensemble:.0f} MB;"
        f" bound 2 × single + k × (θ, m, v) = {2 * rss_single + state:.0f} MB: {verdict}"
    )
    print(
        f"  one training step holds: single {single['peak']:.2f} MB, ensemble"
        f" {ensemble['peak']:.2f} MB (θ, ∇, m, v and {ensemble['activations']:.2f} MB of saved"
        " activations: k members, k minibatches)"
    )


def sweep_seconds(*args: str) -> tuple[float, float]:
    """Wall time of one `python train.py -m …` process (imports and launcher start included),
    and the median of its jobs' training times (`fit_seconds` of each job's run.json)."""
    with tempfile.TemporaryDirectory() as out:
        cmd = [sys.executable, "train.py", "-m", *args, f"hydra.sweep.dir={out}", *QUIET]
        start = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        wall = time.perf_counter() - start
        fits = [json.loads(p.read_text())["fit_seconds"] for p in Path(out).glob("*/run.json")]
        return wall, statistics.median(fits)


# A 32-unit MLP gains nothing from a second thread, so its sweep shows what the launcher
# itself gains; the default 256-256 MLP can train faster on both cores (by how much varies
# with the machine), which bounds what two one-thread workers can add.
LAUNCHER_WORKLOADS = (
    ("one-core jobs, model.hidden_sizes=[32]", ("model.hidden_sizes=[32]",)),
    ("default MLP (256-256)", ()),
)


def launchers(reps: int, epochs: int, workloads=LAUNCHER_WORKLOADS) -> None:
    """Each `python train.py -m` process and each joblib worker imports torch and Lightning
    once (about 5 s here), and each sweep writes its report: short jobs bound the speed-up.
    So does what a job gains from a second thread: with T2 and T1 its training time on 2
    threads (basic launcher) and on 1 (a joblib worker, beside the other), two workers can
    finish the jobs at most 2·T2/T1 as fast, whatever the launcher does."""
    print(f"launchers: 4-job sweeps, joblib with 2 workers vs the basic launcher, {reps} reps")
    for name, extra in workloads:
        jobs = [
            "seed=0,1,2,3",
            f"trainer.max_epochs={epochs}",
            f"callbacks.early_stopping.patience={epochs}",  # every job trains all its epochs
            *extra,
        ]
        basic, joblib = [], []
        for _ in range(reps):
            basic.append(sweep_seconds(*jobs))
            joblib.append(sweep_seconds(*jobs, "hydra/launcher=joblib", "hydra.launcher.n_jobs=2"))
        b, j = (statistics.median(w for w, _ in runs) for runs in (basic, joblib))
        t2, t1 = (statistics.median(f for _, f in runs) for runs in (basic, joblib))
        speedup = ratio([w for w, _ in basic], [w for w, _ in joblib])
        print(f"  {name}, {epochs} epochs a job")
        print(f"    basic launcher {b:5.1f} s, joblib {j:5.1f} s: speed-up {speedup:.2f}× (≥1.6×)")
        print(
            f"    a job trains in {t2:.1f} s on 2 threads, {t1:.1f} s on 1 beside another:"
            f" two workers gain at most {2 * t2 / t1:.2f}×"
        )


def augmentation(reps: int, epochs: int) -> None:
    none, affine = [], []
    reglab_run(1, 0, ["augmentation=affine"])
    for rep in range(reps):
        none.append(reglab_run(epochs, rep, [])[0])
        affine.append(reglab_run(epochs, rep, ["augmentation=affine"])[0])
    n, a = statistics.median(none), statistics.median(affine)
    print(f"augmentation: digits MLP, {epochs} epochs, {reps} reps")
    print(f"  augmentation=none         {n / epochs * 1e3:7.1f} ms per epoch")
    r = ratio(affine, none)
    print(f"  augmentation=affine       {a / epochs * 1e3:7.1f} ms per epoch  {r:.2f}× none")


def mc(reps: int, samples: int = 100) -> None:
    dm = reglab.instantiate(reglab.compose(["seed=0"], output_dir="unused").data).prepare()
    net = MLP(dm.n_features, 10, (256, 256), dropout={"input": 0.2, "hidden": 0.5}).eval()
    sampler = MonteCarlo(samples)
    x_test = dm.splits["test"][0]
    print(f"mc: T = {samples} dropout masks, digits MLP, {reps} reps")

    def looped(x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            net.train()
            outputs = torch.stack([net(x) for _ in range(samples)])
            net.eval()
        return outputs

    for name, x in (("batch of 64", x_test[:64]), (f"test set ({len(x_test)})", x_test)):
        batched, loop = [], []
        sampler.sample(net, x), looped(x)  # warm-up: first-call allocations
        for _ in range(reps):
            start = time.perf_counter()
            sampler.sample(net, x)
            batched.append(time.perf_counter() - start)
            start = time.perf_counter()
            looped(x)
            loop.append(time.perf_counter() - start)
        b, lo = statistics.median(batched), statistics.median(loop)
        r = ratio(batched, loop)
        print(f"  {name:18s} batched {b * 1e3:7.2f} ms  loop {lo * 1e3:7.2f} ms  ratio {r:.2f}×")


def gpu(reps: int) -> None:
    """The gpu suite at its default sizes, where torch sees a CUDA device."""
    if not torch.cuda.is_available():
        print(
            "gpu: not measured: no CUDA device here (on the CPU: scripts/bench_gpu.py --device cpu)"
        )
        return
    bench_gpu.run(bench_gpu.parser().parse_args(["--reps", str(reps)]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--suite",
        choices=["core", "cnn", "bagging", "launchers", "augmentation", "mc", "gpu", "all"],
        default="all",
    )
    parser.add_argument(
        "--reps",
        type=int,
        default=None,
        help="default: core 11, cnn/bagging/launchers/gpu 3, augmentation 5, mc 9",
    )
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--launcher-overrides",
        nargs="*",
        default=None,
        help="time sweeps of this job instead of the two standard ones",
    )
    parser.add_argument("--launcher-epochs", type=int, default=1200, help="epochs per sweep job")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.suite in ("core", "all"):
        core(args.reps or 11, args.epochs)
    if args.suite in ("cnn", "all"):
        bench_cnn.run(sys.modules[__name__], args.reps or 3, args.epochs)
    if args.suite in ("bagging", "all"):
        bagging(args.reps or 3, args.epochs)
    if args.suite in ("launchers", "all"):
        workloads = LAUNCHER_WORKLOADS
        if args.launcher_overrides is not None:
            extra = tuple(args.launcher_overrides)
            workloads = [(f"jobs with {' '.join(extra)}", extra)]
        launchers(args.reps or 3, args.launcher_epochs, workloads)
    if args.suite in ("augmentation", "all"):
        augmentation(args.reps or 5, args.epochs)
    if args.suite in ("mc", "all"):
        mc(args.reps or 9)
    if args.suite in ("gpu", "all"):
        gpu(args.reps or 3)


if __name__ == "__main__":
    main()
