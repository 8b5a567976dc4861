"""A run's figures, drawn and encoded once: the PNG file's bytes also go to TensorBoard.

Drawing is most of what a figure costs (its text layout above all): matplotlib's
`savefig` draws the figure, and TensorBoard's `add_figure` draws it again to read its
pixels, then encodes them as a PNG again. Here the figure is drawn once on an Agg canvas
at its own dpi, which is what `savefig` writes, and the one PNG encoding of its pixels is
both the file and TensorBoard's image.
"""

import io
from pathlib import Path
from typing import NamedTuple

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image


def render(fig: Figure) -> np.ndarray:
    """The figure's pixels, (height, width, 4) RGBA uint8, at its dpi."""
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba()).copy()


class PNG(NamedTuple):
    """An encoded image and its size in pixels."""

    data: bytes
    height: int
    width: int


def save_png(fig: Figure, path: Path) -> PNG:
    """Write `fig` to `path` as a PNG (RGBA); returns the file's bytes, for the loggers."""
    pixels = render(fig)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG", dpi=(fig.dpi, fig.dpi))
    data = buffer.getvalue()
    Path(path).write_bytes(data)
    return PNG(data, *pixels.shape[:2])
