"""A run, composed from its config: data → model → regularizer → objective → Trainer.

Composition only; nothing here trains. `build(cfg)` makes the pieces of one run,
`build_module` and `build_trainer` (engine/trainer.py: the Trainer, its callbacks and
loggers) make more of them for a protocol's later phases.
Strategies come from the config's `_target_`s, never from an import here: the network
(`model`), its objective (`objective`: the LightningModule class) and how many members train
(`ensemble`: `SingleModel`, or e.g. `engine.bagging.Bagging`).
"""

import logging
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from hydra.errors import InstantiationException
from hydra.utils import get_object, instantiate
from omegaconf import DictConfig, OmegaConf, open_dict
from pytorch_lightning.utilities import rank_zero_only

from reglab.config import RUN_CONFIG, ConfigError, first_line, resume_config, validate
from reglab.data.augmentation import Augmentation
from reglab.data.datamodule import DataModule
from reglab.engine import distributed
from reglab.engine.speed import check_layout
from reglab.engine.trainer import build_callbacks, build_loggers, build_trainer
from reglab.models.sizes import accepted_sizes, probe
from reglab.objectives.base import RegLabModule
from reglab.records import check_checkpoint_fits, previous, write_json
from reglab.regularization.dropout import has_dropout

log = logging.getLogger("reglab")


@dataclass
class Run:
    """Everything one run is made of, composed from its config but not yet trained."""

    cfg: DictConfig
    dm: DataModule
    module: RegLabModule
    trainer: pl.Trainer
    run_dir: Path
    ensemble: "SingleModel"  # the ensemble strategy: it picks the protocol too
    ckpt_path: Path | None = None  # resume from this checkpoint (`resume=<run dir>`)

    @property
    def ignored(self) -> list[str]:
        """The config keys the chosen options accept but ignore (a `_target_`'s `ignores`,
        e.g. `regularizer.alpha` under `regularizer=none`), for run.json and the report."""
        return ignored_keys(self.cfg)


def ignored_keys(cfg: DictConfig) -> list[str]:
    """`<group>.<key>` for each key that a group's `_target_` class declares it ignores."""
    keys = []
    for group in cfg:
        target = OmegaConf.select(cfg, f"{group}._target_", default=None)
        try:
            ignores = getattr(get_object(target), "ignores", ()) if target else ()
        except Exception:  # a target that does not import: `build` has said so already
            continue
        keys += [f"{group}.{key}" for key in ignores if isinstance(ignores, tuple)]
    return keys


class SingleModel:
    """`ensemble=none`: one network in the configured objective, trained by the configured
    protocol. An ensemble strategy (`ensemble._target_`) answers the same two questions."""

    def module(self, cfg: DictConfig, dm: DataModule) -> RegLabModule:
        return build_module(cfg, dm)

    def protocol(self, configured: Any) -> Any:
        return configured


def quiet_libraries() -> None:
    # Lightning's device banner and product tips are INFO; our own lines carry what matters
    logging.getLogger("pytorch_lightning").setLevel(logging.WARNING)
    logging.getLogger("lightning_fabric").setLevel(logging.WARNING)
    for message in (
        ".*does not have many workers.*",  # in-memory chunks need no workers
        ".*exists and is not empty.*",  # the run directory Hydra just made (holds .hydra/)
        ".*LeafSpec.*",
        ".*`isinstance.*treespec.*",
        # SLURM jobs are started by submitit (hydra/launcher=slurm), not by `srun python …`
        ".*The `srun` command is available on your system but is not used.*",
    ):
        warnings.filterwarnings("ignore", message=message)


def model_sizes(dm: DataModule) -> dict[str, Any]:
    """What the data says about a network's shape: `in_features` (C·H·W for images) and
    `out_features` always, `in_channels` and `image_shape` for image data, `tasks` for
    multi-task data."""
    sizes: dict[str, Any] = {"in_features": dm.n_features, "out_features": dm.n_outputs}
    if dm.image_shape is not None:
        sizes |= {"in_channels": dm.image_shape[0], "image_shape": list(dm.image_shape)}
    if dm.tasks:
        sizes["tasks"] = dm.tasks
    return sizes


