"""Config checks in one place: every user-facing key with its allowed values.

Hydra already rejects unknown groups, options and keys; these rules reject values that
compose fine but make no sense. A violation raises `ConfigError`, whose one-line message
names the key, the value and what is allowed; `cli.main` prints it without a traceback.
"""

import importlib.util
from collections.abc import Callable, Sequence
from typing import Any

from omegaconf import DictConfig, OmegaConf

from reglab.config.errors import ConfigError

# the activations models.ACTIVATIONS builds (a test keeps the two lists equal)
ACTIVATIONS = ("relu", "tanh", "sigmoid", "gelu", "elu", "leaky_relu")


def _number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _pair(v: Any) -> bool:
    return isinstance(v, Sequence) and len(v) == 2 and all(_int(h) and h >= 1 for h in v)


Rule = tuple[str, Callable[[Any], bool], str]
# what MLflow's tracking stores accept (`logger=mlflow`)
TRACKING_SCHEMES = ("file", "sqlite", "http", "https", "postgresql", "mysql", "mssql", "databricks")

RULES: Sequence[Rule] = (
    ("seed", lambda v: _int(v) and 0 <= v < 2**32, "an integer in [0, 4294967295]"),
    ("regularizer.alpha", lambda v: _number(v) and v >= 0, "a number ≥ 0"),
    ("regularizer.l1_ratio", lambda v: _number(v) and 0 <= v <= 1, "a number in [0, 1]"),
    ("optimizer.lr", lambda v: _number(v) and v > 0, "a number > 0"),
    ("constraint.radius", lambda v: _number(v) and v > 0, "a number > 0"),
    ("constraint.max_norm", lambda v: _number(v) and v > 0, "a number > 0"),
    ("constraint.per_layer", lambda v: isinstance(v, bool), "true or false"),
    (
        "data.task",
        lambda v: v in ("classification", "regression", "multitask"),
        "classification, regression or multitask",
    ),
    ("data.batch_size", lambda v: _int(v) and v >= 1, "an integer ≥ 1"),
    ("data.eval_batch_size", lambda v: _int(v) and v >= 1, "an integer ≥ 1"),
    ("data.val_fraction", lambda v: _number(v) and 0 <= v < 1, "a number in [0, 1)"),
    ("data.test_fraction", lambda v: _number(v) and 0 <= v < 1, "a number in [0, 1)"),
    ("data.folds", lambda v: v is None or (_int(v) and v >= 2), "null or an integer ≥ 2"),
    ("data.in_memory", lambda v: isinstance(v, bool), "true or false"),
    ("data.download", lambda v: isinstance(v, bool), "true or false"),
    ("data.num_workers", lambda v: _int(v) and v >= 0, "an integer ≥ 0"),
    ("data.normalize", lambda v: v in ("feature", "channel"), "feature or channel"),
    ("data.channels", lambda v: v in (1, 3), "1 (grey) or 3 (RGB)"),
    (
        "data.image_size",
        lambda v: v is None or (_int(v) and v >= 1) or _pair(v),
        "null, an integer ≥ 1 or [H, W]",
    ),
    ("trainer.max_epochs", lambda v: _int(v) and v >= 1, "an integer ≥ 1"),
    (
        "trainer.val_check_interval",
        lambda v: v is None or (_int(v) and v >= 1) or (isinstance(v, float) and 0 < v <= 1),
        "null (every epoch), an integer number of steps ≥ 1, or a fraction of an epoch in (0, 1]",
    ),
    ("callbacks.early_stopping.patience", lambda v: _int(v) and v >= 1, "an integer ≥ 1"),
    ("callbacks.early_stopping.mode", lambda v: v in ("min", "max"), "min or max"),
    (
        "callbacks.weight_histograms.every_n_epochs",
        lambda v: _int(v) and v >= 1,
        "an integer ≥ 1",
    ),
    (
        "model.hidden_sizes",
        lambda v: isinstance(v, Sequence) and all(_int(h) and h >= 1 for h in v),
        "a list of positive integers, e.g. [256,256]",
    ),
    ("model.activation", lambda v: v in ACTIVATIONS, " | ".join(ACTIVATIONS)),
    ("protocol.max_extra_steps", lambda v: _int(v) and v >= 1, "an integer ≥ 1"),
    ("model.dropout.input", lambda v: _number(v) and 0 <= v < 1, "a probability in [0, 1)"),
    ("model.dropout.hidden", lambda v: _number(v) and 0 <= v < 1, "a probability in [0, 1)"),
    ("model.dropout.channel", lambda v: _number(v) and 0 <= v < 1, "a probability in [0, 1)"),
    (
        "model.channels",
        lambda v: isinstance(v, Sequence) and len(v) >= 1 and all(_int(h) and h >= 1 for h in v),
        "a non-empty list of positive integers, e.g. [32,64]",
    ),
    ("model.kernel_size", lambda v: _int(v) and v >= 1, "an integer ≥ 1"),
    (
        "model.depth",
        lambda v: _int(v) and v >= 8 and (v - 2) % 6 == 0,
        "6n + 2 with n ≥ 1: 8, 14, 20, 32, 44, 56, 110, …",
    ),
    ("model.width", lambda v: _int(v) and v >= 1, "an integer ≥ 1"),
    ("model.preact", lambda v: isinstance(v, bool), "true or false"),
    ("inference.samples", lambda v: _int(v) and v >= 1, "an integer ≥ 1"),
    ("inference.mean", lambda v: v in ("arithmetic", "geometric"), "arithmetic or geometric"),
    ("ensemble.members", lambda v: _int(v) and v >= 1, "an integer ≥ 1"),
    ("ensemble.vote", lambda v: v in ("soft", "hard"), "soft or hard"),
    (
        "data.labeled_fraction",
        lambda v: v is None or (_number(v) and 0 < v <= 1),
        "null (all labelled) or a fraction in (0, 1]",
    ),
    ("model.recon_weight", lambda v: _number(v) and v >= 0, "a number ≥ 0"),
    ("model.code_size", lambda v: _int(v) and v >= 1, "an integer ≥ 1"),
    (
        "model.recon_units",
        lambda v: v in ("auto", "raw", "standardized"),
        "auto, raw or standardized",
    ),
    ("model.shared_size", lambda v: _int(v) and v >= 1, "an integer ≥ 1"),
    (
        "model.head_sizes",
        lambda v: isinstance(v, Sequence) and all(_int(h) and h >= 1 for h in v),
        "a list of positive integers, e.g. [] or [64]",
    ),
    # the strategies of a training step: noise, representation, adversarial, label mixing
    ("noise.std", lambda v: _number(v) and v >= 0, "a number ≥ 0"),
    ("noise.smoothing", lambda v: _number(v) and 0 <= v < 1, "a number in [0, 1)"),
    ("representation.alpha", lambda v: _number(v) and v >= 0, "a number ≥ 0"),
    (
        "representation.layers",
        lambda v: v is None or (isinstance(v, list) and all(isinstance(p, str) for p in v)),
        "null (every activation module) or a list of module-name or class patterns, e.g. [ReLU]",
    ),
    ("adversarial.method", lambda v: v in ("none", "fgsm", "pgd"), "none, fgsm or pgd"),
    ("adversarial.epsilon", lambda v: _number(v) and v >= 0, "a number ≥ 0"),
    ("adversarial.steps", lambda v: _int(v) and v >= 1, "an integer ≥ 1"),
    (
        "adversarial.step_size",
        lambda v: v is None or (_number(v) and v > 0),
        "null or a number > 0",
    ),
    ("adversarial.weight", lambda v: _number(v) and 0 <= v <= 1, "a number in [0, 1]"),
    (
        "adversarial.evaluate",
        lambda v: (
            v in (None, "fgsm", "pgd")
            or (isinstance(v, list) and all(a in ("fgsm", "pgd") for a in v))
        ),
        "null, fgsm, pgd or a list of them, e.g. [fgsm,pgd]",
    ),
    (
        "logger.mlflow.tracking_uri",
        lambda v: isinstance(v, str) and v.split(":", 1)[0] in TRACKING_SCHEMES and ":" in v,
        "an MLflow URI: file:<directory>, sqlite:///<file>, http(s)://<server>, postgresql://…",
    ),
    ("logger.mlflow.experiment_name", lambda v: isinstance(v, str) and v.strip(), "a name"),
    ("augmentation.transforms.mixup.alpha", lambda v: _number(v) and v > 0, "a number > 0"),
    ("augmentation.transforms.cutmix.beta", lambda v: _number(v) and v > 0, "a number > 0"),
)

