"""report.md: the header, one table row per configuration, the comparisons with the
control, the per-task table of multi-task sweeps, and the failed jobs."""

from collections.abc import Callable

from reglab.report.compare import LEVEL, Analysis, Comparison, best_row
from reglab.report.configurations import MISSING, numeric_key
from reglab.report.formatting import (
    cell,
    fmt_mean_std,
    fmt_overrides,
    fmt_p,
    fmt_seconds,
    fmt_signed,
    plural,
    row_label,
    sweep_name,
)
from reglab.report.sweep import TASK_METRIC, Row, Sweep

VERDICTS = {
    "better": "**better than the control**",
    "worse": "**worse than the control**",
    "no difference": f"no difference at {LEVEL * 100:.0f} %",
}


def _metric_line(sweep: Sweep) -> str:
    direction = "higher is better" if sweep.higher_is_better else "lower is better"
    line = f"- **metric:** `{sweep.metric}`, mean ± std over {sweep.over()} (sample std, n − 1)"
    if sweep.folds:
        line += ", on each run's validation fold"
    line += f"; {direction}"
    return line + (f"; `{sweep.test_metric}` beside it" if sweep.test_metric else "")


def _best_line(sweep: Sweep, analysis: Analysis) -> str:
    """Who is best, and why: CV's selection, or a significant difference from the control."""
    best = analysis.best
    if best is None:
        if len(sweep.task_sets()) > 1 or len(sweep.rows) < 2:
            return ""
        worse = f" ({analysis.worse} worse)" if analysis.worse else ""
        if analysis.worse:
            return f"- **best:** none: no configuration is better than the control at 5 %{worse}"
        return "- **best:** none: no configuration differs from the control at 5 %"
    stat = fmt_mean_std(*best.stat(sweep.metric))
    line = f"- **best:** **{row_label(best.values, sweep.keys)}**: {stat}"
    if sweep.folds:
        line += f" (selected by {sweep.folds}-fold cross-validation: the best mean over folds)"
    comparison = analysis.comparisons.get(id(best))
    if comparison is not None and comparison.verdict(sweep.higher_is_better) == "better":
        line += f"; better than the control by {_difference(comparison, best, sweep)}"
    return line


def _difference(c: Comparison, row: Row, sweep: Sweep) -> str:
    scale = row.stat(sweep.metric)[0]
    ci = f"[{fmt_signed(c.ci_low, scale)}, {fmt_signed(c.ci_high, scale)}]"
    return f"{fmt_signed(c.diff, scale)} (95 % CI {ci}, Holm p = {fmt_p(c.p_holm)})"


def _header(sweep: Sweep, analysis: Analysis) -> list[str]:
    n_failed = len(sweep.failed)
    seconds = sum(j.seconds for j in sweep.jobs if isinstance(j.seconds, int | float))
    lines = [
        f"# Sweep report: {sweep_name(sweep.path)}",
        "",
        f"- **sweep:** `{sweep.path}`",
        f"- **jobs:** {len(sweep.jobs)}: {len(sweep.jobs) - n_failed} finished, {n_failed} failed"
        f" ({plural(len(sweep.rows), 'configuration')}; total run time {fmt_seconds(seconds)})",
        _metric_line(sweep),
    ]
    if sweep.fixed:
        lines.append(f"- **fixed:** `{fmt_overrides(sweep.fixed)}`")
    if any(sweep.task_sets()):
        lines.append(
            f"- **multi-task:** `{sweep.metric}` sums the task losses of the tasks a run"
            " trained on: compare tasks in the per-task table below (each task's best in bold)"
        )
    if len(sweep.rows) > 1:
        lines.append(f"- **control:** {row_label(analysis.control.values, sweep.keys)}")
    return lines + [line for line in [_best_line(sweep, analysis)] if line]


def _mean_cell(row: Row, key: str, show: Callable[[float], str]) -> str:
    stat = row.stat(key)
    return show(stat[0]) if stat is not None else MISSING


