"""The sweep report: what a `-m` sweep found, as a Markdown table and a plot.

    python train.py -m regularizer=none,l1,l2 regularizer.alpha=1e-4,1e-3,1e-2 seed=0,1,2
    python -m reglab.report outputs/multirun/2026-01-01/12-00-00     # any sweep, on demand

Both write `report.md` and `report.png` into the sweep directory. The table has one row per
configuration: the keys that the jobs' `.hydra/overrides.yaml` vary (except `seed`, which
is what the statistics are taken over), the test metric as mean ± std over seeds (the
sample std, n − 1), the best step, the sparsity and the wall time of a run, read from each
job's `metrics.json` and `run.json`; the best configuration is in bold, and failed jobs are
listed with their error. The plot draws the metric against each swept numeric key, one line
per value of the other keys, with the std as error bars (a bar chart when no key is numeric).

`SweepReport` is the Hydra callback that writes the report when a sweep ends; it is
registered in conf/train.yaml under `hydra.callbacks.report`.
"""

import atexit
import contextlib
import json
import logging
import math
import os
import re
import statistics
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from hydra.core.utils import JobReturn, JobStatus
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

log = logging.getLogger(__name__)

USAGE = "usage: python -m reglab.report SWEEP_DIR   (e.g. outputs/multirun/2026-01-01/12-00-00)"
SEED = "seed"
MISSING = "—"
# the report's metric: the first of these that the finished jobs have; True: higher is better
# (val/best, the best value of `monitor`, when there is no test split: as `monitor_mode` says)
TASK_METRIC = re.compile(r"^test/[^/]+/(acc|mse)$")  # a multi-task run's per-task metrics
METRICS = {"test/acc": True, "test/mse": False, "test/loss": False, "val/best": False}
LABELS = {
    "test/acc": "test accuracy",
    "test/mse": "test MSE",
    "test/loss": "test loss",
    "val/best": "best validation metric",
}
DPI = 120
BEST_STAR = {"ms": 16, "color": "gold", "mec": "black", "zorder": 5, "label": "best"}
LOG_TAIL = 5  # lines of train.log shown for a failed job that recorded no error


class ReportError(Exception):
    """The path is not a sweep that a report can be made of; the message is one line."""


# -- reading a sweep ----------------------------------------------------------------------------
@dataclass
class Job:
    """One job directory: its overrides and, if it finished, its metrics."""

    path: Path
    overrides: dict[str, str]
    metrics: dict[str, float] | None = None  # None: failed or unfinished
    seconds: float | None = None
    error: str = ""

    @property
    def finished(self) -> bool:
        return self.metrics is not None


