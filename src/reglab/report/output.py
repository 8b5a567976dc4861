"""Writing the report: report.md, report.json and report.png into the sweep directory."""

import json
import math
from pathlib import Path
from typing import Any

from reglab.report.compare import Analysis, Comparison, analyse
from reglab.report.markdown import render_markdown
from reglab.report.plot import figure
from reglab.report.sweep import Row, Sweep, load_sweep

DPI = 120


def _number(x: float | None) -> float | None:
    """JSON has no NaN or infinity: those become null."""
    return x if x is not None and math.isfinite(x) else None


def _vs_control(c: Comparison, higher_is_better: bool) -> dict[str, Any]:
    fields = {k: _number(getattr(c, k)) for k in ("diff", "ci_low", "ci_high", "p_value", "p_holm")}
    return {"n": c.n, **fields, "verdict": c.verdict(higher_is_better)}


def _stat(row: Row, key: str | None) -> dict[str, Any]:
    stat = row.stat(key) if key else None
    mean, std = stat if stat else (None, None)
    return {"mean": _number(mean), "std": _number(std)}


def _configuration(sweep: Sweep, analysis: Analysis, row: Row) -> dict[str, Any]:
    """One configuration: its overrides, runs, mean and std, and its comparison."""
    comparison = analysis.comparisons.get(id(row))
    n = len(row.replicates(sweep.metric))  # seeds × folds: what mean and std are over
    entry = {"overrides": row.overrides(), "n": n, "runs": len(row.finished)}
    entry |= _stat(row, sweep.metric)
    if sweep.test_metric:
        entry["test"] = {"metric": sweep.test_metric, **_stat(row, sweep.test_metric)}
    entry["control"] = row is analysis.control
    vs = _vs_control(comparison, sweep.higher_is_better) if comparison else None
    entry["vs_control"] = vs
    if analysis.tasks:  # multi-task sweeps of different task sets: per task instead
        tasks = {key: by_row.get(id(row)) for key, by_row in analysis.tasks.items()}
        found = {k: _vs_control(c, k.endswith("/acc")) for k, c in tasks.items() if c}
        entry["vs_control_tasks"] = found
    return entry


def report_json(sweep: Sweep, analysis: Analysis) -> dict[str, Any]:
    """report.json: the table and the comparisons, machine-readable."""
    best = analysis.best
    return {
        "sweep": str(sweep.path),
        "metric": sweep.metric,
        "higher_is_better": sweep.higher_is_better,
        "folds": sweep.folds,
        "selection": "cross-validation" if sweep.folds else "better than the control",
        "configurations": [_configuration(sweep, analysis, r) for r in sweep.rows],
        "control": analysis.control.overrides(),
        "best": best.overrides() if best is not None else None,
    }


def write_report(
    sweep_dir: str | Path, errors: dict[str, str] | None = None, control: str | None = None
) -> Path:
    """Write report.md, report.json and report.png into `sweep_dir`; return report.md's path.
    `control`: `key=value …` naming the configuration to compare the others with."""
    sweep = load_sweep(sweep_dir, errors)
    analysis = analyse(sweep, control)
    figure(sweep, analysis).savefig(sweep.path / "report.png", dpi=DPI)
    document = json.dumps(report_json(sweep, analysis), indent=2)
    (sweep.path / "report.json").write_text(document + "\n")
    markdown = sweep.path / "report.md"
    markdown.write_text(render_markdown(sweep, analysis))
    return markdown
