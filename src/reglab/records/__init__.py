"""What a run leaves behind: loggers (TensorBoard, CSV, MLflow), checkpoint files,
metrics.json, run.json and predictions.npz, the learning curve and reliability diagram,
the progress line. Imports nothing else of reglab but `config`."""

from reglab.records.best import BestCheckpoint
from reglab.records.checkpoints import CheckpointWriter, check_checkpoint_fits, previous
from reglab.records.figures import save_png
from reglab.records.files import format_table, read_json, write_json, write_npz
from reglab.records.latest import LatestCheckpoint
from reglab.records.loggers import (
    TensorBoardLogger,
    WeightHistograms,
    close_loggers,
    flat_hparams,
    log_augmented_samples,
    log_figure,
    log_final,
    log_images,
)
from reglab.records.mlflow import MLFlowLogger, log_run_files, ui_commands
from reglab.records.progress import progress_bar

__all__ = [
    "BestCheckpoint",
    "CheckpointWriter",
    "LatestCheckpoint",
    "MLFlowLogger",
    "TensorBoardLogger",
    "WeightHistograms",
    "check_checkpoint_fits",
    "close_loggers",
    "flat_hparams",
    "format_table",
    "log_augmented_samples",
    "log_figure",
    "log_final",
    "log_images",
    "log_run_files",
    "previous",
    "progress_bar",
    "read_json",
    "save_png",
    "ui_commands",
    "write_json",
    "write_npz",
]