def build_net(cfg: DictConfig, dm: DataModule) -> torch.nn.Module:
    """A freshly initialized network (from the current RNG state), sized by the data.

    Any nn.Module can be `model._target_`: its constructor gets the sizes it declares among
    `in_features`, `out_features`, `in_channels`, `image_shape` (and `tasks`, for a
    multi-task network); its forward must map (N, *example shape) to (N, outputs), which a
    forward pass of 2 zero examples checks here (in eval mode, without gradients, RNG or
    BatchNorm statistics touched). A `_target_` that does not import, a model of images on
    tabular data and a wrong output shape are ConfigErrors; so are those of a composite
    network's parts (model.trunk, model.encoder, …: models/sizes.py).
    """
    target = str(cfg.model.get("_target_", ""))
    constructor = import_target("model", target)
    for key, part in cfg.model.items():  # the parts of a composite: model.trunk, model.encoder…
        if isinstance(part, DictConfig) and "_target_" in part:
            import_target(f"model.{key}", str(part._target_))
    sizes = accepted_sizes(constructor, model_sizes(dm), target)
    try:
        net = instantiate(cfg.model, **sizes)
    except InstantiationException as err:  # a composite's part that does not fit: one line
        if isinstance(err.__cause__, ConfigError):
            raise err.__cause__ from None
        raise
    check_output_shape(net, target, dm)
    if cfg.get("inference") and not has_dropout(net):
        raise ConfigError(
            f"inference=mc needs dropout to sample: model {target} has no dropout layer with"
            " p > 0 (allowed: inference=weight_scaling, or a dropout rate in (0, 1), e.g."
            " model.dropout.hidden=0.5)"
        )
    return net


def import_target(key: str, target: str) -> Any:
    """The class `key._target_` names; a one-line ConfigError if it cannot be imported."""
    try:
        return get_object(target)
    except Exception as err:  # Hydra's locate: ImportError, or ValueError for an empty path
        reason = first_line(err) or type(err).__name__
        raise ConfigError(
            f"{key}._target_={target} cannot be imported ({reason}) (allowed: the dotted path"
            " of an nn.Module class importable from the Python path, e.g. reglab.models.MLP)"
        ) from err


@torch.no_grad()
def check_output_shape(net: torch.nn.Module, target: str, dm: DataModule) -> None:
    """ConfigError unless the network maps 2 examples to (2, outputs)."""
    x = torch.zeros(2, *dm.example_shape)
    try:
        out = probe(net, dm.example_shape)
    except Exception as err:
        raise ConfigError(
            f"model {target} fails on input of shape {tuple(x.shape)}: {type(err).__name__}:"
            f" {first_line(err)} (allowed: a forward that maps"
            f" (N, {', '.join(map(str, x.shape[1:]))}) to (N, {dm.n_outputs}))"
        ) from err
    expected = (2, dm.n_outputs)
    shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
    if shape != expected:
        raise ConfigError(
            f"model {target} returned shape {shape} for input of shape {tuple(x.shape)},"
            f" expected {expected} (allowed: a forward that returns (N, outputs))"
        )


def module_kwargs(cfg: DictConfig, dm: DataModule) -> dict[str, Any]:
    """What a module is trained with besides its network: the same for one model or k."""
    scheduler = cfg.get("scheduler") or {}
    return {
        "regularizer": instantiate(cfg.regularizer),
        "optimizer": instantiate(cfg.optimizer),
        "scheduler": instantiate(scheduler.get("scheduler")) if scheduler else None,
        "scheduler_interval": scheduler.get("interval", "epoch"),
        "task": dm.task,
        "n_outputs": dm.n_outputs,
        "batch_size": dm.batch_size,
        "gradient_clip_val": cfg.trainer.get("gradient_clip_val"),
        "gradient_clip_algorithm": cfg.trainer.get("gradient_clip_algorithm") or "norm",
        "inference": instantiate(cfg.inference) if cfg.get("inference") else None,
        "augment": build_augmentation(cfg, dm),
        "constraint": instantiate(cfg.constraint) if cfg.get("constraint") else None,
        # strategies of the training step, each from its own group's _target_
        **{
            group: instantiate(cfg[group]) if cfg.get(group) else None
            for group in ("noise", "representation", "adversarial")
        },
    }


