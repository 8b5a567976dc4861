"""The learning curve of a run: "training error decreases steadily over time, but validation
set error begins to rise again" (the slide before Algorithm 7.1).

Training and validation loss against the optimizer step, with i* (the best validation)
and the stop marked, and the phases of a protocol shaded. Saved as `learning_curve.png` in
the run directory and logged to TensorBoard's IMAGES tab.
"""

from matplotlib.figure import Figure  # no pyplot: no global state, no window, any backend

COLORS = {"train/loss": "#1f77b4", "val/loss": "#d62728"}


def plot(
    history: list[tuple[int, str, float]],
    best_step: int | None = None,
    stopped_step: int | None = None,
    phases: list[tuple[int, str]] = (),
    title: str = "Learning curve",
) -> Figure:
    """A figure of every (step, tag, value) in `history` whose tag is train/ or val/loss."""
    fig = Figure(figsize=(8, 4.5), dpi=100)
    ax = fig.subplots()
    for tag, color in COLORS.items():
        points = sorted((s, v) for s, t, v in history if t == tag)
        if points:
            steps, values = zip(*points, strict=True)
            label = "training loss J̃" if tag == "train/loss" else "validation loss J"
            ax.plot(
                steps,
                values,
                color=color,
                lw=1.8,
                label=label,
                marker="." if len(steps) < 40 else None,
            )
    val = {s: v for s, t, v in history if t == "val/loss"}
    if best_step is not None and best_step in val:
        ax.axvline(best_step, color="#2ca02c", ls="--", lw=1.2)
        ax.scatter(
            [best_step],
            [val[best_step]],
            color="#2ca02c",
            zorder=5,
            s=50,
            label=f"i* = {best_step}: best validation {val[best_step]:.4g}",
        )
    if stopped_step is not None:
        ax.axvline(
            stopped_step, color="0.3", ls=":", lw=1.2, label=f"stopped at step {stopped_step}"
        )
    ends = [start for start, _ in phases[2:]] + [None]
    for (start, name), end in zip(phases[1:], ends, strict=False):
        ax.axvspan(start, end or ax.get_xlim()[1], color="0.92", zorder=0)
        ax.text(start, 0.02, f" {name}", transform=ax.get_xaxis_transform(), fontsize=9)
    if any(v > 0 for _, _, v in history) and _spans_decades([v for _, _, v in history]):
        ax.set_yscale("log")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=9, framealpha=0.9)
    # fixed margins, not tight_layout: it lays out every text of the figure in a draw of its
    # own (60 ms here, twice the rest of the plot)
    fig.subplots_adjust(left=0.09, right=0.98, bottom=0.12, top=0.92)
    return fig


def _spans_decades(values: list[float]) -> bool:
    positive = [v for v in values if v > 0]
    return bool(positive) and max(positive) / min(positive) > 30
