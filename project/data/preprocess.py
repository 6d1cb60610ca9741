"""D2 Split and the `prepare` stage: source text → encoded splits, vocabulary, manifest."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
from harness.errors import ProjectError
from harness.inputs import file_record
from harness.io import write_bytes, write_json, write_text

from ..data.dataset import CharTokenizer, DataFiles, manifest_digest
from ..data.download import SourceFile
from ..utils.config import DataConfig

logger = logging.getLogger(__name__)


class UnusableTextError(ProjectError, ValueError):
    """The source text cannot be trained on: not UTF-8, too short, too many characters."""


def split_point(n_chars: int, train_fraction: float) -> int:
    """D2 Split: the training split is [0, ⌊fraction·N⌋), the rest is validation.

    Contiguous and unshuffled, so the validation text is a different part of the plays.
    """
    return int(train_fraction * n_chars)


def read_text(path: Path) -> str:
    """The source as text; a file that is not UTF-8 gets an error that says so."""
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise UnusableTextError(
            f"{path} is not UTF-8 text ({error}); convert it, e.g. `iconv -t UTF-8`"
        ) from error


def encode_ids(tokenizer: CharTokenizer, text: str) -> np.ndarray:
    """D3: ids as uint16 on disk (any vocabulary up to 65,536 characters)."""
    if tokenizer.vocab_size > np.iinfo(np.uint16).max + 1:
        raise UnusableTextError(
            f"the text has {tokenizer.vocab_size} distinct characters; at most 65,536 fit "
            "the uint16 ids"
        )
    return np.array(tokenizer.encode(text), dtype=np.uint16)


def prepare(config: DataConfig, files: DataFiles, source: SourceFile) -> dict[str, Any]:
    """D2-D3: split the verified text (D1), encode it, write splits and manifest.

    The manifest is written last, so its presence means the folder is complete.
    """
    text = read_text(source.path)
    if len(text) < 2:
        raise UnusableTextError(f"{source.path} holds {len(text)} characters; nothing to train on")
    tokenizer = CharTokenizer.from_text(text)
    cut = split_point(len(text), config.train_fraction)
    train_ids = encode_ids(tokenizer, text[:cut])
    val_ids = encode_ids(tokenizer, text[cut:])
    files.manifest.unlink(missing_ok=True)
    write_bytes(files.train, train_ids.tobytes())
    write_bytes(files.val, val_ids.tobytes())
    write_text(files.vocab, tokenizer.to_json())
    manifest = {
        "plan_ids": ["D1", "D2", "D3"],
        # The text is the configured dataset only when it matched the configured digest;
        # with data.sha256 null it is the user's own text, named after its file.
        "dataset": config.dataset if config.sha256 else Path(source.location).name,
        "source": {"origin": source.origin, "location": source.location},
        "source_sha256": source.sha256,
        "verified": config.sha256 is not None,
        "n_chars": len(text),
        "size": f"{len(text):,} characters",
        "train_chars": len(train_ids),
        "val_chars": len(val_ids),
        "train_fraction": config.train_fraction,
        "vocab_size": tokenizer.vocab_size,
        "dtype": "uint16",
        # Size and SHA-256 of each file, which every reader checks (data/dataset.py).
        "files": {name: file_record(path) for name, path in files.outputs().items()},
    }
    manifest["digest"] = manifest_digest(manifest)  # last: a check of the fields above
    write_json(files.manifest, manifest)
    logger.info(
        "prepared %s: %d chars (train %d, val %d), V=%d from %s",
        config.dataset,
        len(text),
        len(train_ids),
        len(val_ids),
        tokenizer.vocab_size,
        source.origin,
    )
    return manifest
