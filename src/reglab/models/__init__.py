"""Networks (plain nn.Modules): what `model._target_` names, and the stacking of bagging's
members. A network knows nothing of losses, regularizers or Lightning."""

from reglab.models.autoencoder import Autoencoder
from reglab.models.mlp import ACTIVATIONS, MLP, Dropout, Linear, has_dropout
from reglab.models.multitask import MultiTaskNet, Task, parse_tasks
from reglab.models.stacked import StackedLinear, StackedMLP

__all__ = [
    "ACTIVATIONS",
    "MLP",
    "Autoencoder",
    "Dropout",
    "Linear",
    "MultiTaskNet",
    "StackedLinear",
    "StackedMLP",
    "Task",
    "has_dropout",
    "parse_tasks",
]