def _load_json(path: Path) -> dict[str, Any]:
    """The JSON object in `path`; {} when the file is missing or unreadable."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def parse_overrides(lines: Iterable[str]) -> dict[str, str]:
    """`key=value` overrides as typed (`+key=v` → key, `~key` → key: "(deleted)")."""
    overrides = {}
    for line in lines:
        key, eq, value = str(line).partition("=")
        overrides[key.lstrip("+~")] = value if eq else "(deleted)"
    return overrides


def _log_tail(path: Path) -> str:
    logs = sorted(path.glob("*.log"))
    try:
        lines = [line for line in logs[0].read_text().splitlines() if line.strip()]
    except (IndexError, OSError):
        return ""
    return "\n".join(line[:200] for line in lines[-LOG_TAIL:])


def read_job(path: Path, errors: dict[str, str] | None = None) -> Job:
    """A job from its directory; `errors` (job path → error) fills in errors it did not record."""
    overrides = parse_overrides(
        yaml.safe_load((path / ".hydra" / "overrides.yaml").read_text()) or []
    )
    run = _load_json(path / "run.json")
    metrics = _load_json(path / "metrics.json")
    job = Job(path, overrides, seconds=run.get("seconds"))
    if metrics and run.get("status") != "failed":
        job.metrics = {k: float(v) for k, v in metrics.items() if isinstance(v, int | float)}
        return job
    job.error = (
        run.get("error")
        or (errors or {}).get(str(path.resolve()))
        or _log_tail(path)
        or "no metrics.json, run.json or log lines: it failed before training (the sweep's "
        "console shows why), was killed, or is still running"
    )
    return job


def _job_order(path: Path) -> tuple[int, str]:
    return (int(path.name), "") if path.name.isdigit() else (sys.maxsize, path.name)


def find_jobs(sweep_dir: Path) -> list[Path]:
    """The job directories of a sweep (`<sweep>/<job>/.hydra/overrides.yaml`), in job order."""
    where = "expected a sweep directory such as outputs/multirun/<date>/<time>"
    if not sweep_dir.is_dir():
        what = "not a directory" if sweep_dir.exists() else "no such directory"
        raise ReportError(f"{sweep_dir}: {what} ({where})")
    if (sweep_dir / ".hydra").is_dir():
        raise ReportError(
            f"{sweep_dir} is a single run, not a sweep: expected job directories "
            f"{sweep_dir / '0'}/.hydra, {sweep_dir / '1'}/.hydra, … (made by train.py -m)"
        )
    jobs = [p for p in sweep_dir.iterdir() if (p / ".hydra" / "overrides.yaml").is_file()]
    if not jobs:
        raise ReportError(
            f"{sweep_dir} is not a sweep directory: expected job directories holding "
            f".hydra/overrides.yaml (<job>/.hydra/overrides.yaml), found none"
        )
    return sorted(jobs, key=_job_order)


# -- statistics -----------------------------------------------------------------------------------
def mean_std(values: list[float]) -> tuple[float, float | None]:
    """Mean and sample standard deviation (n − 1; None for a single value)."""
    std = statistics.stdev(values) if len(values) >= 2 else None
    return statistics.mean(values), std


def as_number(value: str) -> float | None:
    """The override value as a finite number, or None for a categorical value."""
    try:
        x = float(value)
    except ValueError:
        return None
    return x if math.isfinite(x) else None


@dataclass
class Row:
    """One configuration: the jobs that share the values of the swept keys."""

    values: dict[str, str]
    jobs: list[Job]

    @property
    def finished(self) -> list[Job]:
        return [j for j in self.jobs if j.finished]

    def stat(self, key: str) -> tuple[float, float | None] | None:
        """Mean and std of metric `key` over the finished jobs; None if none has it."""
        values = [j.metrics[key] for j in self.finished if key in j.metrics]
        return mean_std(values) if values else None

    def mean_seconds(self) -> float | None:
        seconds = [j.seconds for j in self.finished if isinstance(j.seconds, int | float)]
        return statistics.mean(seconds) if seconds else None


@dataclass
class Sweep:
    """A sweep directory read: jobs, swept keys, one row per configuration, the metric."""

    path: Path
    jobs: list[Job]
    keys: list[str]  # swept keys with more than one value, seed excluded, in command-line order
    fixed: dict[str, str]  # overrides every job shares
    rows: list[Row]  # sorted by the swept keys
    metric: str
    higher_is_better: bool

    @property
    def finished_jobs(self) -> list[Job]:
        return [j for j in self.jobs if j.finished]

    @property
    def failed(self) -> list[Job]:
        return [j for j in self.jobs if not j.finished]

    def numeric(self, key: str) -> bool:
        return all(as_number(row.values[key]) is not None for row in self.rows)

    def plot_keys(self) -> list[str]:
        """The numeric keys with two or more values among the configurations that finished."""
        rows = [row for row in self.rows if row.stat(self.metric) is not None]
        return [k for k in self.keys if self.numeric(k) and len({r.values[k] for r in rows}) > 1]

    def task_sets(self) -> set[frozenset[str]]:
        """The per-task metrics of each finished job: one set when every job trained the
        same tasks (the empty set for single-task sweeps)."""
        return {frozenset(k for k in j.metrics if TASK_METRIC.match(k)) for j in self.finished_jobs}

    def best(self) -> Row | None:
        if len(self.task_sets()) > 1:
            return None  # losses summed over different tasks: no common scale
        return _best_row(self.rows, self.metric, self.higher_is_better)

    def seeds(self) -> list[str]:
        seeds = {j.overrides[SEED] for j in self.jobs if SEED in j.overrides}
        return sorted(seeds, key=lambda s: (as_number(s) is None, as_number(s) or 0, s))


def swept_keys(jobs: list[Job]) -> tuple[list[str], dict[str, str]]:
    """(keys whose value differs between jobs, keys every job sets alike); seed is neither."""
    keys = list(dict.fromkeys(k for j in jobs for k in j.overrides if k != SEED))
    values = {k: list(dict.fromkeys(j.overrides.get(k, MISSING) for j in jobs)) for k in keys}
    varying = [k for k in keys if len(values[k]) > 1]
    fixed = {k: values[k][0] for k in keys if len(values[k]) == 1}
    return varying, fixed


def group_rows(jobs: list[Job], keys: list[str]) -> list[Row]:
    """Jobs grouped by their values of `keys`; sorted by numeric value, or else by first use."""
    rows: dict[tuple[str, ...], Row] = {}
    for job in jobs:
        values = {k: job.overrides.get(k, MISSING) for k in keys}
        rows.setdefault(tuple(values.values()), Row(values, [])).jobs.append(job)
    first_use = {k: list(dict.fromkeys(r.values[k] for r in rows.values())) for k in keys}
    numeric = {k: all(as_number(v) is not None for v in first_use[k]) for k in keys}

    def order(row: Row) -> tuple[float, ...]:
        return tuple(
            as_number(row.values[k]) if numeric[k] else first_use[k].index(row.values[k])
            for k in keys
        )

    return sorted(rows.values(), key=order)


def choose_metric(jobs: list[Job]) -> tuple[str, bool]:
    """The first metric of METRICS that all finished jobs have (else that any has)."""
    finished = [j.metrics for j in jobs if j.metrics is not None]
    for need in (all, any):
        for name, higher in METRICS.items():
            if need(name in m for m in finished):
                return name, higher
    raise ReportError(f"the finished jobs record none of {', '.join(METRICS)} in metrics.json")


def _monitor_mode(job: Job) -> str:
    try:
        config = yaml.safe_load((job.path / ".hydra" / "config.yaml").read_text())
    except (OSError, yaml.YAMLError):
        return "min"
    return config.get("monitor_mode", "min") if isinstance(config, dict) else "min"


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
    keys, fixed = swept_keys(jobs)
    metric, higher = choose_metric(jobs)
    if metric == "val/best":
        higher = _monitor_mode(next(j for j in jobs if j.finished)) == "max"
    return Sweep(path, jobs, keys, fixed, group_rows(jobs, keys), metric, higher)


# -- formatting -----------------------------------------------------------------------------------
def _decimals(x: float, digits: int = 4) -> int:
    """Decimals that show `x` to `digits` significant digits."""
    return max(0, digits - 1 - math.floor(math.log10(abs(x)))) if x else digits


def fmt(x: float, digits: int = 4) -> str:
    """A number compactly: 0.9721, 12.35, 2891, or 3.210e-05 outside [1e-3, 1e5)."""
    if x and not 1e-3 <= abs(x) < 1e5:
        return f"{x:.{digits - 1}e}"
    return f"{x:.{_decimals(x, digits)}f}"


def fmt_mean_std(mean: float, std: float | None) -> str:
    """`0.9721 ± 0.0043`: the std to the decimals of the mean; the mean alone without a std."""
    if std is None:
        return fmt(mean)
    if mean and not 1e-3 <= abs(mean) < 1e5:
        return f"{mean:.3e} ± {std:.1e}"
    d = _decimals(mean)
    return f"{mean:.{d}f} ± {std:.{d}f}"


def fmt_seconds(seconds: float) -> str:
    if seconds < 1:
        return f"{seconds:.2f} s"
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def fmt_overrides(overrides: dict[str, str]) -> str:
    return " ".join(f"{k}={v}" for k, v in overrides.items())


def _cell(text: str) -> str:
    return text.replace("|", r"\|")


def sweep_name(path: Path) -> str:
    """`2026-01-01/12-00-00` for Hydra's dated sweep directories, else the directory's name."""
    parent = path.resolve().parent.name
    dated = len(parent) == 10 and parent[4] == parent[7] == "-" and parent[:4].isdigit()
    return f"{parent}/{path.resolve().name}" if dated else path.resolve().name


def row_label(row: Row, keys: list[str]) -> str:
    return ", ".join(f"{k}={row.values[k]}" for k in keys) or "all runs"


# -- report.md ----------------------------------------------------------------------------------
def _header(sweep: Sweep) -> list[str]:
    n_failed = len(sweep.failed)
    seconds = sum(j.seconds for j in sweep.jobs if isinstance(j.seconds, int | float))
    seeds = sweep.seeds()
    over = f"seeds {', '.join(seeds)}" if len(seeds) > 1 else "runs"
    direction = "higher is better" if sweep.higher_is_better else "lower is better"
    lines = [
        f"# Sweep report: {sweep_name(sweep.path)}",
        "",
        f"- **sweep:** `{sweep.path}`",
        f"- **jobs:** {len(sweep.jobs)}: {len(sweep.jobs) - n_failed} finished, {n_failed} failed"
        f" ({plural(len(sweep.rows), 'configuration')}; total run time {fmt_seconds(seconds)})",
        f"- **metric:** `{sweep.metric}`, mean ± std over {over} (sample std, n − 1); {direction}",
    ]
    if sweep.fixed:
        lines.append(f"- **fixed:** `{fmt_overrides(sweep.fixed)}`")
    if any(sweep.task_sets()):
        lines.append(
            f"- **multi-task:** `{sweep.metric}` sums the task losses of the tasks a run"
            " trained on: compare tasks in the per-task table below (each task's best in bold)"
        )
    best = sweep.best()
    if best is not None:
        lines.append(
            f"- **best:** **{row_label(best, sweep.keys)}**: "
            f"{fmt_mean_std(*best.stat(sweep.metric))}"
        )
    return lines


def _cells(sweep: Sweep, row: Row) -> list[str]:
    def mean(key: str, show: Any) -> str:
        stat = row.stat(key)
        return show(stat[0]) if stat is not None else MISSING

    metric = row.stat(sweep.metric)
    seconds = row.mean_seconds()
    n, total = len(row.finished), len(row.jobs)
    return [
        *(_cell(row.values[k]) for k in sweep.keys),
        fmt_mean_std(*metric) if metric else ("failed" if not n else MISSING),
        mean("best_step", lambda x: f"{x:.0f}"),
        mean("weights/sparsity", lambda x: f"{100 * x:.3g} %"),
        fmt_seconds(seconds) if seconds is not None else MISSING,
        str(n) if n == total else f"{n} of {total}",
    ]


def _table(sweep: Sweep) -> list[str]:
    names = [*sweep.keys] if sweep.keys else ["configuration"]
    numeric = [sweep.numeric(k) for k in sweep.keys] if sweep.keys else [False]
    names += [f"{sweep.metric} (mean ± std)", "best step", "sparsity", "time / run", "runs"]
    numeric += [True] * 5
    lines = [
        "| " + " | ".join(names) + " |",
        "|" + "|".join("---:" if num else ":---" for num in numeric) + "|",
    ]
    best = sweep.best()
    for row in sweep.rows:
        cells = _cells(sweep, row) if sweep.keys else ["all runs", *_cells(sweep, row)]
        if row is best:
            cells = [f"**{c}**" for c in cells]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _task_table(sweep: Sweep) -> list[str]:
    """Multi-task sweeps: each task's test metric per configuration (`test/<task>/<metric>`)."""
    keys = list(
        dict.fromkeys(
            k for j in sweep.jobs if j.finished for k in j.metrics if TASK_METRIC.match(k)
        )
    )
    if not keys:
        return []
    names = [*sweep.keys] if sweep.keys else ["configuration"]
    lines = [
        "",
        "## Per task (test, mean ± std)",
        "",
        "| " + " | ".join([*names, *keys]) + " |",
        "|" + "|".join([":---"] * len(names) + ["---:"] * len(keys)) + "|",
    ]
    best = {key: _best_row(sweep.rows, key, key.endswith("/acc")) for key in keys}
    for row in sweep.rows:
        labels = [_cell(row.values[k]) for k in sweep.keys] or ["all runs"]
        cells = []
        for key in keys:
            stat = row.stat(key)
            cell = fmt_mean_std(*stat) if stat else MISSING
            cells.append(f"**{cell}**" if row is best[key] else cell)
        lines.append("| " + " | ".join(labels + cells) + " |")
    return lines


