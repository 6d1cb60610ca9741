"""D1 row format: 64 pixel counts in 0–16 (an 8×8 image, row by row), then the label 0–9,
comma-separated, one row a line.
"""

from __future__ import annotations

import numpy as np
from harness.errors import ProjectError

SIDE = 8  # the images are 8×8
PIXELS = SIDE * SIDE
MAX_COUNT = 16  # each pixel counts the set pixels of a 4×4 block
NUM_CLASSES = 10  # the digits 0–9


class DigitsFormatError(ProjectError, ValueError):
    """A row of the digits file is malformed; the message names its line."""


def parse_rows(text: str, location: str) -> tuple[np.ndarray, np.ndarray]:
    """D1: the file's images (N, 8, 8) uint8 and labels (N,) int64.

    A row with the wrong number of fields, a field that is not an integer, a pixel outside
    0–16 or a label outside 0–9 is an error naming `location` and the line (1-based).
    Blank lines at the end are allowed.
    """
    lines = text.rstrip("\n").split("\n")
    rows = np.empty((len(lines), PIXELS + 1), dtype=np.int64)
    for number, line in enumerate(lines, start=1):
        rows[number - 1] = parse_line(line, f"{location}, line {number}")
    return rows[:, :PIXELS].astype(np.uint8).reshape(-1, SIDE, SIDE), rows[:, PIXELS]


def parse_line(line: str, where: str) -> list[int]:
    """D1: one row's 65 integers, checked."""
    fields = line.split(",")
    if len(fields) != PIXELS + 1:
        raise DigitsFormatError(f"{where}: {len(fields)} fields, expected {PIXELS + 1}")
    try:
        values = [int(field) for field in fields]
    except ValueError:
        raise DigitsFormatError(f"{where}: a field is not an integer: {line!r}") from None
    for column, value in enumerate(values[:PIXELS], start=1):
        if not 0 <= value <= MAX_COUNT:
            raise DigitsFormatError(f"{where}: pixel {column} is {value}, outside 0–{MAX_COUNT}")
    if not 0 <= values[PIXELS] < NUM_CLASSES:
        raise DigitsFormatError(f"{where}: label {values[PIXELS]} is outside 0–9")
    return values
