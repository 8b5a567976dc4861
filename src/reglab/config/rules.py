"""The rule table: every user-facing key with its allowed values, and the walk that checks
a config against it (`validation.validate` runs it first, then the checks across keys).

Hydra already rejects unknown groups, options and keys; these rules reject values that
compose fine but make no sense. A violation raises `ConfigError`, whose one-line message
names the key, the value and what is allowed; `cli.main` prints it without a traceback.
"""

from collections.abc import Callable, Sequence
from typing import Any

from omegaconf import DictConfig, OmegaConf

from reglab.config.errors import ConfigError

# the activations models.ACTIVATIONS builds (a test keeps the two lists equal)
ACTIVATIONS = ("relu", "tanh", "sigmoid", "gelu", "elu", "leaky_relu")


def is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def show(value: Any) -> str:
    """A value as a message shows it: a list as [a,b], as it is written on the command line."""
    return "[" + ",".join(map(str, value)) + "]" if isinstance(value, list) else str(value)


def _pair(v: Any) -> bool:
    return isinstance(v, Sequence) and len(v) == 2 and all(is_int(h) and h >= 1 for h in v)


Rule = tuple[str, Callable[[Any], bool], str]
# what MLflow's tracking stores accept (`logger=mlflow`)
TRACKING_SCHEMES = ("file", "sqlite", "http", "https", "postgresql", "mysql", "mssql", "databricks")

