"""Sweep directories built by hand, and report.md read back, for the report's tests.

A job directory is what the report reads (reglab.report.jobs): `.hydra/overrides.yaml`,
optionally `.hydra/config.yaml` (the composed config) and `.hydra/hydra.yaml` (the chosen
options), `metrics.json`, `run.json` and a log.
"""

import json
import re
import struct
from pathlib import Path

import yaml


def write_job(
    sweep: Path,
    num: int,
    overrides: list[str],
    metrics: dict | None = None,
    run: dict | None = None,
    log: str | None = None,
    config: dict | None = None,
) -> Path:
    job = sweep / str(num)
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    files = {
        "metrics.json": metrics and json.dumps(metrics),
        "run.json": run and json.dumps(run),
        "train.log": log,
        ".hydra/config.yaml": config and yaml.safe_dump(config),
    }
    for name, text in files.items():
        if text is not None:
            (job / name).write_text(text)
    return job


def composed(overrides: list[str], base: dict | None = None) -> dict:
    """A composed config: `base` with each `key=value` override set at its dotted path
    (a group choice `regularizer=l2` sets regularizer._target_), values parsed as Hydra does."""
    config = json.loads(json.dumps(base or {"seed": 0, "regularizer": {"alpha": 0.0}}))
    for override in overrides:
        key, _, value = override.partition("=")
        *parents, last = key.split(".")
        node = config
        for part in parents:
            node = node.setdefault(part, {})
        if not parents and isinstance(node.get(last), dict):
            node[last]["_target_"] = value  # a group's option
        else:
            node[last] = _parse(value)
    return config


def _parse(value: str):
    """A value as Hydra's override grammar reads it (1e-3 is a float, unlike in YAML 1.1)."""
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            pass
    return yaml.safe_load(value)


def cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def table(markdown: str, after: str = "") -> list[dict[str, str]]:
    """The rows of the first table after the text `after`, as column → cell (bold kept)."""
    lines = markdown[markdown.index(after) :].splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("|"))
    end = next((i for i in range(start, len(lines)) if not lines[i].startswith("|")), len(lines))
    head, rule, *rows = lines[start:end]
    assert all(re.fullmatch(r":?-{3,}:?", c) for c in cells(rule)), rule
    assert all(len(cells(r)) == len(cells(head)) for r in rows)
    return [dict(zip(cells(head), cells(row), strict=True)) for row in rows]


def unbold(text: str) -> str:
    return text.removeprefix("**").removesuffix("**")


def parse_mean_std(cell: str) -> tuple[float, float]:
    mean, std = unbold(cell).split(" ± ")
    return float(mean), float(std)


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR", "not a PNG"
    return struct.unpack(">II", data[16:24])
