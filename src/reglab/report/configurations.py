"""Which jobs are one configuration, and what the table shows of each.

Two jobs are one configuration when their composed configs are equal once the replicates
(`seed`, `data.fold`) and the keys their options ignore are taken out: `regularizer.alpha`
under `regularizer=none` (run.json's `ignored`, from the option's class) changes nothing, so
`regularizer=none regularizer.alpha=1e-4` and `…=1e-3` are one row. Jobs without a composed
config (hand-made directories) are grouped by their overrides in the same way.
"""

import copy
import json
import math
from typing import Any

from reglab.report.jobs import REPLICATES, Job

MISSING = "—"
IGNORED = "(ignored)"  # a swept key that this configuration's options do not use


def as_number(value: str) -> float | None:
    """The override value as a finite number, or None for a categorical value."""
    try:
        x = float(value)
    except ValueError:
        return None
    return x if math.isfinite(x) else None


def _target(config: dict[str, Any] | None, key: str) -> Any:
    """The `_target_` of the group holding dotted `key` (`regularizer.alpha` → regularizer's)."""
    group = (config or {}).get(key.split(".", 1)[0])
    return group.get("_target_") if isinstance(group, dict) else None


def share_ignored(jobs: list[Job]) -> None:
    """A job that failed before writing run.json ignores what jobs of its options recorded."""
    recorded = {(k, _target(j.config, k)) for j in jobs for k in j.ignored}
    for job in jobs:
        job.ignored |= {k for k, target in recorded if target and _target(job.config, k) == target}


def _drop(config: dict[str, Any], key: str) -> None:
    """Delete dotted `key` from a nested mapping, if it is there."""
    *parents, last = key.split(".")
    for part in parents:
        config = config.get(part) if isinstance(config, dict) else None
    if isinstance(config, dict):
        config.pop(last, None)


def identity(job: Job) -> str:
    """What makes a configuration: the composed config (else the overrides) without the
    replicates and the ignored keys, as canonical JSON."""
    if job.config is None:
        skip = {*REPLICATES, *job.ignored}
        return json.dumps({k: v for k, v in job.overrides.items() if k not in skip})
    config = copy.deepcopy(job.config)
    for key in (*REPLICATES, *job.ignored):
        _drop(config, key)
    return json.dumps(config, sort_keys=True, default=str)


def shown(job: Job, key: str) -> str:
    """A swept key's value in the table: as typed, `(ignored)`, or `—` when not set."""
    if key in job.ignored:
        return IGNORED
    return job.overrides.get(key, MISSING)


def swept_keys(jobs: list[Job]) -> tuple[list[str], dict[str, str]]:
    """(keys whose shown value differs between jobs, keys every job sets alike), in the
    order typed; the replicates are neither."""
    keys = list(dict.fromkeys(k for j in jobs for k in j.overrides if k not in REPLICATES))
    values = {k: list(dict.fromkeys(shown(j, k) for j in jobs)) for k in keys}
    varying = [k for k in keys if len(values[k]) > 1]
    fixed = {k: values[k][0] for k in keys if len(values[k]) == 1}
    return varying, fixed


def numeric_key(values: list[str]) -> bool:
    """Whether a key's values are numbers (`(ignored)` and `—` aside, if any is one)."""
    numbers = [v for v in values if v not in (IGNORED, MISSING)]
    return bool(numbers) and all(as_number(v) is not None for v in numbers)


def order(values: list[dict[str, str]], keys: list[str]) -> list[int]:
    """Indices of the rows' `values`, sorted by number (unset or ignored first) for numeric
    keys and by first use for the others."""
    first_use = {k: list(dict.fromkeys(v[k] for v in values)) for k in keys}
    numeric = {k: numeric_key(first_use[k]) for k in keys}

    def rank(i: int) -> tuple[float, ...]:
        row = values[i]
        return tuple(
            (as_number(row[k]) if as_number(row[k]) is not None else -math.inf)
            if numeric[k]
            else first_use[k].index(row[k])
            for k in keys
        )

    return sorted(range(len(values)), key=rank)
