"""reglab: the regularization toolbox of deep learning (Goodfellow et al., ch. 7), by config.

`reglab.train(reglab.compose(overrides))` runs what `python train.py overrides…` runs. The
names load on first use (PEP 562), so `import reglab` (and the command line's launching
process) does not import torch.
"""

import importlib
from typing import Any

__all__ = ["compose", "instantiate", "records", "train"]

_FROM = {
    "compose": ("reglab.config", "compose"),
    "instantiate": ("hydra.utils", "instantiate"),
    "records": ("reglab.records", None),
    "train": ("reglab.engine.training", "train"),
}


def __getattr__(name: str) -> Any:
    if name not in _FROM:
        raise AttributeError(f"module 'reglab' has no attribute {name!r}")
    module, attr = _FROM[name]
    value = importlib.import_module(module)
    return getattr(value, attr) if attr else value
