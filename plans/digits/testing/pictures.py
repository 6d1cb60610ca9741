"""E2's confusion matrix and E5's hardest test images, drawn as PNG (matplotlib's Agg)."""

from __future__ import annotations

import io
import math
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ..data.parse import MAX_COUNT, NUM_CLASSES

COLUMNS = 4  # E5: the grid's width


def png(figure: Figure) -> bytes:
    """A figure drawn by matplotlib's Agg backend, as PNG bytes."""
    buffer = io.BytesIO()
    FigureCanvasAgg(figure).print_png(buffer)
    return buffer.getvalue()


def confusion_picture(confusion: np.ndarray, title: str) -> bytes:
    """E2: the 10×10 confusion matrix (rows: true digit, columns: predicted), each cell
    its count.
    """
    figure = Figure(figsize=(5.5, 5), dpi=100, layout="constrained")
    axes = figure.add_subplot()
    axes.imshow(confusion, cmap="Blues")
    digits = range(NUM_CLASSES)
    axes.set(xticks=digits, yticks=digits, xlabel="predicted digit", ylabel="true digit")
    axes.set_title(title)
    threshold = confusion.max() / 2
    for (row, column), count in np.ndenumerate(confusion):
        colour = "white" if count > threshold else "black"
        axes.text(column, row, str(count), ha="center", va="center", color=colour, fontsize=8)
    return png(figure)


def hardest_picture(counts: np.ndarray, hardest: list[dict[str, Any]]) -> bytes:
    """E5: the hardest images (n, 8, 8) as pixel counts, COLUMNS a row, each titled with
    its record's true digit, the predicted one and the predicted probability of the true
    digit.
    """
    rows = math.ceil(len(counts) / COLUMNS)
    figure = Figure(figsize=(2 * COLUMNS, 2.2 * rows), dpi=100, layout="constrained")
    grid = figure.subplots(rows, COLUMNS, squeeze=False)
    for axes in grid.flat:
        axes.set_axis_off()
    for axes, image, record in zip(grid.flat, counts, hardest, strict=False):
        axes.imshow(image, cmap="gray_r", vmin=0, vmax=MAX_COUNT)
        axes.set_title(
            f"true {record['true']} / pred {record['predicted']}\np(true) = {record['p_true']:.3f}",
            fontsize=9,
        )
    figure.suptitle("hardest test images: lowest probability of the true digit")
    return png(figure)
