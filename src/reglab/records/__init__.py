"""What a run leaves behind: loggers, checkpoint files, metrics.json and run.json, the
learning curve, the progress line. Imports nothing else of reglab but `config`."""

from reglab.records.checkpoints import CheckpointWriter, check_checkpoint_fits, previous
from reglab.records.files import format_table, read_json, write_json
from reglab.records.latest import LatestCheckpoint
from reglab.records.loggers import (
    TensorBoardLogger,
    WeightHistograms,
    close_loggers,
    flat_hparams,
    log_final,
    log_images,
)
from reglab.records.progress import progress_bar

__all__ = [
    "CheckpointWriter",
    "LatestCheckpoint",
    "TensorBoardLogger",
    "WeightHistograms",
    "check_checkpoint_fits",
    "close_loggers",
    "flat_hparams",
    "format_table",
    "log_final",
    "log_images",
    "previous",
    "progress_bar",
    "read_json",
    "write_json",
]
