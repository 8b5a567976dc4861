"""`SweepReport`, the Hydra callback that writes the report when a `-m` sweep ends
(registered in conf/train.yaml under `hydra.callbacks.report`)."""

import atexit
import contextlib
import logging
import os
from pathlib import Path
from typing import Any

from hydra.core.utils import JobReturn, JobStatus
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from reglab.report.output import write_report

log = logging.getLogger("reglab.report")


def one_line(err: BaseException) -> str:
    return " ".join(str(err).split()) or type(err).__name__


class SweepReport(Callback):
    """Hydra callback: write the sweep report when a `-m` sweep ends, and print its path.

    When a job fails, Hydra's sweeper re-raises its error after the last job and skips
    `on_multirun_end`; the report is then written at exit. Errors of jobs that failed before
    writing run.json (a bad config value) are kept from Hydra's job returns. The report never
    stops a sweep: a problem making it is one warning line.
    """

    def __init__(self, control: str | None = None) -> None:
        self.control = control  # `key=value …`: the configuration the others are compared with
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
            err = err.__cause__ or err  # the job's own error, not the CLI's wrapper of it
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
            markdown = write_report(self.sweep_dir, self.errors, self.control)
        except Exception as err:
            log.warning("reglab.report: no sweep report for %s: %s", self.sweep_dir, one_line(err))
            return None
        print(f"sweep report: {markdown} (plot: {markdown.with_name('report.png')})", flush=True)
        return markdown
