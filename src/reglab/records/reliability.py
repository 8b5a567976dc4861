"""The reliability diagram of a classifier: accuracy against confidence, bin by bin.

A calibrated model's bars sit on the diagonal: of the test examples it gives confidence
about 0.8, about 80 % are right. Bars below the diagonal are over-confidence (what a network
trained without regularization usually shows), above it under-confidence. The hatched gap
of each bin, weighted by its share of the examples (the lower panel), sums to the ECE.
Saved as `reliability.png` in the run directory and logged to TensorBoard's IMAGES tab;
one column per classifier (a multi-task run: per classification task).
"""

from collections.abc import Mapping

import numpy as np
from matplotlib.figure import Figure  # no pyplot: no global state, no window, any backend


def ece(bins: Mapping[str, np.ndarray]) -> float:
    """Σ_m |B_m|/n · |acc(B_m) − conf(B_m)| from the bins' counts, accuracies, confidences."""
    count = bins["count"]
    return float((count * np.abs(bins["accuracy"] - bins["confidence"])).sum() / count.sum())


def plot(panels: Mapping[str, Mapping[str, np.ndarray]], title: str = "Reliability") -> Figure:
    """One column per classifier: accuracy per confidence bin over the diagonal (top), the
    share of examples per bin (bottom). `panels` maps a name ("" for a single classifier)
    to its `count`, `confidence` and `accuracy` per bin (objectives.calibration)."""
    width, height = 4.5 * len(panels), 5.5
    fig = Figure(figsize=(width, height), dpi=100)
    axes = fig.subplots(2, len(panels), squeeze=False, height_ratios=[3, 1], sharex=True)
    for column, (name, bins) in enumerate(panels.items()):
        _draw(axes[0, column], axes[1, column], bins, name)
    fig.suptitle(title)
    # fixed margins in inches (tight_layout's draw of its own cost 60 ms a figure): 0.65 on
    # the left for the labels, 0.9 between columns (the next one's), 0.66 above for titles
    fig.subplots_adjust(
        left=0.65 / width,
        right=1 - 0.25 / width,
        bottom=0.6 / height,
        top=1 - 0.66 / height,
        wspace=0.25,
        hspace=0.125,
    )
    return fig


def _draw(top, bottom, bins: Mapping[str, np.ndarray], name: str) -> None:
    """One classifier's panels: bars of accuracy, their gap to the mean confidence shaded."""
    m = len(bins["count"])
    edges = np.linspace(0, 1, m + 1)
    left, width = edges[:-1], 1 / m
    filled = bins["count"] > 0
    top.plot([0, 1], [0, 1], color="0.4", ls="--", lw=1, label="calibrated")
    top.bar(
        left[filled],
        bins["accuracy"][filled],
        width,
        align="edge",
        color="#1f77b4",
        edgecolor="white",
        label="accuracy",
    )
    gap = bins["confidence"] - bins["accuracy"]  # hatched: from the accuracy to the confidence
    top.bar(
        left[filled],
        gap[filled],
        width,
        bottom=bins["accuracy"][filled],
        align="edge",
        fill=False,
        hatch="//",
        edgecolor="#d62728",
        lw=0.8,
        label="gap to the mean confidence",
    )
    top.set_ylim(0, 1)
    top.set_ylabel("accuracy")
    top.set_title(f"{name + ': ' if name else ''}ECE = {ece(bins):.4f} ({m} bins)", fontsize=10)
    top.legend(loc="upper left", fontsize=8)
    top.grid(alpha=0.3)
    share = bins["count"] / bins["count"].sum()
    bottom.bar(left, share, width, align="edge", color="0.5", edgecolor="white")
    bottom.set_xlim(0, 1)
    bottom.set_xlabel("confidence (probability of the predicted class)")
    bottom.set_ylabel("share")
