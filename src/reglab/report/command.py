"""`python -m reglab.report SWEEP_DIR [--control KEY=VALUE…]`: write the report on demand.

    python train.py -m regularizer=none,l1,l2 regularizer.alpha=1e-4,1e-3 seed=0,1,2
    python -m reglab.report outputs/multirun/2026-01-01/12-00-00
    python -m reglab.report outputs/multirun/2026-01-01/12-00-00 --control regularizer=l2

It writes report.md, report.json and report.png into the sweep directory: one row per
configuration (mean ± std over seeds, or over folds with data.folds), each configuration
against the control (by default the regularizer=none configuration with the fewest other
overrides: paired difference over shared seeds, its 95 % CI, the paired t-test's p-value
and Holm's correction), and the best configuration only where it is better than the control
at 5 % (under k-fold cross-validation: the one with the best mean validation metric).
"""

import sys

import yaml

from reglab.report.callback import one_line
from reglab.report.jobs import ReportError
from reglab.report.output import write_report

USAGE = (
    "usage: python -m reglab.report SWEEP_DIR [--control 'KEY=VALUE …']"
    "   (e.g. outputs/multirun/2026-01-01/12-00-00 --control regularizer=none)"
)


def parse_args(args: list[str]) -> tuple[str, str | None] | None:
    """(sweep directory, control spec or None); None when the arguments do not fit USAGE."""
    control = None
    rest = []
    words = iter(args)
    for word in words:
        if word == "--control":
            control = next(words, None)
            if control is None:
                return None
        elif word.startswith("--control="):
            control = word.removeprefix("--control=")
        else:
            rest.append(word)
    return (rest[0], control) if len(rest) == 1 and not rest[0].startswith("-") else None


def main(argv: list[str] | None = None) -> int:
    """Write the report; one error line for bad input."""
    args = sys.argv[1:] if argv is None else argv
    if args and args[0] in ("-h", "--help"):
        print(USAGE)
        print(__doc__)
        return 0
    parsed = parse_args(args)
    if parsed is None:
        print(USAGE, file=sys.stderr)
        return 2
    try:
        markdown = write_report(parsed[0], control=parsed[1])
    except (ReportError, OSError, yaml.YAMLError) as err:
        print(f"reglab.report: error: {one_line(err)}", file=sys.stderr)
        return 1
    written = ", ".join(str(markdown.with_name(f"report.{ext}")) for ext in ("md", "json"))
    print(f"wrote {written} and {markdown.with_name('report.png')}")
    return 0