def _best_row(rows: list[Row], key: str, higher_is_better: bool) -> Row | None:
    """The row with the best mean of `key`, if two or more rows have it."""
    scored = [(stat[0], row) for row in rows if (stat := row.stat(key)) is not None]
    if len(scored) < 2:
        return None
    return (max if higher_is_better else min)(scored, key=lambda s: s[0])[1]


def _failures(sweep: Sweep) -> list[str]:
    if not sweep.failed:
        return []
    lines = ["", f"## Failed jobs ({len(sweep.failed)})", ""]
    for job in sweep.failed:
        lines += [f"- job `{job.path.name}`: `{fmt_overrides(job.overrides)}`", "  ```"]
        lines += [f"  {line}" for line in job.error.splitlines()]
        lines += ["  ```"]
    return lines


def render_markdown(sweep: Sweep, image: str = "report.png") -> str:
    """report.md: header, plot, one table row per configuration, failed jobs."""
    plot = f"![{sweep.metric} against the swept keys]({image})"
    lines = [*_header(sweep), "", plot, "", *_table(sweep), *_task_table(sweep)]
    lines += _failures(sweep)
    return "\n".join(lines) + "\n"


# -- report.png ---------------------------------------------------------------------------------
def x_scale(values: Iterable[float]) -> str:
    """The x scale for swept values: log if the positive ones span ≥ 2 decades (symlog if 0 is
    among them, which a log axis cannot show), else linear."""
    xs = set(values)
    positive = [x for x in xs if x > 0]
    if len(positive) < 2 or any(x < 0 for x in xs):
        return "linear"
    if math.log10(max(positive) / min(positive)) < 2 - 1e-9:
        return "linear"
    return "symlog" if 0 in xs else "log"


