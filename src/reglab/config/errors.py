"""The errors a run reports in one line (`cli` prints them without a traceback)."""

import signal
from collections.abc import Callable


def first_line(err: BaseException) -> str:
    """The first line of an exception's message ("" if it has none): what a one-line error
    quotes of a library's (often multi-line) one."""
    text = str(err).strip()
    return text.splitlines()[0] if text else ""


class ConfigError(ValueError):
    """A config value outside its allowed range: the message names the key and what is allowed."""


class RunFailed(RuntimeError):
    """Training stopped on an error after the run directory was set up; logs are kept."""


class Interrupted(RunFailed):
    """The run was signalled (preemption, Ctrl-C, a scheduler's time limit) and saved its
    latest state to checkpoints/last.ckpt at `step`; `resume=` continues it from there.

    `pass_on`: what else the signal should do once the run has recorded it (call the handler
    installed before reglab's: submitit's requeues the job, and SLURM then stops the process
    at once, so it must come after run.json is written)."""

    def __init__(
        self, signum: int, step: int, run_dir: str, pass_on: Callable[[], None] | None = None
    ) -> None:
        self.signum, self.step, self.run_dir = signum, step, run_dir
        self.pass_on = pass_on or (lambda: None)
        name = signal.Signals(signum).name
        super().__init__(
            f"interrupted by {name} at step {step}; its latest state is in"
            f" {run_dir}/checkpoints/last.ckpt (continue it: python train.py resume={run_dir})"
        )

    @property
    def exit_code(self) -> int:
        return 128 + self.signum  # what a shell reports for a process the signal ended
