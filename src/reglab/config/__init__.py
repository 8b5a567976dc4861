"""The bottom layer: config paths, composition, the rules every value is checked against
(rules.py) and the checks across keys (validation.py, compatibility.py), and the errors a
run reports. Imports nothing else of reglab, and no torch (the command line's launching
process loads it)."""

from reglab.config.composition import compose, resume_config
from reglab.config.errors import ConfigError, Interrupted, RunFailed, first_line
from reglab.config.paths import CONFIG_DIR, RUN_CONFIG
from reglab.config.rules import ACTIVATIONS, RULES
from reglab.config.validation import validate

__all__ = [
    "ACTIVATIONS",
    "CONFIG_DIR",
    "RULES",
    "RUN_CONFIG",
    "ConfigError",
    "Interrupted",
    "RunFailed",
    "compose",
    "first_line",
    "resume_config",
    "validate",
]
