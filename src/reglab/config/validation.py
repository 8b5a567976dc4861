"""`validate`: a config against the rule table (`rules.py`), then the checks across keys, in
a fixed order, so the first value that is not allowed is the one reported.

A violation raises `ConfigError`, whose one-line message names the key, the value and what
is allowed; `cli.main` prints it without a traceback.
"""

import importlib.util
from typing import Any

from omegaconf import DictConfig, OmegaConf

from reglab.config.compatibility import validate_model_data, validate_step_strategies
from reglab.config.errors import ConfigError
from reglab.config.rules import check_rules, is_int, show


def validate(cfg: DictConfig) -> None:
    """Raise ConfigError for the first key whose value is not allowed."""
    check_rules(cfg)
    _validate_folds(cfg)
    validate_model_data(cfg)
    protocol = str(OmegaConf.select(cfg, "protocol._target_", default="") or "")
    _validate_protocol(cfg, protocol)
    _validate_ensemble(cfg, protocol)
    transforms = OmegaConf.select(cfg, "augmentation.transforms", default=None) or {}
    _validate_images(cfg, transforms)
    validate_step_strategies(cfg, [str(name) for name in transforms])
    _validate_loggers(cfg)
    _validate_sizes(cfg)


def _folds_set(cfg: DictConfig) -> bool:
    """With data.folds, a fold validates and data.val_fraction is unused."""
    return bool(OmegaConf.select(cfg, "data.folds", default=None))


def _validate_folds(cfg: DictConfig) -> None:
    """data.fold names one of data.folds' folds (0 when there are none: the plain split)."""
    folds = OmegaConf.select(cfg, "data.folds", default=None)
    fold = OmegaConf.select(cfg, "data.fold", default=0)
    allowed = f"an integer in [0, {folds - 1}]" if folds else "0 without data.folds"
    if not (is_int(fold) and 0 <= fold < (folds or 1)):
        raise ConfigError(f"data.fold={show(fold)} is not allowed (allowed: {allowed})")


def _validate_protocol(cfg: DictConfig, protocol: str) -> None:
    """Algorithms 7.2 and 7.3 need a validation split and start with Algorithm 7.1."""
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


def _validate_ensemble(cfg: DictConfig, protocol: str) -> None:
    """Bagging runs Algorithm 7.1 on unconstrained stacked members."""
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


def _validate_images(cfg: DictConfig, transforms: Any) -> None:
    """kornia's transforms act on images: the data must have an image_shape."""
    images = [n for n, t in transforms.items() if str(t.get("_target_", "")).startswith("kornia")]
    if images and not OmegaConf.select(cfg, "data.image_shape", default=None):
        raise ConfigError(
            f"augmentation={'+'.join(images)} transforms images, but the data has no"
            " data.image_shape (it is tabular) (allowed: augmentation=none, noise or mixup)"
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


def _validate_sizes(cfg: DictConfig) -> None:
    """data.train_size ≥ 1, and the validation and test fractions leave training data."""
    size = OmegaConf.select(cfg, "data.train_size", default=None)
    if size is not None and not (is_int(size) and size >= 1):
        raise ConfigError(f"data.train_size={size} is not allowed (allowed: an integer ≥ 1)")
    val, test = cfg.data.val_fraction, cfg.data.test_fraction
    if val + test >= 1 and not _folds_set(cfg):
        raise ConfigError(
            f"data.val_fraction + data.test_fraction = {val} + {test} ≥ 1 leaves no training"
            " data (allowed: a sum < 1)"
        )