TASK_KINDS = ("classification", "regression")


# the parts of composite networks (model.trunk, model.encoder, …): each is a network, and
# a rule for model.<key> holds for model.<part>.<key> too
MODEL_PARTS = ("trunk", "encoder", "decoder", "classifier")


def _with_parts(rules: Sequence[Rule]) -> list[Rule]:
    """The rules, and each model.<key> rule again for every part's <key>."""
    nested = [
        (f"model.{part}.{key[len('model.') :]}", ok, allowed)
        for key, ok, allowed in rules
        if key.startswith("model.")
        for part in MODEL_PARTS
    ]
    return [*rules, *nested]


def validate(cfg: DictConfig) -> None:
    """Raise ConfigError for the first key whose value is not allowed."""
    for key, ok, allowed in _with_parts(RULES):
        node = OmegaConf.select(cfg, key, default="<absent>", throw_on_missing=False)
        if isinstance(node, str) and node == "<absent>":
            continue
        value = OmegaConf.to_object(node) if OmegaConf.is_config(node) else node
        if not ok(value):
            raise ConfigError(f"{key}={_show(value)} is not allowed (allowed: {allowed})")
    _validate_folds(cfg)
    _validate_model_data(cfg)
    protocol = str(OmegaConf.select(cfg, "protocol._target_", default="") or "")
    no_val = cfg.data.val_fraction == 0 and not _folds_set(cfg)
    if not protocol.endswith("EarlyStopping71") and protocol and no_val:
        raise ConfigError(
            f"data.val_fraction=0 leaves {protocol.rsplit('.', 1)[-1]} no validation split"
            " (allowed: data.val_fraction > 0, or protocol=early_stopping)"
        )
    if (
        protocol
        and not protocol.endswith("EarlyStopping71")
        and not cfg.callbacks.get("early_stopping")
    ):
        raise ConfigError(
            "callbacks.early_stopping=null: Algorithms 7.2 and 7.3 start with 7.1"
            " (allowed: an early_stopping callback, or protocol=early_stopping)"
        )
    if OmegaConf.select(cfg, "ensemble.members") and not protocol.endswith("EarlyStopping71"):
        raise ConfigError(
            f"ensemble=bagging runs with Algorithm 7.1 only, not {protocol.rsplit('.', 1)[-1]}"
            " (allowed: protocol=early_stopping)"
        )
    if OmegaConf.select(cfg, "constraint._target_") and OmegaConf.select(cfg, "ensemble.members"):
        raise ConfigError(
            "a norm constraint projects one network's weights, not ensemble=bagging's stacked"
            " members (allowed: constraint=none with bagging, or ensemble=none)"
        )
    transforms = OmegaConf.select(cfg, "augmentation.transforms", default=None) or {}
    images = [n for n, t in transforms.items() if str(t.get("_target_", "")).startswith("kornia")]
    if images and not OmegaConf.select(cfg, "data.image_shape", default=None):
        raise ConfigError(
            f"augmentation={'+'.join(images)} transforms images, but the data has no"
            " data.image_shape (it is tabular) (allowed: augmentation=none, noise or mixup)"
        )
    _validate_step_strategies(cfg, [str(name) for name in transforms])
    _validate_loggers(cfg)
    size = OmegaConf.select(cfg, "data.train_size", default=None)
    if size is not None and not (_int(size) and size >= 1):
        raise ConfigError(f"data.train_size={size} is not allowed (allowed: an integer ≥ 1)")
    val, test = cfg.data.val_fraction, cfg.data.test_fraction
    if val + test >= 1 and not _folds_set(cfg):
        raise ConfigError(
            f"data.val_fraction + data.test_fraction = {val} + {test} ≥ 1 leaves no training"
            " data (allowed: a sum < 1)"
        )


