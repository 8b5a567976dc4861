"""Numbers and names as the report prints them."""

import math
from pathlib import Path


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


def fmt_signed(x: float, like: float) -> str:
    """`+0.0123`: a difference with a sign, to the decimals that `like` (the scale) shows."""
    if like and not 1e-3 <= abs(like) < 1e5:
        return f"{x:+.2e}"
    return f"{x:+.{_decimals(like)}f}"


def fmt_p(p: float) -> str:
    """A p-value: 0.0312, 0.312, or 2.1e-05 below 0.001."""
    return f"{p:.1e}" if p < 1e-3 else f"{p:.3g}"


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


def cell(text: str) -> str:
    """Text for a Markdown table cell (a `|` would end the cell)."""
    return text.replace("|", r"\|")


def sweep_name(path: Path) -> str:
    """`2026-01-01/12-00-00` for Hydra's dated sweep directories, else the directory's name."""
    parent = path.resolve().parent.name
    dated = len(parent) == 10 and parent[4] == parent[7] == "-" and parent[:4].isdigit()
    return f"{parent}/{path.resolve().name}" if dated else path.resolve().name


def row_label(values: dict[str, str], keys: list[str]) -> str:
    return ", ".join(f"{k}={values[k]}" for k in keys) or "all runs"
