"""The command line, `python train.py …`: Hydra's entry point, light to import.

Only Hydra, OmegaConf and `reglab.config` load with this module; torch and Lightning
(`reglab.engine`) load when a job runs: the import inside `_hydra_entry` is for that, not
to dodge a cycle (the engine never imports the command line). A `-m` sweep's launching
process then needs no torch at all, and under `hydra/launcher=joblib` the workers import it
side by side instead of after the launcher has (about 5 s of imports on this project's
2-core machines).
"""

import json
import logging
import math
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.errors import CompactHydraException
from hydra.types import RunMode
from omegaconf import DictConfig, open_dict

from reglab.config import CONFIG_DIR, ConfigError, Interrupted, RunFailed, resume_config, validate

log = logging.getLogger("reglab")


class JobFailed(CompactHydraException):
    """A sweep job's ConfigError or RunFailed, as Hydra re-raises it when the sweep ends:
    Hydra prints a compact exception as its message alone, where it would print any other
    with a traceback. The job's own error is its `__cause__` (the report shows that)."""


def _check(cfg: DictConfig) -> None:
    """The config's rules (and a resume's changed keys), before torch loads: a bad value
    fails in a second, not after the imports (the engine checks them again, for Python)."""
    validate(resume_config(cfg) if cfg.get("resume") else cfg)


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="train")
def _hydra_entry(cfg: DictConfig) -> float | None:
    with open_dict(cfg):
        cfg.output_dir = HydraConfig.get().runtime.output_dir
    multirun = HydraConfig.get().mode == RunMode.MULTIRUN
    try:
        _check(cfg)
        from reglab.engine.training import train  # torch loads here, in the job, not before

        metrics = train(cfg)
    except Interrupted as err:  # a sweep stops too: the signal was for the whole process
        print(f"reglab: {err}", file=sys.stderr)
        sys.exit(err.exit_code)
    except (ConfigError, RunFailed) as err:
        if multirun:
            _record_failure(Path(cfg.output_dir), err)
            # Hydra records the failed job and the sweep goes on
            raise JobFailed(f"reglab: error: {type(err).__name__}: {err}") from err
        print(f"reglab: error: {err}", file=sys.stderr)
        sys.exit(2 if isinstance(err, ConfigError) else 1)
    objective = metrics.get(cfg.get("optimized_metric") or "", None)
    # a sweeper cannot rank NaN (hydra-optuna-sweeper crashes on it): the job fails instead
    if multirun and math.isnan(objective or 0.0):
        err = RunFailed(f"{cfg.optimized_metric} is NaN, which a sweeper cannot rank")
        raise JobFailed(f"reglab: error: RunFailed: {err}") from err
    return objective


def _record_failure(job_dir: Path, err: Exception) -> None:
    """A sweep job's error in its own directory (run.json, its log), where the sweep report
    reads it: under joblib or SLURM the job runs in another process than the report's
    callback, which never sees Hydra's job return. A run.json the run wrote is kept."""
    log.error("%s: %s", type(err).__name__, err)
    record = job_dir / "run.json"
    if not record.exists():
        job_dir.mkdir(parents=True, exist_ok=True)
        error = f"{type(err).__name__}: {err}"
        record.write_text(json.dumps({"status": "failed", "error": error}, indent=2) + "\n")


def main() -> None:
    _hydra_entry()


if __name__ == "__main__":
    main()
