"""Networks (plain nn.Modules): what `model._target_` names, and the stacking of bagging's
members. A network knows nothing of losses, regularizers or Lightning."""

from reglab.models.autoencoder import Autoencoder
from reglab.models.cnn import CNN, ConvDecoder
from reglab.models.ensemble import Ensemble
from reglab.models.mlp import ACTIVATIONS, MLP, Dropout, Linear
from reglab.models.multitask import MultiTaskNet, Task, parse_tasks
from reglab.models.resnet import ResNet
from reglab.models.stacked import StackedCNN, StackedConv2d, StackedLinear, StackedMLP, stack

__all__ = [
    "ACTIVATIONS",
    "CNN",
    "MLP",
    "Autoencoder",
    "ConvDecoder",
    "Dropout",
    "Ensemble",
    "Linear",
    "MultiTaskNet",
    "ResNet",
    "StackedCNN",
    "StackedConv2d",
    "StackedLinear",
    "StackedMLP",
    "Task",
    "parse_tasks",
    "stack",
]
