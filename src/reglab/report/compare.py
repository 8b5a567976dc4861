"""Differences from the control that are not noise: paired t-tests with Holm's correction.

Each configuration is compared with the control over the seeds both ran: with the same
seed, both saw the same data split and the same shuffling, so the per-seed difference
d_s = x_s − c_s removes what the seed does to both. For n ≥ 2 shared seeds: the mean
difference d̄, its 95 % confidence interval d̄ ± t_{0.975, n−1}·s_d/√n, and the two-sided
p-value of the paired t-test (scipy.stats.ttest_rel). Holm's step-down correction keeps the
chance of any false "better" or "worse" among the m comparisons at 5 %.
"""

import math
import statistics
from dataclasses import dataclass, field

from reglab.report.configurations import as_number
from reglab.report.jobs import ReportError
from reglab.report.sweep import Row, Sweep

LEVEL = 0.05  # family-wise error rate of the comparisons
CONFIDENCE = 0.95
REGULARIZER = "regularizer"
CONTROL_OPTION = "none"  # the default control: no penalty


@dataclass
class Comparison:
    """A configuration against the control over the seeds they share."""

    n: int  # shared seeds
    diff: float | None = None  # mean of configuration − control
    ci_low: float | None = None
    ci_high: float | None = None
    p_value: float | None = None  # None: fewer than 2 shared seeds, or no spread at all
    p_holm: float | None = None

    def verdict(self, higher_is_better: bool) -> str:
        """`better`, `worse` (Holm-corrected p < 5 %), or `no difference`."""
        if self.p_holm is None or self.p_holm >= LEVEL or not self.diff:
            return "no difference"
        return "better" if (self.diff > 0) == higher_is_better else "worse"


def paired(x: list[float], control: list[float]) -> Comparison:
    """Mean difference, 95 % CI (paired t) and p-value (ttest_rel) of paired samples."""
    from scipy import stats  # here: the sweep's launching process need not load scipy

    n = len(x)
    diffs = [a - b for a, b in zip(x, control, strict=True)]
    if n < 2:
        return Comparison(n, diffs[0] if diffs else None)
    mean, sd = statistics.mean(diffs), statistics.stdev(diffs)
    half = stats.t.ppf(0.5 + CONFIDENCE / 2, n - 1) * sd / math.sqrt(n)
    p = float(stats.ttest_rel(x, control).pvalue) if sd > 0 else None  # t undefined at sd = 0
    return Comparison(n, mean, mean - half, mean + half, p)


def holm(p_values: list[float]) -> list[float]:
    """Holm's adjusted p-values, in the input's order: the i-th smallest becomes
    max over j ≤ i of min(1, (m − j + 1)·p_(j)), so the adjusted values keep the raw ones'
    order and are never below them."""
    m = len(p_values)
    adjusted = [0.0] * m
    running = 0.0
    for rank, i in enumerate(sorted(range(m), key=lambda i: p_values[i])):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


def _pair_rows(
    rows: list[Row], control: Row, key: str, only_having: bool = False
) -> dict[int, Comparison]:
    """id(row) → its paired comparison with `control` on `key` (`only_having`: for the rows
    whose runs report `key`; the others are left out rather than shown as unpaired)."""
    base = control.per_seed(key)
    out = {}
    for row in rows:
        if row is not control and row.finished:
            mine = row.per_seed(key)
            seeds = [s for s in mine if s in base]
            if mine or not only_having:
                out[id(row)] = paired([mine[s] for s in seeds], [base[s] for s in seeds])
    return out


def _correct(comparisons: list[Comparison]) -> None:
    """Holm's p over the comparisons that have a p-value, set in place: one family."""
    tested = [c for c in comparisons if c.p_value is not None]
    for comparison, p in zip(tested, holm([c.p_value for c in tested]), strict=True):
        comparison.p_holm = p


def compare(rows: list[Row], control: Row, key: str) -> dict[int, Comparison]:
    """id(row) → its comparison with `control` on metric `key`, Holm-corrected together."""
    out = _pair_rows(rows, control, key)
    _correct(list(out.values()))
    return out


