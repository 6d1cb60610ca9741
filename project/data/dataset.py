"""D3 Vocabulary and encoding, and the prepared splits as the other stages read them."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from utils.io import read_json

TRAIN_FILE = "train.bin"
VAL_FILE = "val.bin"
VOCAB_FILE = "vocab.json"
MANIFEST_FILE = "manifest.json"


class UnknownCharacterError(ValueError):
    """A character outside the vocabulary was given to `CharTokenizer.encode`."""


class CharTokenizer:
    """D3 CharTokenizer: distinct characters sorted by code point, mapped to ids 0..V-1.

    `encode` and `decode` are exact inverses on any text made of vocabulary characters.
    """

    def __init__(self, chars: list[str]) -> None:
        if sorted(set(chars)) != chars:
            raise ValueError("vocabulary must be distinct characters sorted by code point")
        self.chars = chars
        self.ids = {char: index for index, char in enumerate(chars)}

    @classmethod
    def from_text(cls, text: str) -> CharTokenizer:
        """D3: the vocabulary of `text` (for Tiny Shakespeare, V = 65)."""
        return cls(sorted(set(text)))

    @property
    def vocab_size(self) -> int:
        return len(self.chars)

    def encode(self, text: str) -> list[int]:
        """D3: text → ids; an unknown character raises an error naming it and its position."""
        try:
            return [self.ids[char] for char in text]
        except KeyError:
            position = next(i for i, char in enumerate(text) if char not in self.ids)
            raise UnknownCharacterError(
                f"character {text[position]!r} (U+{ord(text[position]):04X}) at position "
                f"{position} is not in the vocabulary of {self.vocab_size} characters"
            ) from None

    def decode(self, ids: list[int]) -> str:
        """D3: ids → text."""
        return "".join(self.chars[i] for i in ids)

    def to_json(self) -> str:
        """The vocabulary as JSON text (ids are list positions)."""
        return json.dumps({"chars": self.chars}, ensure_ascii=False, indent=1) + "\n"

    @classmethod
    def load(cls, path: Path) -> CharTokenizer:
        return cls(read_json(path)["chars"])


@dataclass(frozen=True)
class PreparedData:
    """The encoded splits (D2) and vocabulary (D3) written by the `prepare` stage."""

    train: torch.Tensor
    val: torch.Tensor
    tokenizer: CharTokenizer
    manifest: dict

    @classmethod
    def load(cls, data_dir: Path) -> PreparedData:
        missing = [
            name
            for name in (TRAIN_FILE, VAL_FILE, VOCAB_FILE, MANIFEST_FILE)
            if not (data_dir / name).is_file()
        ]
        if missing:
            raise FileNotFoundError(
                f"prepared data is missing in {data_dir}: {', '.join(missing)}; "
                "run `python run.py prepare` with the same --out-dir first"
            )
        return cls(
            train=_read_ids(data_dir / TRAIN_FILE),
            val=_read_ids(data_dir / VAL_FILE),
            tokenizer=CharTokenizer.load(data_dir / VOCAB_FILE),
            manifest=read_json(data_dir / MANIFEST_FILE),
        )


def _read_ids(path: Path) -> torch.Tensor:
    """uint16 ids on disk → int64 tensor (the dtype embedding lookups and losses want)."""
    return torch.from_numpy(np.fromfile(path, dtype=np.uint16).astype(np.int64))