def build_module(cfg: DictConfig, dm: DataModule) -> RegLabModule:
    """A freshly initialized network (from the current RNG state) in its objective, the
    LightningModule `objective._target_` names (the model's config chooses it: a multi-task
    network sums its task losses, an autoencoder adds reconstruction; any other: one J)."""
    net = build_net(cfg, dm)
    objective = instantiate(cfg.objective) if cfg.get("objective") else RegLabModule
    return objective(net=net, **module_kwargs(cfg, dm))


def build_augmentation(cfg: DictConfig, dm: DataModule) -> Augmentation | None:
    """The configured training-batch transforms, in the data's own units for images, each
    checked on 2 zero examples of the data (`Augmentation.checked`)."""
    transforms = (cfg.get("augmentation") or {}).get("transforms") or {}
    if not transforms:
        return None
    return Augmentation.checked(
        {name: instantiate(t) for name, t in transforms.items()},
        example_shape=dm.example_shape,
        image_shape=dm.image_shape,
        mean=dm.feature_mean,
        std=dm.feature_std,
    )


def resume_checkpoint(last: Path) -> Path:
    """last.ckpt if it can be read, else the one before it (last.prev.ckpt: the newest may
    have been cut short by a crash); a one-line ConfigError if neither can."""
    problems = []
    for path in (last, previous(last)):
        try:
            torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # missing, truncated, not a checkpoint: try the previous one
            problems.append(f"{path.name}: {first_line(err) or type(err).__name__}")
            continue
        if path != last:
            log.warning("%s cannot be read (%s): resuming from %s", last, problems[0], path.name)
        return path
    raise ConfigError(
        f"resume={last.parents[1]}: no readable checkpoint ({'; '.join(problems)})"
        " (allowed: a run directory whose checkpoints/last.ckpt or last.prev.ckpt is intact)"
    )


def requeued(run_dir: Path) -> bool:
    """A SLURM job that was requeued (after preemption or timeout) and has a checkpoint."""
    restarts = int(os.environ.get("SLURM_RESTART_COUNT", "0") or 0)
    return restarts > 0 and (run_dir / "checkpoints" / "last.ckpt").exists()


def build(cfg: DictConfig) -> Run:
    """Validate `cfg`, seed, and compose data → model → regularizer → module → Trainer."""
    if not cfg.get("resume") and requeued(Path(cfg.output_dir)):
        with open_dict(cfg):
            cfg.resume = cfg.output_dir  # a preempted SLURM job, started again: continue it
    if cfg.get("resume"):
        cfg = resume_config(cfg)
    validate(cfg)
    quiet_libraries()
    threads = distributed.job_threads(cfg)
    if threads:
        torch.set_num_threads(threads)
    run_dir = Path(cfg.output_dir)
    if rank_zero_only.rank == 0:  # trainer=ddp: one process writes the run (engine/distributed.py)
        run_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(cfg, run_dir / RUN_CONFIG, resolve=True)
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    try:
        # a model with a reconstruction term learns from unlabelled examples too; any
        # other trains on the labelled ones only (`data.labeled_fraction`)
        keep_unlabeled = (cfg.model.get("recon_weight") or 0) > 0
        dm: DataModule = instantiate(cfg.data, keep_unlabeled=keep_unlabeled).prepare()
    except ValueError as err:  # a value the data set cannot satisfy (e.g. data.train_size)
        raise ConfigError(str(err)) from err
    if dm.classes and rank_zero_only.rank == 0:  # what class i is (strings, folder names)
        write_json(run_dir / "classes.json", dict(enumerate(dm.classes)))
    ensemble = instantiate(cfg.ensemble) if cfg.get("ensemble") else SingleModel()
    module = ensemble.module(cfg, dm)
    ckpt = resume_checkpoint(run_dir / "checkpoints" / "last.ckpt") if cfg.get("resume") else None
    if ckpt is not None:  # before anything is logged or written: the run stays as it was
        step = check_checkpoint_fits(ckpt, module)
        log.info("resuming from %s at step %d", ckpt, step)
    log.info(
        "penalized by %r: %s",
        module.regularizer,
        ", ".join(module.weight_names) or "nothing",
    )
    trainer = build_trainer(cfg, dm, build_callbacks(cfg, dm.has("val")), build_loggers(cfg))
    if cfg.trainer.get("channels_last"):
        check_layout(module.net, trainer.strategy.root_device, dm.example_shape)
    return Run(cfg, dm, module, trainer, run_dir, ensemble, ckpt)
