"""The engine: composing a run from its config (`build`), the protocols 7.1–7.3 that train
it, DDP launch, and one run's training and summary (`training.train`). Strategies (ensemble,
objective, protocol) reach it as `_target_`s; `bagging` is one, imported by no engine module."""

from reglab.engine.run import Run, SingleModel, build, build_module
from reglab.engine.trainer import build_trainer
from reglab.engine.training import train

__all__ = ["Run", "SingleModel", "build", "build_module", "build_trainer", "train"]