def _metric_label(sweep: Sweep) -> str:
    arrow = "higher is better" if sweep.higher_is_better else "lower is better"
    return f"{LABELS.get(sweep.metric, sweep.metric)} ({arrow})"


def _dodge(xs: list[float], span: list[float], scale: str, i: int, n: int) -> list[float]:
    """Line i of n shifted sideways by a hair, so that overlapping error bars stay apart."""
    shift = (i - (n - 1) / 2) * 0.012
    lo, hi = min(span), max(span)
    if scale == "log":
        return [x * (hi / lo) ** shift for x in xs]
    return [x + (hi - lo) * shift for x in xs] if scale == "linear" else xs


def _plot_against(ax: Any, sweep: Sweep, key: str) -> None:
    """The metric against numeric `key`: one line per value of the other swept keys."""
    others = [k for k in sweep.keys if k != key]
    best = sweep.best()
    lines: dict[str, list[tuple[float, float, float, bool]]] = {}
    ticks: dict[float, str] = {}
    for row in sweep.rows:
        stat = row.stat(sweep.metric)
        if stat is not None:
            x = as_number(row.values[key])
            ticks.setdefault(x, row.values[key])
            label = ", ".join(row.values[k] for k in others) or "mean ± std over seeds"
            lines.setdefault(label, []).append((x, stat[0], stat[1] or 0.0, row is best))
    scale = x_scale(ticks)
    handles = []
    for i, (label, points) in enumerate(lines.items()):
        x, y, err, is_best = zip(*sorted(points), strict=True)
        x = _dodge(list(x), list(ticks), scale, i, len(lines))
        handles.append(ax.errorbar(x, y, yerr=err, marker="o", ms=5, capsize=3, label=label))
        for xb, yb, b in zip(x, y, is_best, strict=True):
            if b:
                handles += ax.plot([xb], [yb], "*", **BEST_STAR)
    handles.sort(key=lambda h: h.get_label() == "best")  # the star last in the legend
    if scale == "symlog":
        ax.set_xscale("symlog", linthresh=min(x for x in ticks if x > 0))
    else:
        ax.set_xscale(scale)
    if len(ticks) <= 8:
        ax.set_xticks(list(ticks), labels=list(ticks.values()))
        ax.set_xticks([], minor=True)
    ax.set_xlabel(key + (" (log scale)" if scale != "linear" else ""))
    ax.set_ylabel(_metric_label(sweep))
    ax.set_title(f"vs {key}")
    ax.grid(alpha=0.3)
    title = ", ".join(others) or None
    ax.legend(handles=handles, title=title, fontsize="small", title_fontsize="small")


