"""The config of a run: composed from overrides (`reglab.compose`), or that of a run to resume."""

from collections.abc import Sequence
from pathlib import Path

from hydra import compose as hydra_compose
from hydra import initialize_config_dir
from omegaconf import DictConfig, OmegaConf, open_dict

from reglab.config.errors import ConfigError
from reglab.config.paths import CONFIG_DIR, RUN_CONFIG


def compose(overrides: Sequence[str] = (), output_dir: str | Path | None = None) -> DictConfig:
    """The config `python train.py OVERRIDES…` would run, for use from Python (`reglab.train`)."""
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = hydra_compose(config_name="train", overrides=list(overrides))
    if output_dir is not None:
        with open_dict(cfg):
            cfg.output_dir = str(output_dir)
    return cfg


def resume_config(cfg: DictConfig) -> DictConfig:
    """The config of the run `cfg.resume` names, to continue it as it was (Hydra rewrites
    .hydra/ in that directory with the new command line before the run starts)."""
    run_dir = Path(cfg.resume)
    saved, last = run_dir / RUN_CONFIG, run_dir / "checkpoints" / "last.ckpt"
    if not saved.is_file() or not last.exists():
        raise ConfigError(
            f"resume={cfg.resume}: no {RUN_CONFIG} and checkpoints/last.ckpt there"
            " (allowed: the directory of a reglab run that saved a checkpoint)"
        )
    resumed = OmegaConf.load(saved)
    if "objective" not in resumed:  # its _target_s name modules that have moved since
        raise ConfigError(
            f"resume={cfg.resume}: that run was written by a reglab before the layered layout"
            " (no `objective` in its config.yaml) and cannot be resumed by this one (allowed:"
            " a run directory written by this version; rerun the old one from its .hydra/)"
        )
    with open_dict(resumed):
        resumed.resume = str(run_dir)
        resumed.output_dir = str(run_dir)
    return resumed
