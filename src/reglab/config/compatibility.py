"""Checks across config groups: choices that are each allowed but cannot go together (a
model and the data it is given, a training step's strategies and the model or ensemble)."""

from typing import Any

from omegaconf import DictConfig, OmegaConf

from reglab.config.errors import ConfigError
from reglab.config.rules import is_int, is_number, show

TASK_KINDS = ("classification", "regression")


def model_kind(cfg: DictConfig) -> str:
    target = str(OmegaConf.select(cfg, "model._target_", default="") or "")
    return {"MultiTaskNet": "multitask", "Autoencoder": "autoencoder"}.get(
        target.rsplit(".", 1)[-1], "single"
    )


def validate_model_data(cfg: DictConfig) -> None:
    """Multi-task and semi-supervised models against the data they are given."""
    kind, tasks = model_kind(cfg), OmegaConf.select(cfg, "data.tasks", default=None)
    if kind == "multitask" or tasks is not None:
        _validate_tasks(cfg, tasks)
    _validate_data_task(cfg, kind)
    _validate_model_strategies(cfg, kind)


def _validate_data_task(cfg: DictConfig, kind: str) -> None:
    """A multi-task model for multi-task data only, and an autoencoder for classes."""
    if kind == "multitask" and cfg.data.task != "multitask":
        raise ConfigError(
            f"model=multitask needs a data set with tasks, not data.task={cfg.data.task}"
            " (allowed: data=digits_multitask or data=synthetic_multitask)"
        )
    if cfg.data.task == "multitask" and kind != "multitask":
        raise ConfigError(
            "data.task=multitask has one target per task: a single-output model cannot fit"
            " them (allowed: model=multitask; data.use_tasks=[name] for one task)"
        )
    if kind == "autoencoder" and cfg.data.task != "classification":
        raise ConfigError(
            f"model=autoencoder classifies, not data.task={cfg.data.task}"
            " (allowed: a classification data set, e.g. data=digits)"
        )


def _validate_model_strategies(cfg: DictConfig, kind: str) -> None:
    """Bagging, the objective and dropout inference against a composite model."""
    # bagging's members are any network of one output, on one loss (models.Ensemble);
    # multi-task and semi-supervised objectives train networks of several
    if kind != "single" and OmegaConf.select(cfg, "ensemble.members"):
        raise ConfigError(
            f"ensemble=bagging votes over networks of one output, not model={kind}"
            " (allowed: any other model, e.g. model=mlp, model=cnn or your own nn.Module;"
            " or ensemble=none)"
        )
    objective = str(OmegaConf.select(cfg, "objective._target_", default="") or "")
    if kind == "multitask" and objective and not objective.endswith("MultiTaskModule"):
        raise ConfigError(
            f"model=multitask has one head per task: objective={objective.rsplit('.', 1)[-1]}"
            " trains one output (allowed: objective=multitask, the model's own choice)"
        )
    if kind == "multitask" and cfg.get("inference"):
        raise ConfigError(
            "inference=mc samples one output distribution, not model=multitask's several"
            " (allowed: inference=weight_scaling)"
        )


def _step_strategies(cfg: DictConfig, transforms: list[str]) -> dict[str, bool]:
    """Which of a step's strategies act on the labels, the inputs or the hidden units."""

    def select(key: str) -> Any:
        return OmegaConf.select(cfg, key, default=None)

    return {
        "noise=labels": select("noise.smoothing") is not None,
        **{f"augmentation={name}": True for name in transforms if name in ("mixup", "cutmix")},
        "adversarial": select("adversarial.method") not in (None, "none"),
        "adversarial.evaluate": bool(select("adversarial.evaluate")),
        "representation=l1": (select("representation.alpha") or 0) > 0,
    }


def validate_step_strategies(cfg: DictConfig, transforms: list[str]) -> None:
    """Label smoothing and mixing need class labels or one regression target; attacks one
    network's loss; bagging's vmapped members take only noise."""
    used = [name for name, on in _step_strategies(cfg, transforms).items() if on]
    if "noise=labels" in used and cfg.data.task != "classification":
        raise ConfigError(
            f"noise=labels smooths class labels, not data.task={cfg.data.task}"
            " (allowed: noise=none or noise=weights; a classification data set)"
        )
    kind = model_kind(cfg)
    label_users = [n for n in used if n != "representation=l1"]
    if kind != "single" and label_users:
        raise ConfigError(
            f"{label_users[0]} acts on one network's labels and loss, not model={kind}'s"
            " (allowed: noise=none|weights, augmentation without mixup or cutmix,"
            " adversarial=none with adversarial.evaluate=null)"
        )
    bagged = [n for n in used if n != "noise=labels"]
    if OmegaConf.select(cfg, "ensemble.members") and bagged:
        raise ConfigError(
            f"ensemble=bagging trains with noise only, not {bagged[0]}"
            " (allowed: noise=weights|labels; or ensemble=none)"
        )


def _validate_tasks(cfg: DictConfig, tasks: Any) -> None:
    """data.tasks: a non-empty mapping name → {kind, outputs, weight ≥ 0}, one weight > 0."""
    if not tasks:
        raise ConfigError(
            f"data.tasks={show(tasks)} declares no task (allowed: a mapping name →"
            " {kind, outputs, weight}, e.g. data=digits_multitask)"
        )
    for name, spec in tasks.items():
        _validate_task(f"data.tasks.{name}", str(name), spec)
    used = OmegaConf.select(cfg, "data.use_tasks", default=None)
    if used is not None and (not used or any(n not in tasks for n in used)):
        raise ConfigError(
            f"data.use_tasks={show(list(used))} is not allowed (allowed: null or a non-empty"
            f" list of {', '.join(tasks)})"
        )
    if not any(tasks[n].get("weight", 1.0) > 0 for n in (used or tasks)):
        raise ConfigError(
            "data.tasks: every weight is 0, nothing would be trained (allowed: a weight > 0)"
        )


def _validate_task(key: str, name: str, spec: Any) -> None:
    """One task of data.tasks (at `key`): its name, kind, outputs and weight."""
    if not name.isidentifier():
        raise ConfigError(f"{key}: the name is not allowed (allowed: a Python identifier)")
    if spec.get("kind") not in TASK_KINDS:
        raise ConfigError(
            f"{key}.kind={spec.get('kind')} is not allowed (allowed: {' or '.join(TASK_KINDS)})"
        )
    least = 2 if spec.kind == "classification" else 1
    if not (is_int(spec.get("outputs")) and spec.outputs >= least):
        raise ConfigError(
            f"{key}.outputs={spec.get('outputs')} is not allowed (allowed: an integer ≥"
            f" {least} for {spec.kind})"
        )
    weight = spec.get("weight", 1.0)
    if not (is_number(weight) and weight >= 0):
        raise ConfigError(f"{key}.weight={weight} is not allowed (allowed: a number ≥ 0)")
