"""report.png: the metric against each swept numeric key, one line per value of the other
keys, with the std as error bars (a bar chart when no key is numeric); the best
configuration starred, a configuration that ignores the key as a dashed level."""

import math
from collections.abc import Iterable
from typing import Any

from reglab.report.compare import Analysis, analyse
from reglab.report.configurations import IGNORED, as_number, numeric_key
from reglab.report.formatting import fmt_mean_std, sweep_name
from reglab.report.sweep import Row, Sweep

LABELS = {
    "test/acc": "test accuracy",
    "test/mse": "test MSE",
    "test/loss": "test loss",
    "val/best": "best validation metric",
    "val/final_acc": "validation accuracy",
    "val/final_mse": "validation MSE",
}
BEST_STAR = {"ms": 16, "color": "gold", "mec": "black", "zorder": 5, "label": "best"}


def plot_keys(sweep: Sweep) -> list[str]:
    """The numeric keys with two or more numbers among the configurations that finished."""
    rows = [row for row in sweep.rows if row.stat(sweep.metric) is not None]
    return [
        k
        for k in sweep.keys
        if numeric_key([r.values[k] for r in sweep.rows])
        and len({as_number(r.values[k]) for r in rows} - {None}) > 1
    ]


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


Point = tuple[float, float, float, bool]  # x, mean, std, best


def _lines(sweep: Sweep, key: str, best: Row | None) -> tuple[dict[str, list[Point]], dict]:
    """The points of each line (label → points) and the x ticks (value → as typed); rows
    whose options ignore `key` are left out (`_levels` draws them)."""
    others = [k for k in sweep.keys if k != key]
    lines: dict[str, list[Point]] = {}
    ticks: dict[float, str] = {}
    for row in sweep.rows:
        stat, x = row.stat(sweep.metric), as_number(row.values[key])
        if stat is not None and x is not None:
            ticks.setdefault(x, row.values[key])
            label = ", ".join(row.values[k] for k in others) or "mean ± std over seeds"
            lines.setdefault(label, []).append((x, stat[0], stat[1] or 0.0, row is best))
    return lines, ticks


def _levels(ax: Any, sweep: Sweep, key: str) -> list[Any]:
    """A dashed grey level for each configuration without a value of `key` (its options
    ignore it, or it is unset): grey, so it is not read as one of the lines."""
    others = [k for k in sweep.keys if k != key]
    handles = []
    for i, row in enumerate(r for r in sweep.rows if as_number(r.values[key]) is None):
        stat = row.stat(sweep.metric)
        if stat is not None:
            how = "ignored" if row.values[key] == IGNORED else "unset"
            label = ", ".join(row.values[k] for k in others) + f" ({key} {how})"
            handles.append(
                ax.axhline(stat[0], ls=("--", ":", "-.")[i % 3], color="0.35", label=label)
            )
    return handles


def _axes(ax: Any, sweep: Sweep, key: str, ticks: dict[float, str], scale: str) -> None:
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


def _plot_against(ax: Any, sweep: Sweep, key: str, best: Row | None) -> None:
    """The metric against numeric `key`: one line per value of the other swept keys."""
    lines, ticks = _lines(sweep, key, best)
    scale = x_scale(ticks)
    handles = []
    for i, (label, points) in enumerate(lines.items()):
        x, y, err, is_best = zip(*sorted(points), strict=True)
        x = _dodge(list(x), list(ticks), scale, i, len(lines))
        handles.append(ax.errorbar(x, y, yerr=err, marker="o", ms=5, capsize=3, label=label))
        stars = [(xb, yb) for xb, yb, b in zip(x, y, is_best, strict=True) if b]
        handles += [h for xb, yb in stars for h in ax.plot([xb], [yb], "*", **BEST_STAR)]
    handles += _levels(ax, sweep, key)
    handles.sort(key=lambda h: h.get_label() == "best")  # the star last in the legend
    _axes(ax, sweep, key, ticks, scale)
    title = ", ".join(k for k in sweep.keys if k != key) or None
    ax.legend(handles=handles, title=title, fontsize="small", title_fontsize="small")


def _bar_chart(ax: Any, sweep: Sweep, best: Row | None) -> None:
    """One horizontal bar per configuration (no numeric key to plot against)."""
    from matplotlib.patches import Patch

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
    over = f"mean ± std over {sweep.over()}"
    handles = [Patch(color="C1", label="best")] if best is not None else []
    handles.append(Patch(color="C0", label=over))
    ax.figure.legend(handles=handles, fontsize="small", loc="outside lower center", ncols=2)


def figure(sweep: Sweep, analysis: Analysis | None = None) -> Any:
    """The report's matplotlib Figure (no pyplot: no global state, no display needed)."""
    from matplotlib.figure import Figure

    best = (analysis or analyse(sweep)).best
    numeric = plot_keys(sweep)
    if numeric:
        ncols = min(2, len(numeric))
        nrows = math.ceil(len(numeric) / ncols)
        fig = Figure(figsize=(8.0 if ncols == 1 else 9.5, 0.6 + 4.2 * nrows), layout="constrained")
        axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
        for ax, key in zip(axes, numeric, strict=False):
            _plot_against(ax, sweep, key, best)
        for ax in axes[len(numeric) :]:
            ax.set_visible(False)
    else:
        fig = Figure(figsize=(8.0, 2.4 + 0.5 * len(sweep.rows)), layout="constrained")
        _bar_chart(fig.subplots(), sweep, best)
    over = f"mean ± std over {sweep.over()}"
    label = LABELS.get(sweep.metric, sweep.metric)
    fig.suptitle(f"Sweep {sweep_name(sweep.path)}: {label}, {over}", fontweight="bold")
    return fig