def _bar_chart(ax: Any, sweep: Sweep) -> None:
    """One horizontal bar per configuration (no numeric key to plot against)."""
    from matplotlib.patches import Patch

    best = sweep.best()
    rows = [row for row in sweep.rows if row.stat(sweep.metric) is not None]
    stats = [row.stat(sweep.metric) for row in rows]
    means = [m for m, _ in stats]
    errs = [s or 0.0 for _, s in stats]
    colors = ["C1" if row is best else "C0" for row in rows]
    y = list(range(len(rows)))
    ax.barh(y, means, xerr=errs, color=colors, height=0.6, capsize=4)
    ax.set_yticks(y, labels=[", ".join(r.values.values()) or "all runs" for r in rows])
    ax.set_ylabel(", ".join(sweep.keys))
    ax.invert_yaxis()  # the table's order, top to bottom
    lo = min(m - e for m, e in zip(means, errs, strict=True))
    hi = max(m + e for m, e in zip(means, errs, strict=True))
    pad = 0.25 * (hi - lo) or 0.1 * abs(hi) or 1.0
    left = 0.0 if lo >= 0 and (hi == lo or lo - pad <= 0.5 * hi) else lo - pad
    ax.set_xlim(left, left + (hi - left) / 0.7)  # room on the right for the numbers
    for i, (m, e, stat) in enumerate(zip(means, errs, stats, strict=True)):
        text = fmt_mean_std(*stat)
        ax.annotate(text, (m + e, i), xytext=(6, 0), textcoords="offset points", va="center")
    ax.set_xlabel(_metric_label(sweep))
    ax.set_title("per configuration")
    ax.grid(alpha=0.3, axis="x")
    over = "mean ± std over seeds" if len(sweep.seeds()) > 1 else "mean ± std over runs"
    handles = [Patch(color="C1", label="best"), Patch(color="C0", label=over)][2 - len(rows) :]
    ax.figure.legend(handles=handles, fontsize="small", loc="outside lower center", ncols=2)


