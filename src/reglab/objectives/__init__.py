"""The LightningModules: what a network is trained on. `RegLabModule` minimizes
J̃ = J + α·Ω (eq. 7.1); the others change J (multi-task, semi-supervised) or train k members
at once (bagging). `objective._target_` picks one, so the engine imports none by name."""

from reglab.objectives.bagging import BaggingModule, out_of_bag_mask, vote
from reglab.objectives.base import RegLabModule
from reglab.objectives.evaluation import NonFiniteLossError
from reglab.objectives.multitask import MultiTaskModule
from reglab.objectives.semi_supervised import SemiSupervisedModule

__all__ = [
    "BaggingModule",
    "MultiTaskModule",
    "NonFiniteLossError",
    "RegLabModule",
    "SemiSupervisedModule",
    "out_of_bag_mask",
    "vote",
]
