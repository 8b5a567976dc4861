"""TensorBoard: one event file per run, weight histograms, image grids, and the hparams summary.

TensorBoard's HPARAMS tab compares runs by the hparams summary of each run; Lightning's
`log_hyperparams(params, metrics)` would also log `metrics` a second time as scalars at
step 0, so the summary is written here directly, naming the final scalars that the run
has logged at their true steps.
"""

from collections.abc import Collection, Mapping
from typing import Any

import pytorch_lightning as pl
import torch
from lightning_fabric.loggers.logger import rank_zero_experiment
from lightning_fabric.utilities.logger import _add_prefix
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.utilities import rank_zero_only
from tensorboard.compat.proto.summary_pb2 import HistogramProto, Summary
from torch.utils.tensorboard.summary import hparams as hparams_summary

from reglab.records.events import SummaryWriter
from reglab.records.figures import PNG


class TensorBoardLogger(pl.loggers.TensorBoardLogger):
    """Lightning's TensorBoard logger, writing a run into one event file.

    Lightning closes a logger's writer at the end of `fit` and of `test`, and the next write
    opens a new event file. TensorBoard reads a directory's event files in name order, which
    stops being the order of writing once the process's file counter crosses a power of ten
    (…9, …10: job 3 of any sweep), and then shows stale values as the last ones. This logger
    only flushes there; `close()` ends the file when the run is done. Its writer writes each
    event as it comes, in the training thread (records/events.py).
    """

    @property
    @rank_zero_experiment
    def experiment(self) -> SummaryWriter:
        if self._experiment is None:  # as Lightning's, with reglab's SummaryWriter
            if self.root_dir:
                self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = SummaryWriter(log_dir=self.log_dir, **self._kwargs)
        return self._experiment

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        """One event holding every scalar of the call, where Lightning's `add_scalar` loop
        writes one per scalar: 0.12 ms against 0.5 ms for five, twice an epoch here, 4 %
        of a small model's training. TensorBoard reads the values alike."""
        nested = {k: v for k, v in metrics.items() if isinstance(v, dict)}
        if nested:  # add_scalars' grouped runs: Lightning's way
            super().log_metrics(nested, step)
        scalars = _add_prefix(
            {k: v for k, v in metrics.items() if k not in nested},
            self._prefix,
            self.LOGGER_JOIN_CHAR,
        )
        if scalars:
            values = [Summary.Value(tag=k, simple_value=float(v)) for k, v in scalars.items()]
            write_event(self.experiment, values, step)

    def finalize(self, status: str) -> None:
        if self._experiment is not None:
            self.experiment.flush()
        if status == "success":
            self.save()

    def close(self) -> None:
        super().finalize("success")


