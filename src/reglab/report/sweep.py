"""A sweep read: its jobs grouped into configurations (rows), and the metric to rank them.

Without folds the metric is the test metric (`test/acc`, else `test/mse`, `test/loss`,
`val/best`). A k-fold sweep (`data.folds=k data.fold=range(k)`) is ranked by the validation
metric of the parameters each run ended with (`val/final_acc|mse`, else `val/best`),
averaged over folds like seeds; the test metric, if there is a test split, sits beside it.
"""

import re
import statistics
from dataclasses import dataclass
from pathlib import Path

from reglab.report.configurations import identity, order, share_ignored, shown, swept_keys
from reglab.report.jobs import REPLICATES, Job, ReportError, find_jobs, read_job

# the metrics a report ranks by, the first that the finished jobs have; True: higher is
# better (val/best, the best value of `monitor`: as `monitor_mode` says)
TASK_METRIC = re.compile(r"^test/[^/]+/(acc|mse)$")  # a multi-task run's per-task metrics
METRICS = {"test/acc": True, "test/mse": False, "test/loss": False, "val/best": False}
CV_METRICS = {"val/final_acc": True, "val/final_mse": False, "val/best": False}


@dataclass
class Row:
    """One configuration: the shown values of the swept keys and its jobs."""

    values: dict[str, str]
    jobs: list[Job]

    @property
    def finished(self) -> list[Job]:
        return [j for j in self.jobs if j.finished]

    def replicates(self, key: str) -> list[float]:
        """Metric `key` per (seed, fold): runs that repeat one (their options ignore what
        sets them apart) are averaged, so they do not count as more evidence."""
        by_unit: dict[tuple[str, str], list[float]] = {}
        for job in self.finished:
            if key in job.metrics:
                by_unit.setdefault((job.seed, job.fold), []).append(job.metrics[key])
        return [statistics.mean(values) for values in by_unit.values()]

    def stat(self, key: str) -> tuple[float, float | None] | None:
        """Mean and sample std (n − 1) of metric `key` over the replicates; None if none."""
        values = self.replicates(key)
        if not values:
            return None
        return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else None

    def per_seed(self, key: str) -> dict[str, float]:
        """Seed → metric `key`, averaged over that seed's folds: the unit a paired test
        compares (folds share training rows, so they are not independent replicates)."""
        by_seed: dict[str, list[float]] = {}
        for job in self.finished:
            if key in job.metrics:
                by_seed.setdefault(job.seed, []).append(job.metrics[key])
        return {seed: statistics.mean(values) for seed, values in by_seed.items()}

    def mean_seconds(self) -> float | None:
        seconds = [j.seconds for j in self.finished if isinstance(j.seconds, int | float)]
        return statistics.mean(seconds) if seconds else None

    def overrides(self) -> dict[str, str]:
        """What the configuration is, as typed: the first job's overrides without the
        replicates and the keys its options ignore."""
        job = self.jobs[0]
        return {k: v for k, v in job.overrides.items() if k not in {*REPLICATES, *job.ignored}}


@dataclass
class Sweep:
    """A sweep directory read: jobs, swept keys, one row per configuration, the metric."""

    path: Path
    jobs: list[Job]
    keys: list[str]  # swept keys with more than one shown value, in command-line order
    fixed: dict[str, str]  # overrides every job shares
    rows: list[Row]  # sorted by the swept keys
    metric: str
    higher_is_better: bool
    test_metric: str | None = None  # beside a k-fold sweep's validation metric

    @property
    def finished_jobs(self) -> list[Job]:
        return [j for j in self.jobs if j.finished]

    @property
    def failed(self) -> list[Job]:
        return [j for j in self.jobs if not j.finished]

    @property
    def folds(self) -> int | None:
        """k when the sweep cross-validates (its jobs set data.folds), else None."""
        return next((j.folds for j in self.jobs if j.folds), None)

    def task_sets(self) -> set[frozenset[str]]:
        """The per-task metrics of each finished job: one set when every job trained the
        same tasks (the empty set for single-task sweeps)."""
        return {frozenset(k for k in j.metrics if TASK_METRIC.match(k)) for j in self.finished_jobs}

    def over(self) -> str:
        """What a mean ± std is taken over: `seeds 0, 1, 2`, `5 folds × seeds 0, 1`, `runs`."""
        seeds = self.seeds()
        over = f"seeds {', '.join(seeds)}" if len(seeds) > 1 else "runs"
        if not self.folds:
            return over
        return f"{self.folds} folds" + (f" × {over}" if len(seeds) > 1 else "")

    def seeds(self) -> list[str]:
        seeds = {j.seed for j in self.jobs}
        return sorted(seeds, key=lambda s: (not s.isdigit(), int(s) if s.isdigit() else 0, s))


def group_rows(jobs: list[Job], keys: list[str]) -> list[Row]:
    """Jobs grouped into configurations (`identity`), sorted by the swept keys' values."""
    rows: dict[str, Row] = {}
    for job in jobs:
        values = {k: shown(job, k) for k in keys}
        rows.setdefault(identity(job), Row(values, [])).jobs.append(job)
    found = list(rows.values())
    return [found[i] for i in order([r.values for r in found], keys)]


def choose_metric(jobs: list[Job], metrics: dict[str, bool]) -> tuple[str, bool]:
    """The first metric of `metrics` that all finished jobs have (else that any has)."""
    finished = [j.metrics for j in jobs if j.metrics is not None]
    for need in (all, any):
        for name, higher in metrics.items():
            if need(name in m for m in finished):
                return name, higher
    raise ReportError(f"the finished jobs record none of {', '.join(metrics)} in metrics.json")


def _monitor_max(jobs: list[Job]) -> bool:
    """Whether val/best is a maximum (`monitor_mode: max` in the composed config)."""
    config = next((j.config for j in jobs if j.finished and j.config), None) or {}
    return config.get("monitor_mode", "min") == "max"


def _metrics(jobs: list[Job], cross_validated: bool) -> tuple[str, bool, str | None]:
    """(the metric to rank by, whether higher is better, the test metric shown beside)."""
    metric, higher = choose_metric(jobs, CV_METRICS if cross_validated else METRICS)
    if metric == "val/best":
        higher = _monitor_max(jobs)
    tests = {k: v for k, v in METRICS.items() if k.startswith("test/")}
    finished = [j.metrics for j in jobs if j.metrics is not None]
    has_test = any(k in m for m in finished for k in tests)
    return metric, higher, choose_metric(jobs, tests)[0] if cross_validated and has_test else None


def load_sweep(sweep_dir: str | Path, errors: dict[str, str] | None = None) -> Sweep:
    """Read a sweep directory; ReportError if it is none or has no finished job."""
    path = Path(sweep_dir)
    jobs = [read_job(p, errors) for p in find_jobs(path)]
    if not any(j.finished for j in jobs):
        raise ReportError(
            f"{path}: no finished jobs (expected <job>/metrics.json; all {len(jobs)} "
            f"job directories failed or are unfinished; first error: "
            f"{' '.join(jobs[0].error.split())[:200]})"
        )
    share_ignored(jobs)
    keys, fixed = swept_keys(jobs)
    cross_validated = any(j.folds for j in jobs)
    metric, higher, test_metric = _metrics(jobs, cross_validated)
    rows = group_rows(jobs, keys)
    return Sweep(path, jobs, keys, fixed, rows, metric, higher, test_metric)