def figure(sweep: Sweep) -> Any:
    """The report's matplotlib Figure (no pyplot: no global state, no display needed)."""
    from matplotlib.figure import Figure

    numeric = sweep.plot_keys()
    if numeric:
        ncols = min(2, len(numeric))
        nrows = math.ceil(len(numeric) / ncols)
        fig = Figure(figsize=(8.0 if ncols == 1 else 9.5, 0.6 + 4.2 * nrows), layout="constrained")
        axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
        for ax, key in zip(axes, numeric, strict=False):
            _plot_against(ax, sweep, key)
        for ax in axes[len(numeric) :]:
            ax.set_visible(False)
    else:
        fig = Figure(figsize=(8.0, 2.4 + 0.5 * len(sweep.rows)), layout="constrained")
        _bar_chart(fig.subplots(), sweep)
    seeds = len(sweep.seeds())
    over = f"mean ± std over {seeds} seeds" if seeds > 1 else "mean ± std over runs"
    label = LABELS.get(sweep.metric, sweep.metric)
    fig.suptitle(f"Sweep {sweep_name(sweep.path)}: {label}, {over}", fontweight="bold")
    return fig


# -- writing it ---------------------------------------------------------------------------------
def write_report(sweep_dir: str | Path, errors: dict[str, str] | None = None) -> Path:
    """Write report.md and report.png into `sweep_dir`; return the path of report.md."""
    sweep = load_sweep(sweep_dir, errors)
    figure(sweep).savefig(sweep.path / "report.png", dpi=DPI)
    markdown = sweep.path / "report.md"
    markdown.write_text(render_markdown(sweep))
    return markdown


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split()) or type(err).__name__


