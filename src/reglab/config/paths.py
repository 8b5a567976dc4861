"""Where reglab's configs live and what a run directory holds, and the resolver they use.

Light on purpose: the command line's launching process imports this and no torch.
"""

from pathlib import Path

from omegaconf import OmegaConf

CONFIG_DIR = Path(__file__).resolve().parents[3] / "conf"  # the repository's conf/
RUN_CONFIG = "config.yaml"  # the resolved config a run trained with, in its run directory

# `hydra.run.dir: ${resume_or:${resume},outputs/…}`: a resumed run continues in its own directory
OmegaConf.register_new_resolver("resume_or", lambda path, default: path or default, replace=True)