def _folds_set(cfg: DictConfig) -> bool:
    """With data.folds, a fold validates and data.val_fraction is unused."""
    return bool(OmegaConf.select(cfg, "data.folds", default=None))


def _validate_folds(cfg: DictConfig) -> None:
    """data.fold names one of data.folds' folds (0 when there are none: the plain split)."""
    folds = OmegaConf.select(cfg, "data.folds", default=None)
    fold = OmegaConf.select(cfg, "data.fold", default=0)
    allowed = f"an integer in [0, {folds - 1}]" if folds else "0 without data.folds"
    if not (_int(fold) and 0 <= fold < (folds or 1)):
        raise ConfigError(f"data.fold={_show(fold)} is not allowed (allowed: {allowed})")


def _model_kind(cfg: DictConfig) -> str:
    target = str(OmegaConf.select(cfg, "model._target_", default="") or "")
    return {"MultiTaskNet": "multitask", "Autoencoder": "autoencoder"}.get(
        target.rsplit(".", 1)[-1], "single"
    )


def _validate_model_data(cfg: DictConfig) -> None:
    """Multi-task and semi-supervised models against the data they are given."""
    kind, tasks = _model_kind(cfg), OmegaConf.select(cfg, "data.tasks", default=None)
    if kind == "multitask" or tasks is not None:
        _validate_tasks(cfg, tasks)
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


