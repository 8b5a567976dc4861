"""Reading a sweep directory: each job's overrides, composed config, metrics and record.

A job directory holds `.hydra/overrides.yaml` (what was typed), `.hydra/config.yaml` (the
composed config), `.hydra/hydra.yaml` (the options chosen), and, once it ran, `metrics.json`
and `run.json` (its status, time, and the keys its options ignore).
"""

import json
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

SEED = "seed"
FOLD = "data.fold"
REPLICATES = (SEED, FOLD)  # what a configuration's statistics are taken over
LOG_TAIL = 5  # lines of train.log shown for a failed job that recorded no error


class ReportError(Exception):
    """The path is not a sweep that a report can be made of; the message is one line."""


@dataclass
class Job:
    """One job directory: its overrides, config and, if it finished, its metrics."""

    path: Path
    overrides: dict[str, str]
    metrics: dict[str, float] | None = None  # None: failed or unfinished
    seconds: float | None = None
    error: str = ""
    config: dict[str, Any] | None = None  # .hydra/config.yaml, as composed (unresolved)
    choices: dict[str, str] = field(default_factory=dict)  # group → option chosen
    ignored: set[str] = field(default_factory=set)  # keys its options accept and ignore

    @property
    def finished(self) -> bool:
        return self.metrics is not None

    @property
    def seed(self) -> str:
        return self.overrides.get(SEED) or str((self.config or {}).get(SEED, 0))

    @property
    def fold(self) -> str:
        return self.overrides.get(FOLD) or str(
            ((self.config or {}).get("data") or {}).get("fold", 0)
        )

    @property
    def folds(self) -> int | None:
        """k of k-fold cross-validation (data.folds), None for the plain split."""
        folds = ((self.config or {}).get("data") or {}).get("folds")
        return int(folds) if isinstance(folds, int) else None

    def choice(self, group: str, default: str) -> str:
        """The option of `group` this job ran: typed, else Hydra's record, else `default`."""
        return self.overrides.get(group) or self.choices.get(group) or default


def load_json(path: Path) -> dict[str, Any]:
    """The JSON object in `path`; {} when the file is missing or unreadable."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def load_yaml(path: Path) -> dict[str, Any]:
    """The YAML mapping in `path`; {} when the file is missing, unreadable or no mapping."""
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
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


def _error(path: Path, run: dict[str, Any], errors: dict[str, str] | None) -> str:
    return (
        run.get("error")
        or (errors or {}).get(str(path.resolve()))
        or _log_tail(path)
        or "no metrics.json, run.json or log lines: it failed before training (the sweep's "
        "console shows why), was killed, or is still running"
    )


def read_job(path: Path, errors: dict[str, str] | None = None) -> Job:
    """A job from its directory; `errors` (job path → error) fills in errors it did not record."""
    hydra = path / ".hydra"
    overrides = parse_overrides(yaml.safe_load((hydra / "overrides.yaml").read_text()) or [])
    config = load_yaml(hydra / "config.yaml") or None
    choices = (load_yaml(hydra / "hydra.yaml").get("hydra") or {}).get("runtime", {})
    run = load_json(path / "run.json")
    job = Job(path, overrides, seconds=run.get("seconds"), config=config)
    job.choices = {str(k): str(v) for k, v in (choices.get("choices") or {}).items()}
    job.ignored = {str(k) for k in run.get("ignored") or []}
    metrics = load_json(path / "metrics.json")
    if metrics and run.get("status") != "failed":
        job.metrics = {k: float(v) for k, v in metrics.items() if isinstance(v, int | float)}
    else:
        job.error = _error(path, run, errors)
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
