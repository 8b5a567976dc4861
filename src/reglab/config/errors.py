"""The two errors a run reports in one line (`cli` prints them without a traceback)."""


class ConfigError(ValueError):
    """A config value outside its allowed range: the message names the key and what is allowed."""


class RunFailed(RuntimeError):
    """Training stopped on an error after the run directory was set up; logs are kept."""