def _cells(sweep: Sweep, row: Row) -> list[str]:
    metric = row.stat(sweep.metric)
    seconds = row.mean_seconds()
    n, total = len(row.finished), len(row.jobs)
    beside = [sweep.test_metric] if sweep.test_metric else []
    return [
        *(cell(row.values[k]) for k in sweep.keys),
        fmt_mean_std(*metric) if metric else ("failed" if not n else MISSING),
        *(fmt_mean_std(*s) if (s := row.stat(k)) else MISSING for k in beside),
        _mean_cell(row, "best_step", lambda x: f"{x:.0f}"),
        _mean_cell(row, "weights/sparsity", lambda x: f"{100 * x:.3g} %"),
        fmt_seconds(seconds) if seconds is not None else MISSING,
        str(n) if n == total else f"{n} of {total}",
    ]


def _key_columns(sweep: Sweep) -> tuple[list[str], list[bool]]:
    if not sweep.keys:
        return ["configuration"], [False]
    return list(sweep.keys), [numeric_key([r.values[k] for r in sweep.rows]) for k in sweep.keys]


def _rule(numeric: list[bool]) -> str:
    return "|" + "|".join("---:" if num else ":---" for num in numeric) + "|"


def _table(sweep: Sweep, analysis: Analysis) -> list[str]:
    names, numeric = _key_columns(sweep)
    beside = [f"{sweep.test_metric} (mean ± std)"] if sweep.test_metric else []
    names += [
        f"{sweep.metric} (mean ± std)",
        *beside,
        "best step",
        "sparsity",
        "time / run",
        "runs",
    ]
    numeric += [True] * (5 + len(beside))
    lines = ["| " + " | ".join(names) + " |", _rule(numeric)]
    for row in sweep.rows:
        cells = _cells(sweep, row) if sweep.keys else ["all runs", *_cells(sweep, row)]
        if row is analysis.best:
            cells = [f"**{c}**" for c in cells]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _comparison_cells(
    sweep: Sweep, row: Row, c: Comparison | None, key: str | None = None
) -> list[str]:
    """Shared seeds, difference, CI, p, Holm's p and the verdict of one configuration on
    `key` (default: the sweep's metric)."""
    key = key or sweep.metric
    if c is None:
        return ["—", "control" if row.finished else "failed", "", "", "", ""]
    if c.diff is None:
        return ["0", MISSING, "", "", "", "no seed shared with the control"]
    scale = row.stat(key)[0] or 1.0
    diff = fmt_signed(c.diff, scale)
    if c.ci_low is None:
        return [str(c.n), diff, "", "", "", "fewer than 2 shared seeds: no test"]
    ci = f"[{fmt_signed(c.ci_low, scale)}, {fmt_signed(c.ci_high, scale)}]"
    if c.p_value is None:
        return [str(c.n), diff, ci, "", "", "the same difference at every seed: no test"]
    higher = sweep.higher_is_better if key == sweep.metric else key.endswith("/acc")
    verdict = VERDICTS[c.verdict(higher)]
    return [str(c.n), diff, ci, fmt_p(c.p_value), fmt_p(c.p_holm), verdict]


def _task_control_table(sweep: Sweep, analysis: Analysis) -> list[str]:
    """Multi-task sweeps of different task sets: each task's metric against the control's,
    for the configurations that trained the task."""
    tested = sum(c.p_holm is not None for by in analysis.tasks.values() for c in by.values())
    names, numeric = _key_columns(sweep)
    lines = [
        "",
        f"## Per task, against the control ({row_label(analysis.control.values, sweep.keys)})",
        "",
        "Each task's test metric, configuration − control, paired over the seeds both ran;"
        f" Holm's correction across all {plural(tested, 'test')}.",
        "",
        "| "
        + " | ".join(["task", *names, "seeds", "difference", "95 % CI", "p", "p (Holm)", ""])
        + " |",
        _rule([False, *numeric, True, True, True, True, True, False]),
    ]
    for key, by_row in analysis.tasks.items():
        for row in sweep.rows:
            if (found := by_row.get(id(row))) is not None:
                labels = [f"`{key}`", *(cell(row.values[k]) for k in sweep.keys)]
                lines.append(
                    "| " + " | ".join(labels + _comparison_cells(sweep, row, found, key)) + " |"
                )
    return lines