class SweepReport(Callback):
    """Hydra callback: write the sweep report when a `-m` sweep ends, and print its path.

    When a job fails, Hydra's sweeper re-raises its error after the last job and skips
    `on_multirun_end`; the report is then written at exit. Errors of jobs that failed before
    writing run.json (a bad config value) are kept from Hydra's job returns. The report never
    stops a sweep: a problem making it is one warning line.
    """

    def __init__(self) -> None:
        self.sweep_dir: Path | None = None
        self.errors: dict[str, str] = {}  # job directory → error of a failed job
        self._pending = False
        self._pid = 0

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self.sweep_dir = Path(str(config.hydra.sweep.dir))
        self._pending, self._pid = True, os.getpid()
        atexit.register(self._at_exit)

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        if job_return.status != JobStatus.FAILED:
            return
        with contextlib.suppress(Exception):  # only a better error message is at stake
            err = job_return._return_value  # `.return_value` would re-raise it
            job_dir = str(Path(config.hydra.runtime.output_dir).resolve())
            self.errors[job_dir] = f"{type(err).__name__}: {err}"

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        if self.sweep_dir is None:
            self.sweep_dir = Path(str(config.hydra.sweep.dir))
            self._pending = True
        self.write()

    def _at_exit(self) -> None:
        if os.getpid() == self._pid:  # not in a forked worker
            self.write()

    def write(self) -> Path | None:
        """Write the report once; log a one-line warning instead of raising."""
        if not self._pending or self.sweep_dir is None:
            return None
        self._pending = False
        try:
            markdown = write_report(self.sweep_dir, self.errors)
        except Exception as err:
            log.warning("reglab.report: no sweep report for %s: %s", self.sweep_dir, _one_line(err))
            return None
        print(f"sweep report: {markdown} (plot: {markdown.with_name('report.png')})", flush=True)
        return markdown


def main(argv: list[str] | None = None) -> int:
    """`python -m reglab.report SWEEP_DIR`: write the report; one error line for bad input."""
    args = sys.argv[1:] if argv is None else argv
    if args and args[0] in ("-h", "--help"):
        print(USAGE)
        print(__doc__)
        return 0
    if len(args) != 1:
        print(USAGE, file=sys.stderr)
        return 2
    try:
        markdown = write_report(args[0])
    except (ReportError, OSError, yaml.YAMLError) as err:
        print(f"reglab.report: error: {_one_line(err)}", file=sys.stderr)
        return 1
    print(f"wrote {markdown} and {markdown.with_name('report.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
