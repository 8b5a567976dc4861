"""A run's figures, drawn once: the same pixels go to the PNG file and to TensorBoard.

Drawing is most of what a figure costs (its text layout above all): matplotlib's
`savefig` draws the figure, and TensorBoard's `add_figure` draws it again to read its
pixels. Here the figure is drawn once on an Agg canvas at its own dpi, which is what
`savefig` writes, and its RGBA pixels are written to the file and returned for the loggers.
"""

from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image


def render(fig: Figure) -> np.ndarray:
    """The figure's pixels, (height, width, 4) RGBA uint8, at its dpi."""
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba()).copy()


def save_png(fig: Figure, path: Path) -> np.ndarray:
    """Write `fig` to `path` as a PNG; returns its pixels (`render`), for the loggers."""
    pixels = render(fig)
    Image.fromarray(pixels).save(path, dpi=(fig.dpi, fig.dpi))
    return pixels