def _control_table(sweep: Sweep, analysis: Analysis) -> list[str]:
    """Each configuration against the control, paired over shared seeds."""
    if len(sweep.rows) < 2:
        return []
    if analysis.tasks:
        return _task_control_table(sweep, analysis)
    tested = sum(c.p_holm is not None for c in analysis.comparisons.values())
    folds = " (each seed's folds averaged)" if sweep.folds else ""
    names, numeric = _key_columns(sweep)
    lines = [
        "",
        f"## Against the control ({row_label(analysis.control.values, sweep.keys)})",
        "",
        f"Differences are configuration − control in `{sweep.metric}`, paired over the seeds"
        f" both ran{folds}: their mean, its 95 % confidence interval (paired t), the p-value"
        f" of the paired t-test and Holm's correction across the {plural(tested, 'test')}."
        f" A configuration is better or worse than the control only where Holm's p < {LEVEL}.",
        "",
        "| " + " | ".join([*names, "seeds", "difference", "95 % CI", "p", "p (Holm)", ""]) + " |",
        _rule([*numeric, True, True, True, True, True, False]),
    ]
    for row in sweep.rows:
        labels = [cell(row.values[k]) for k in sweep.keys] or ["all runs"]
        found = analysis.comparisons.get(id(row))
        cells = _comparison_cells(sweep, row, None if row is analysis.control else found)
        lines.append("| " + " | ".join(labels + cells) + " |")
    return lines


def _task_table(sweep: Sweep) -> list[str]:
    """Multi-task sweeps: each task's test metric per configuration (`test/<task>/<metric>`)."""
    finished = sweep.finished_jobs
    keys = list(dict.fromkeys(k for j in finished for k in j.metrics if TASK_METRIC.match(k)))
    if not keys:
        return []
    names, _ = _key_columns(sweep)
    lines = [
        "",
        "## Per task (test, mean ± std)",
        "",
        "| " + " | ".join([*names, *keys]) + " |",
        "|" + "|".join([":---"] * len(names) + ["---:"] * len(keys)) + "|",
    ]
    best = {key: best_row(sweep.rows, key, key.endswith("/acc")) for key in keys}
    for row in sweep.rows:
        labels = [cell(row.values[k]) for k in sweep.keys] or ["all runs"]
        cells = []
        for key in keys:
            text = fmt_mean_std(*stat) if (stat := row.stat(key)) else MISSING
            cells.append(f"**{text}**" if row is best[key] else text)
        lines.append("| " + " | ".join(labels + cells) + " |")
    return lines


def _failures(sweep: Sweep) -> list[str]:
    if not sweep.failed:
        return []
    lines = ["", f"## Failed jobs ({len(sweep.failed)})", ""]
    for job in sweep.failed:
        lines += [f"- job `{job.path.name}`: `{fmt_overrides(job.overrides)}`", "  ```"]
        lines += [f"  {line}" for line in job.error.splitlines()]
        lines += ["  ```"]
    return lines


def render_markdown(sweep: Sweep, analysis: Analysis, image: str = "report.png") -> str:
    """report.md: header, plot, the table, per-task table, the control, failed jobs."""
    plot = f"![{sweep.metric} against the swept keys]({image})"
    lines = [*_header(sweep, analysis), "", plot, "", *_table(sweep, analysis)]
    lines += [*_task_table(sweep), *_control_table(sweep, analysis), *_failures(sweep)]
    return "\n".join(lines) + "\n"