def task_comparisons(sweep: Sweep, control: Row) -> dict[str, dict[int, Comparison]]:
    """Multi-task sweeps whose runs trained different tasks (all tasks vs each alone): the
    summed loss has no common scale, so each task's test metric is compared instead, over
    the configurations that trained that task; Holm's correction over all of them."""
    keys = sorted(set().union(*sweep.task_sets()))
    out = {key: _pair_rows(sweep.rows, control, key, only_having=True) for key in keys}
    _correct([c for by_row in out.values() for c in by_row.values()])
    return out


def _same(typed: str | None, wanted: str) -> bool:
    """Equal values as typed, or as numbers (1e-3 is 0.001)."""
    if typed is None:
        return False
    return typed == wanted or (
        as_number(wanted) is not None and as_number(typed) == as_number(wanted)
    )


def _matches(row: Row, spec: dict[str, str]) -> bool:
    """Whether the row's overrides hold every key=value of `spec`."""
    have = row.overrides()
    return all(_same(have.get(k), v) for k, v in spec.items())


def _label(row: Row) -> str:
    return " ".join(f"{k}={v}" for k, v in row.overrides().items()) or "all runs"


def parse_spec(text: str) -> dict[str, str]:
    """`regularizer=none optimizer.lr=0.1` → {key: value}; ReportError for a bare word."""
    pairs = [item.partition("=") for item in text.split()]
    if not pairs or any(not eq or not key for key, eq, _ in pairs):
        raise ReportError(f"--control {text!r}: expected key=value pairs, e.g. regularizer=none")
    return {key: value for key, _, value in pairs}


def choose_control(sweep: Sweep, spec: str | None = None) -> Row:
    """The row `spec` names (exactly one), else the first `regularizer=none` row with the
    fewest other overrides (the defaults), else the first row."""
    rows = [r for r in sweep.rows if r.finished] or sweep.rows
    if spec is None:
        plain = [r for r in rows if r.jobs[0].choice(REGULARIZER, CONTROL_OPTION) == "none"]
        return min(plain, key=lambda r: len(r.overrides())) if plain else rows[0]
    found = [r for r in sweep.rows if _matches(r, parse_spec(spec))]
    if len(found) != 1:
        what = "no configuration" if not found else f"{len(found)} configurations"
        names = "; ".join(_label(r) for r in sweep.rows)
        raise ReportError(
            f"--control {spec!r} matches {what} (allowed: key=value pairs that name one of:"
            f" {names})"
        )
    return found[0]


@dataclass
class Analysis:
    """The control, each other configuration's comparison with it, and the best row."""

    control: Row
    comparisons: dict[int, Comparison]  # id(row) → comparison
    best: Row | None  # k-fold: the configuration CV selects; else the best of the better
    better: int = 0  # configurations better than the control (Holm p < 5 %)
    worse: int = 0
    tasks: dict[str, dict[int, Comparison]] = field(default_factory=dict)  # key → as above


def best_row(rows: list[Row], key: str, higher_is_better: bool) -> Row | None:
    """The row with the best mean of `key`, if two or more rows have it."""
    scored = [(stat[0], row) for row in rows if (stat := row.stat(key)) is not None]
    if len(scored) < 2:
        return None
    return (max if higher_is_better else min)(scored, key=lambda s: s[0])[1]


def analyse(sweep: Sweep, control: str | None = None) -> Analysis:
    """Compare every configuration with the control and pick the best one: under k-fold
    CV the best mean validation metric (GridSearchCV's choice); otherwise only among the
    configurations better than the control, so noise never makes a winner."""
    row = choose_control(sweep, control)
    if len(sweep.task_sets()) > 1:  # losses summed over different tasks: compare per task
        return Analysis(row, {}, None, tasks=task_comparisons(sweep, row))
    comparisons = compare(sweep.rows, row, sweep.metric)
    verdicts = {i: c.verdict(sweep.higher_is_better) for i, c in comparisons.items()}
    better = [r for r in sweep.rows if verdicts.get(id(r)) == "better"]
    if sweep.folds:
        best = best_row(sweep.rows, sweep.metric, sweep.higher_is_better)
    else:
        best = best_row(better, sweep.metric, sweep.higher_is_better) or next(iter(better), None)
    worse = sum(v == "worse" for v in verdicts.values())
    return Analysis(row, comparisons, best, len(better), worse)