def _validate_step_strategies(cfg: DictConfig, transforms: list[str]) -> None:
    """Label smoothing and mixing need class labels or one regression target; attacks one
    network's loss; bagging's vmapped members take only noise."""
    used = [name for name, on in _step_strategies(cfg, transforms).items() if on]
    if "noise=labels" in used and cfg.data.task != "classification":
        raise ConfigError(
            f"noise=labels smooths class labels, not data.task={cfg.data.task}"
            " (allowed: noise=none or noise=weights; a classification data set)"
        )
    kind = _model_kind(cfg)
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


def _validate_loggers(cfg: DictConfig) -> None:
    """logger=mlflow needs the mlflow package (the `mlflow` extra: not in `make train`'s)."""
    loggers = (cfg.get("logger") or {}).values()
    targets = [str(c.get("_target_", "")) for c in loggers if c is not None]
    if any(t.endswith("MLFlowLogger") for t in targets) and not importlib.util.find_spec("mlflow"):
        raise ConfigError(
            "logger=mlflow needs the mlflow package, which is not installed (allowed: `make"
            " install` or pip install -e '.[mlflow]'; or logger=tensorboard)"
        )


def _validate_tasks(cfg: DictConfig, tasks: Any) -> None:
    """data.tasks: a non-empty mapping name → {kind, outputs, weight ≥ 0}, one weight > 0."""
    if not tasks:
        raise ConfigError(
            f"data.tasks={_show(tasks)} declares no task (allowed: a mapping name →"
            " {kind, outputs, weight}, e.g. data=digits_multitask)"
        )
    for name, spec in tasks.items():
        key = f"data.tasks.{name}"
        if not str(name).isidentifier():
            raise ConfigError(f"{key}: the name is not allowed (allowed: a Python identifier)")
        if spec.get("kind") not in TASK_KINDS:
            raise ConfigError(
                f"{key}.kind={spec.get('kind')} is not allowed (allowed: {' or '.join(TASK_KINDS)})"
            )
        least = 2 if spec.kind == "classification" else 1
        if not (_int(spec.get("outputs")) and spec.outputs >= least):
            raise ConfigError(
                f"{key}.outputs={spec.get('outputs')} is not allowed (allowed: an integer ≥"
                f" {least} for {spec.kind})"
            )
        weight = spec.get("weight", 1.0)
        if not (_number(weight) and weight >= 0):
            raise ConfigError(f"{key}.weight={weight} is not allowed (allowed: a number ≥ 0)")
    used = OmegaConf.select(cfg, "data.use_tasks", default=None)
    if used is not None and (not used or any(n not in tasks for n in used)):
        raise ConfigError(
            f"data.use_tasks={_show(list(used))} is not allowed (allowed: null or a non-empty"
            f" list of {', '.join(tasks)})"
        )
    if not any(tasks[n].get("weight", 1.0) > 0 for n in (used or tasks)):
        raise ConfigError(
            "data.tasks: every weight is 0, nothing would be trained (allowed: a weight > 0)"
        )


def _show(value: Any) -> str:
    return "[" + ",".join(map(str, value)) + "]" if isinstance(value, list) else str(value)
