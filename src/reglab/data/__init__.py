"""Data: sources (callables returning X, y), the DataModule that splits and standardizes
them, the loaders that slice minibatches, and training-batch augmentation."""

from reglab.data.augmentation import Augmentation, GaussianNoise
from reglab.data.datamodule import DataModule
from reglab.data.loaders import BootstrapLoader, ChunkLoader, bootstrap_index
from reglab.data.sources import digit_tasks, make_multitask, make_synthetic
from reglab.data.splitting import UNLABELED

__all__ = [
    "UNLABELED",
    "Augmentation",
    "BootstrapLoader",
    "ChunkLoader",
    "DataModule",
    "GaussianNoise",
    "bootstrap_index",
    "digit_tasks",
    "make_multitask",
    "make_synthetic",
]
