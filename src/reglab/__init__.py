"""reglab: the regularization toolbox of deep learning (Goodfellow et al., ch. 7), by config."""

from hydra.utils import instantiate

from reglab import records
from reglab.config import compose
from reglab.train import train

__all__ = ["compose", "instantiate", "records", "train"]
