"""The command line, `python train.py …`: Hydra's entry point, light to import.

Only Hydra and OmegaConf load with this module; torch and Lightning (`reglab.training`) load
when a job runs. A `-m` sweep's launching process then needs no torch at all, and under
`hydra/launcher=joblib` the workers import it side by side instead of after the launcher
has (about 5 s of imports on this project's 2-core machines).
"""

import math
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf, open_dict

CONFIG_DIR = Path(__file__).resolve().parents[2] / "conf"

# `hydra.run.dir: ${resume_or:${resume},outputs/…}`: a resumed run continues in its own directory
OmegaConf.register_new_resolver("resume_or", lambda path, default: path or default, replace=True)


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="train")
def _hydra_entry(cfg: DictConfig) -> float | None:
    from reglab.config import ConfigError
    from reglab.training import RunFailed, train

    with open_dict(cfg):
        cfg.output_dir = HydraConfig.get().runtime.output_dir
    multirun = HydraConfig.get().mode == RunMode.MULTIRUN
    try:
        metrics = train(cfg)
    except (ConfigError, RunFailed) as err:
        if multirun:
            raise  # Hydra records the failed job and the sweep goes on
        print(f"reglab: error: {err}", file=sys.stderr)
        sys.exit(2 if isinstance(err, ConfigError) else 1)
    objective = metrics.get(cfg.get("optimized_metric") or "", None)
    # a sweeper cannot rank NaN (hydra-optuna-sweeper crashes on it): the job fails instead
    if multirun and math.isnan(objective or 0.0):
        raise RunFailed(f"{cfg.optimized_metric} is NaN, which a sweeper cannot rank")
    return objective


def main() -> None:
    _hydra_entry()


if __name__ == "__main__":
    main()
