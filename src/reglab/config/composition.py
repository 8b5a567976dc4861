"""The config of a run: composed from overrides (`reglab.compose`), or that of a run to resume."""

from collections.abc import Sequence
from pathlib import Path

from hydra import compose as hydra_compose
from hydra import initialize_config_dir
from hydra.core.hydra_config import HydraConfig
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
    prev = last.with_name("last.prev.ckpt")
    if not saved.is_file() or not (last.exists() or prev.exists()):
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
    overridden = command_line_keys()
    changed = changed_keys(cfg, resumed, overridden)
    if changed:
        raise ConfigError(
            f"resume={cfg.resume} continues that run as it was configured; the command line"
            f" changes {', '.join(changed)} (allowed: no other overrides than"
            f" {' and '.join(RESUMABLE)})"
        )
    with open_dict(resumed):
        resumed.resume = str(run_dir)
        resumed.output_dir = str(run_dir)
        for key in set(RESUMABLE[1:]) & set(overridden):  # a run may be continued for longer
            OmegaConf.update(resumed, key, OmegaConf.select(cfg, key), merge=False)
    return resumed


RESUMABLE = ("resume", "trainer.max_epochs")  # the overrides a resumed run takes


def command_line_keys() -> list[str]:
    """The keys (or groups) the command line overrides, when Hydra's command line ran."""
    if not HydraConfig.initialized():
        return []
    overrides = HydraConfig.get().overrides.task
    return [o.split("=", 1)[0].lstrip("+~").split("@", 1)[0] for o in overrides]


def changed_keys(cfg: DictConfig, resumed: DictConfig, keys: list[str]) -> list[str]:
    """The keys among `keys` whose value in `cfg` differs from the resumed run's."""

    def value(conf: DictConfig, key: str) -> object:
        node = OmegaConf.select(conf, key, default=None, throw_on_missing=False)
        return OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node

    keys = [k for k in keys if k not in RESUMABLE and not k.startswith("hydra")]
    return [k for k in keys if value(cfg, k) != value(resumed, k)]