RULES: Sequence[Rule] = (
    ("seed", lambda v: is_int(v) and 0 <= v < 2**32, "an integer in [0, 4294967295]"),
    ("regularizer.alpha", lambda v: is_number(v) and v >= 0, "a number ≥ 0"),
    ("regularizer.l1_ratio", lambda v: is_number(v) and 0 <= v <= 1, "a number in [0, 1]"),
    ("optimizer.lr", lambda v: is_number(v) and v > 0, "a number > 0"),
    ("constraint.radius", lambda v: is_number(v) and v > 0, "a number > 0"),
    ("constraint.max_norm", lambda v: is_number(v) and v > 0, "a number > 0"),
    ("constraint.per_layer", lambda v: isinstance(v, bool), "true or false"),
    (
        "data.task",
        lambda v: v in ("classification", "regression", "multitask"),
        "classification, regression or multitask",
    ),
    ("data.batch_size", lambda v: is_int(v) and v >= 1, "an integer ≥ 1"),
    ("data.eval_batch_size", lambda v: is_int(v) and v >= 1, "an integer ≥ 1"),
    ("data.val_fraction", lambda v: is_number(v) and 0 <= v < 1, "a number in [0, 1)"),
    ("data.test_fraction", lambda v: is_number(v) and 0 <= v < 1, "a number in [0, 1)"),
    ("data.folds", lambda v: v is None or (is_int(v) and v >= 2), "null or an integer ≥ 2"),
    ("data.in_memory", lambda v: isinstance(v, bool), "true or false"),
    ("data.download", lambda v: isinstance(v, bool), "true or false"),
    ("data.num_workers", lambda v: is_int(v) and v >= 0, "an integer ≥ 0"),
    ("data.normalize", lambda v: v in ("feature", "channel"), "feature or channel"),
    ("data.channels", lambda v: v in (1, 3), "1 (grey) or 3 (RGB)"),
    (
        "data.image_size",
        lambda v: v is None or (is_int(v) and v >= 1) or _pair(v),
        "null, an integer ≥ 1 or [H, W]",
    ),
    ("trainer.max_epochs", lambda v: is_int(v) and v >= 1, "an integer ≥ 1"),
    (
        "trainer.val_check_interval",
        lambda v: v is None or (is_int(v) and v >= 1) or (isinstance(v, float) and 0 < v <= 1),
        "null (every epoch), an integer number of steps ≥ 1, or a fraction of an epoch in (0, 1]",
    ),
    (
        "trainer.precision",
        lambda v: v in ("32-true", "bf16-mixed"),
        "32-true or bf16-mixed; 16-mixed's loss scale would meet the penalties' gradients and"
        " clipping unscaled",
    ),
    ("trainer.channels_last", lambda v: isinstance(v, bool), "true or false"),
    ("trainer.compile", lambda v: isinstance(v, bool), "true or false"),
    ("callbacks.early_stopping.patience", lambda v: is_int(v) and v >= 1, "an integer ≥ 1"),
    ("callbacks.early_stopping.mode", lambda v: v in ("min", "max"), "min or max"),
    (
        "callbacks.weight_histograms.every_n_epochs",
        lambda v: is_int(v) and v >= 1,
        "an integer ≥ 1",
    ),
    (
        "model.hidden_sizes",
        lambda v: isinstance(v, Sequence) and all(is_int(h) and h >= 1 for h in v),
        "a list of positive integers, e.g. [256,256]",
    ),
    ("model.activation", lambda v: v in ACTIVATIONS, " | ".join(ACTIVATIONS)),
    ("protocol.max_extra_steps", lambda v: is_int(v) and v >= 1, "an integer ≥ 1"),
    ("model.dropout.input", lambda v: is_number(v) and 0 <= v < 1, "a probability in [0, 1)"),
    ("model.dropout.hidden", lambda v: is_number(v) and 0 <= v < 1, "a probability in [0, 1)"),
    ("model.dropout.channel", lambda v: is_number(v) and 0 <= v < 1, "a probability in [0, 1)"),
    (
        "model.channels",
        lambda v: isinstance(v, Sequence) and len(v) >= 1 and all(is_int(h) and h >= 1 for h in v),
        "a non-empty list of positive integers, e.g. [32,64]",
    ),
    ("model.kernel_size", lambda v: is_int(v) and v >= 1, "an integer ≥ 1"),
    (
        "model.depth",
        lambda v: is_int(v) and v >= 8 and (v - 2) % 6 == 0,
        "6n + 2 with n ≥ 1: 8, 14, 20, 32, 44, 56, 110, …",
    ),
    ("model.width", lambda v: is_int(v) and v >= 1, "an integer ≥ 1"),
    ("model.preact", lambda v: isinstance(v, bool), "true or false"),
    ("inference.samples", lambda v: is_int(v) and v >= 1, "an integer ≥ 1"),
    ("inference.mean", lambda v: v in ("arithmetic", "geometric"), "arithmetic or geometric"),
    ("ensemble.members", lambda v: is_int(v) and v >= 1, "an integer ≥ 1"),
    ("ensemble.vote", lambda v: v in ("soft", "hard"), "soft or hard"),
    (
        "data.labeled_fraction",
        lambda v: v is None or (is_number(v) and 0 < v <= 1),
        "null (all labelled) or a fraction in (0, 1]",
    ),
    ("model.recon_weight", lambda v: is_number(v) and v >= 0, "a number ≥ 0"),
    ("model.code_size", lambda v: is_int(v) and v >= 1, "an integer ≥ 1"),
    (
        "model.recon_units",
        lambda v: v in ("auto", "raw", "standardized"),
        "auto, raw or standardized",
    ),
    ("model.shared_size", lambda v: is_int(v) and v >= 1, "an integer ≥ 1"),
    (
        "model.head_sizes",
        lambda v: isinstance(v, Sequence) and all(is_int(h) and h >= 1 for h in v),
        "a list of positive integers, e.g. [] or [64]",
    ),
    # the strategies of a training step: noise, representation, adversarial, label mixing
    ("noise.std", lambda v: is_number(v) and v >= 0, "a number ≥ 0"),
    ("noise.smoothing", lambda v: is_number(v) and 0 <= v < 1, "a number in [0, 1)"),
    ("representation.alpha", lambda v: is_number(v) and v >= 0, "a number ≥ 0"),
    (
        "representation.layers",
        lambda v: v is None or (isinstance(v, list) and all(isinstance(p, str) for p in v)),
        "null (every activation module) or a list of module-name or class patterns, e.g. [ReLU]",
    ),
    ("adversarial.method", lambda v: v in ("none", "fgsm", "pgd"), "none, fgsm or pgd"),
    ("adversarial.epsilon", lambda v: is_number(v) and v >= 0, "a number ≥ 0"),
    ("adversarial.steps", lambda v: is_int(v) and v >= 1, "an integer ≥ 1"),
    (
        "adversarial.step_size",
        lambda v: v is None or (is_number(v) and v > 0),
        "null or a number > 0",
    ),
    ("adversarial.weight", lambda v: is_number(v) and 0 <= v <= 1, "a number in [0, 1]"),
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
    ("augmentation.transforms.mixup.alpha", lambda v: is_number(v) and v > 0, "a number > 0"),
    ("augmentation.transforms.cutmix.beta", lambda v: is_number(v) and v > 0, "a number > 0"),
)


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


def check_rules(cfg: DictConfig) -> None:
    """Raise ConfigError for the first key of the table whose value is not allowed."""
    for key, ok, allowed in _with_parts(RULES):
        node = OmegaConf.select(cfg, key, default="<absent>", throw_on_missing=False)
        if isinstance(node, str) and node == "<absent>":
            continue
        value = OmegaConf.to_object(node) if OmegaConf.is_config(node) else node
        if not ok(value):
            raise ConfigError(f"{key}={show(value)} is not allowed (allowed: {allowed})")