class WeightHistograms(pl.Callback):
    """A TensorBoard histogram of every parameter tensor, every `every_n_epochs` epochs."""

    def __init__(self, every_n_epochs: int = 5, bins: int = 64) -> None:
        self.every_n_epochs = every_n_epochs
        self.bins = bins  # fixed-width bins: TensorBoard's default exponential ones cost 5× more

    def _log(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.is_global_zero:  # other ranks hold Lightning's dummy writers
            return
        loggers = [lg for lg in trainer.loggers if isinstance(lg, pl.loggers.TensorBoardLogger)]
        writers = [lg.experiment for lg in loggers]
        if not writers:
            return
        # one event for every tensor's histogram (add_histogram_raw writes one per tensor)
        names, tensors = zip(*pl_module.named_parameters(), strict=True)
        values = [
            Summary.Value(tag="weights/" + name.replace(".", "/"), histo=h)
            for name, h in zip(names, histograms(list(tensors), self.bins), strict=True)
        ]
        for writer in writers:
            write_event(writer, values, pl_module.step)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if (trainer.current_epoch + 1) % self.every_n_epochs == 0:
            self._log(trainer, pl_module)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._log(trainer, pl_module)  # the parameters the run ends with (θ* after restore)


def write_event(writer: SummaryWriter, values: list[Summary.Value], step: int | None) -> None:
    """One event file record holding all `values` (SummaryWriter's add_* write one each)."""
    writer._get_file_writer().add_summary(Summary(value=values), step)


def histogram(values: torch.Tensor, bins: int) -> HistogramProto:
    """TensorBoard's histogram of a tensor over `bins` equal bins from its min to its max."""
    return histograms([values], bins)[0]


def histograms(tensors: list[torch.Tensor], bins: int) -> list[HistogramProto]:
    """`histogram` of each tensor, computed where the tensors are (no copy of a float32
    tensor) and brought to Python in three transfers for all of them (ranges, sums,
    counts), where one per value took most of the time. Sums in float64."""
    flat = [t.detach().flatten().float() for t in tensors]
    lo, hi = torch.stack([torch.stack(torch.aminmax(f)) for f in flat]).unbind(1)
    hi = torch.where(hi > lo, hi, lo + 1e-6 * lo.abs().clamp(min=1e-6))  # constant: one bin
    ranges = torch.stack([lo, hi], 1).tolist()
    counts = [torch.histc(f, bins, a, b) for f, (a, b) in zip(flat, ranges, strict=True)]
    double = torch.float64 if lo.device.type != "mps" else torch.float32  # MPS has no float64
    sums = [
        torch.stack([f.sum(dtype=double), torch.linalg.vector_norm(f, dtype=double).square()])
        for f in flat
    ]
    edges = torch.arange(1, bins + 1, dtype=torch.float64) / bins
    lo, hi = torch.tensor(ranges, dtype=torch.float64).unbind(1)
    limits = (lo[:, None] + (hi - lo)[:, None] * edges).tolist()
    sums, counts = torch.stack(sums).tolist(), torch.stack(counts).tolist()
    return [
        HistogramProto(
            min=a,
            max=b,
            num=f.numel(),
            sum=sums[i][0],
            sum_squares=sums[i][1],
            bucket_limit=limits[i],
            bucket=counts[i],
        )
        for i, (f, (a, b)) in enumerate(zip(flat, ranges, strict=True))
    ]


def flat_hparams(cfg: DictConfig, choices: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Scalar hyperparameters as `group.key` → value, plus the chosen option of each group."""
    skip = ("callbacks", "logger", "hydra", "paths", "output_dir")
    container = OmegaConf.to_container(cfg, resolve=True)
    flat: dict[str, Any] = {}

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if not str(key).startswith("_"):
                    walk(value, f"{prefix}{key}.")
        elif node is not None:
            flat[prefix[:-1]] = node if isinstance(node, int | float | str | bool) else str(node)

    walk({k: v for k, v in container.items() if k not in skip}, "")
    for group, option in (choices or {}).items():
        if option is not None and not group.startswith("hydra"):
            flat[group] = str(option)
    return flat


def log_final(
    loggers: list[pl.loggers.Logger],
    params: dict[str, Any],
    metrics: dict[str, float],
    step: int,
    logged: Collection[str] = (),
) -> None:
    """Log the summary metrics as scalars (but those `logged` already, the test's) and the
    hparams: TensorBoard's summary that points at them, MLflow's params."""
    new = {k: v for k, v in metrics.items() if k not in logged}
    for logger in loggers:
        logger.log_metrics(new, step=step)
        if isinstance(logger, pl.loggers.TensorBoardLogger):
            writer = logger.experiment._get_file_writer()
            for summary in hparams_summary(params, metrics):
                writer.add_summary(summary)
        if isinstance(logger, pl.loggers.MLFlowLogger):
            logger.log_hyperparams(params)
        logger.save()


def log_figure(loggers: list[pl.loggers.Logger], tag: str, png: PNG, step: int) -> None:
    """A figure's PNG (`figures.save_png`'s bytes, as they are) in TensorBoard's IMAGES tab
    (other loggers get the png file)."""
    image = Summary.Image(
        height=png.height, width=png.width, colorspace=4, encoded_image_string=png.data
    )
    for logger in loggers:
        if isinstance(logger, pl.loggers.TensorBoardLogger):
            write_event(logger.experiment, [Summary.Value(tag=tag, image=image)], step)


def close_loggers(loggers: list[pl.loggers.Logger], status: str = "success") -> None:
    """End the run's event file, and its MLflow run with `status` (success, failed, KILLED):
    its end time then follows the final metrics and files, logged after Lightning's own
    finalize at the end of the test."""
    for logger in loggers:
        if isinstance(logger, TensorBoardLogger):
            logger.close()
        if isinstance(logger, pl.loggers.MLFlowLogger):
            logger.finalize(status)


def log_images(
    loggers: list[pl.loggers.Logger],
    tag: str,
    x: torch.Tensor,
    shape: tuple[int, ...],
    mean: torch.Tensor,
    std: torch.Tensor,
    step: int,
) -> None:
    """Standardized examples, (N, C, H, W) or flat (N, C·H·W), as images in TensorBoard's
    IMAGES tab: back to pixel units (`mean`, `std`: flat, per feature), then scaled to
    [0, 1] over the batch (one contrast for all)."""
    writers = [lg.experiment for lg in loggers if hasattr(lg.experiment, "add_images")]
    if not writers:
        return
    images = (x.detach().cpu().flatten(1) * std + mean).reshape(-1, *shape)
    images = (images - images.min()) / (images.max() - images.min() + 1e-12)
    for writer in writers:
        writer.add_images(tag, images, step)


@torch.no_grad()
def log_augmented_samples(
    loggers: list[pl.loggers.Logger],
    augment: Any,
    x: torch.Tensor,
    device: torch.device,
    step: int,
    count: int = 16,
) -> None:
    """The first `count` training images before and after `augment` (an image
    `data.Augmentation`), in TensorBoard's IMAGES tab. The draws come from a fork of the
    random state: showing samples leaves training's own draws as they were."""
    shown = any(hasattr(lg.experiment, "add_images") for lg in loggers)
    if augment.image_shape is None or not shown:
        return
    x = x[:count].to(device)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        augmented = augment(x)
    for tag, batch in (("original", x), ("augmented", augmented)):
        args = (augment.image_shape, augment.mean.cpu(), augment.std.cpu(), step)
        log_images(loggers, f"augmentation/{tag}", batch, *args)
