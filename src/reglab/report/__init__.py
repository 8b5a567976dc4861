"""The sweep report: what a `-m` sweep found, and which differences are more than noise.

`SweepReport` (the Hydra callback of conf/train.yaml) writes it when a sweep ends;
`python -m reglab.report SWEEP_DIR [--control KEY=VALUE…]` writes it on demand (command.py).

    jobs.py            a job directory: overrides, composed config, metrics, run.json
    configurations.py  which jobs are one configuration (ignored keys and replicates out)
    sweep.py           rows, the metric to rank by (validation under k-fold CV)
    compare.py         the control, paired t-tests, Holm's correction, the best row
    markdown.py · plot.py · output.py   report.md, report.png, report.json
"""

from reglab.report.callback import SweepReport
from reglab.report.command import USAGE, main
from reglab.report.compare import Analysis, Comparison, analyse, holm, paired
from reglab.report.formatting import fmt_mean_std
from reglab.report.jobs import ReportError, find_jobs, read_job
from reglab.report.output import report_json, write_report
from reglab.report.plot import figure, x_scale
from reglab.report.sweep import Row, Sweep, load_sweep

__all__ = [
    "USAGE",
    "Analysis",
    "Comparison",
    "ReportError",
    "Row",
    "Sweep",
    "SweepReport",
    "analyse",
    "figure",
    "find_jobs",
    "fmt_mean_std",
    "holm",
    "load_sweep",
    "main",
    "paired",
    "read_job",
    "report_json",
    "write_report",
    "x_scale",
]
