"""Where a core-suite fit spends its time: reglab's fit and the bare-Lightning floor
(scripts/bench_floor.py) with the same loops timed phase by phase, in ms per epoch.

An epoch of the core suite is one Lightning batch (a chunk of 17 optimizer steps) and one
validation. The phases are Lightning's own loop methods and the module's hooks, wrapped
with a clock for the duration of one fit (about a microsecond per call, against phases of
tenths of a millisecond); both sides get the same wrappers, so their difference is what
reglab's module, callbacks and loggers add to Lightning's loops.
"""

import contextlib
import statistics
import time
from collections import defaultdict
from collections.abc import Callable, Iterator

import pytorch_lightning as pl

# (label, owner, method): owner picks the object from (trainer, module)
PHASES: list[tuple[str, Callable, str]] = [
    ("training chunk (17 steps)", lambda t, m: m, "training_step"),
    ("  of which reglab's chunk logging", lambda t, m: m, "_log_chunk"),
    ("Lightning's batch around it", lambda t, m: t.fit_loop.epoch_loop, "advance"),
    ("validation loop", lambda t, m: t.fit_loop.epoch_loop.val_loop, "run"),
    ("  validation_step", lambda t, m: m, "validation_step"),
    ("  on_validation_epoch_end", lambda t, m: m, "on_validation_epoch_end"),
    (
        "  on_validation_end (callbacks)",
        lambda t, m: t.fit_loop.epoch_loop.val_loop,
        "_on_evaluation_end",
    ),
    ("epoch end (callbacks)", lambda t, m: t.fit_loop, "on_advance_end"),
    ("fit", lambda t, m: t, "fit"),
]
# shown as differences: Lightning's batch minus the chunk inside it; fit minus its epochs
EPOCH = ("Lightning's batch around it", "validation loop", "epoch end (callbacks)")


def _clocked(method: Callable, label: str, totals: dict[str, float]) -> Callable:
    def timed(*args, **kwargs):
        start = time.perf_counter()
        try:
            return method(*args, **kwargs)
        finally:
            totals[label] += time.perf_counter() - start

    return timed


@contextlib.contextmanager
def clocked_fits(totals: dict[str, float]) -> Iterator[None]:
    """Every `Trainer.fit` within the block adds its phases' seconds to `totals`."""
    original = pl.Trainer.fit

    def fit(trainer: pl.Trainer, module: pl.LightningModule, *args, **kwargs):
        for label, owner, name in PHASES[:-1]:
            obj = owner(trainer, module)
            if hasattr(obj, name):
                setattr(obj, name, _clocked(getattr(obj, name), label, totals))
        return _clocked(original, "fit", totals)(trainer, module, *args, **kwargs)

    pl.Trainer.fit = fit
    try:
        yield
    finally:
        pl.Trainer.fit = original


def _per_epoch(totals: dict[str, float], epochs: int) -> dict[str, float]:
    ms = {label: totals.get(label, 0.0) * 1e3 / epochs for label, _, _ in PHASES}
    ms["Lightning's batch around it"] -= ms["training chunk (17 steps)"]
    loops = sum(ms[label] for label in EPOCH) + ms["training chunk (17 steps)"]
    ms["fit"] = (ms["fit"] - loops) * epochs  # set-up and teardown, once per fit
    return ms


def report(
    floor_fit: Callable[[], None], reglab_fit: Callable[[], None], reps: int, epochs: int
) -> None:
    """Run both fits `reps` times, interleaved, and print the phases' medians."""
    floor, reglab = [], []
    for _ in range(reps):
        for fits, side in ((floor, floor_fit), (reglab, reglab_fit)):
            totals: dict[str, float] = defaultdict(float)
            with clocked_fits(totals):
                side()
            fits.append(_per_epoch(totals, epochs))
    print(f"  where the time goes (ms per epoch, medians of {reps} instrumented fits each):")
    print(f"    {'phase':34s} {'floor':>7s} {'reglab':>7s} {'added':>7s}")
    for label, _, _ in PHASES:
        f = statistics.median(s[label] for s in floor)
        r = statistics.median(s[label] for s in reglab)
        name = "set-up, teardown, rest (ms per fit)" if label == "fit" else label
        print(f"    {name:34s} {f:7.2f} {r:7.2f} {r - f:+7.2f}")
