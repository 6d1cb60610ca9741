"""D2 Split and the prepared data: the verified file (D1) → its rows as an array, and the
manifest (split sizes, class counts, D3's statistics, the source digest).
"""

from __future__ import annotations

import io
import logging
from pathlib import Path
from typing import Any

import numpy as np
from harness.inputs import file_record
from harness.io import write_bytes, write_json

from .normalise import Normalisation
from .parse import NUM_CLASSES, PIXELS, DigitsFormatError, parse_rows
from .source import Source

logger = logging.getLogger(__name__)

TRAIN_END = 808  # D2: rows [0, 808) train
VAL_END = 898  # D2: rows [808, 898) validation, the rest test
SPLITS = ("train", "val", "test")


def split_bounds(n_rows: int) -> dict[str, tuple[int, int]]:
    """D2 Split: by position, no shuffling: [0, 808) train, [808, 898) validation,
    [898, N) test (899 images of the plan's file, the half scikit-learn's example tests on).
    """
    if n_rows <= VAL_END:
        raise DigitsFormatError(f"the file holds {n_rows} rows; the split needs over {VAL_END}")
    return {"train": (0, TRAIN_END), "val": (TRAIN_END, VAL_END), "test": (VAL_END, n_rows)}


def prepare(source: Source, rows_path: Path, manifest_path: Path) -> dict[str, Any]:
    """D1-D3: parse the verified file, write its rows (N, 65) uint8 in file order (64 pixel
    counts, then the label), then the manifest, last, so that its presence means the
    prepared data is complete.
    """
    images, labels = parse_rows(source.content.decode("ascii"), source.location)
    bounds = split_bounds(len(labels))
    start, stop = bounds["train"]
    normalisation = Normalisation.fit(images[start:stop])  # D3: the training split only
    rows = np.concatenate((images.reshape(-1, PIXELS), labels[:, None]), axis=1)
    buffer = io.BytesIO()
    np.save(buffer, rows.astype(np.uint8))
    manifest_path.unlink(missing_ok=True)
    write_bytes(rows_path, buffer.getvalue())
    manifest = {
        "plan_ids": ["D1", "D2", "D3"],
        "dataset": "optdigits",
        "verified": True,  # D1: every source is checked against the plan's digest
        "size": f"{len(labels):,} images",
        "source": {"origin": source.origin, "location": source.location},
        "source_sha256": source.sha256,
        "rows": len(labels),
        "splits": {
            name: {
                "start": first,
                "stop": last,
                "size": last - first,
                "class_counts": np.bincount(labels[first:last], minlength=NUM_CLASSES).tolist(),
            }
            for name, (first, last) in bounds.items()
        },
        "normalisation": {"mean": normalisation.mean, "std": normalisation.std},
        "files": {"rows": file_record(rows_path)},
    }
    write_json(manifest_path, manifest)
    logger.info(
        "prepared %d digits (train %d, val %d, test %d) from %s; pixel mean %.4f, std %.4f",
        len(labels),
        *(manifest["splits"][name]["size"] for name in SPLITS),
        source.origin,
        normalisation.mean,
        normalisation.std,
    )
    return manifest
