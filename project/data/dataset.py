"""D3 Vocabulary and encoding, and the prepared splits as the other stages read them."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from harness.inputs import StaleInputError, require, verify
from harness.io import read_json

ID_BYTES = np.dtype(np.uint16).itemsize  # D3: ids on disk
REBUILD = "rebuild it: snakemake --forcerun prepare, or python run.py prepare"


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
        """D3: text → ids; unknown characters raise an error naming every one of them."""
        try:
            return [self.ids[char] for char in text]
        except KeyError:
            raise UnknownCharacterError(self._unknown_message(text)) from None

    def _unknown_message(self, text: str) -> str:
        """Every distinct unknown character, in order of first appearance, with its position."""
        first_seen: dict[str, int] = {}
        for position, char in enumerate(text):
            if char not in self.ids and char not in first_seen:
                first_seen[char] = position
        vocabulary = f"not in the vocabulary of {self.vocab_size} characters"
        if len(first_seen) == 1:
            [(char, position)] = first_seen.items()
            return f"character {char!r} (U+{ord(char):04X}) at position {position} is {vocabulary}"
        listed = ", ".join(
            f"{char!r} (U+{ord(char):04X}) first at position {position}"
            for char, position in first_seen.items()
        )
        return f"{len(first_seen)} distinct characters are unknown: {listed}; each is {vocabulary}"

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
class DataFiles:
    """Where the `prepare` stage writes the prepared data (the caller names the files)."""

    train: Path  # D2 training split, uint16 ids
    val: Path  # D2 validation split
    vocab: Path  # D3 vocabulary
    manifest: Path  # source digest, sizes, V, each file's size and SHA-256; written last

    @classmethod
    def named(cls, files: dict[str, Path]) -> DataFiles:
        """From a stage's files by their names (data/stage_prepare.py's outputs)."""
        return cls(files["train_ids"], files["val_ids"], files["vocab"], files["manifest"])

    def outputs(self) -> dict[str, Path]:
        """The files the manifest records, by field name."""
        return {"train": self.train, "val": self.val, "vocab": self.vocab}

    def check(self, *names: str) -> dict:
        """The manifest, after checking it (its own digest), the named files (default: all)
        against its record, and the files against each other.
        """
        require([self.manifest], "prepare")
        manifest = read_json(self.manifest)
        if not isinstance(manifest, dict) or manifest.get("digest") != manifest_digest(manifest):
            raise StaleInputError(
                f"{self.manifest} is not the manifest the `prepare` stage wrote (edited, or "
                f"from another version?): its content does not match its digest; {REBUILD}"
            )
        for name in names or tuple(self.outputs()):
            verify(self.outputs()[name], manifest["files"][name], "prepare", self.manifest)
        self._agree(manifest, names or tuple(self.outputs()))
        return manifest

    def _agree(self, manifest: dict, names: tuple[str, ...]) -> None:
        """The sizes the manifest states are those of the files it records."""
        found = {}
        if "vocab" in names:
            found["vocab_size"] = CharTokenizer.load(self.vocab).vocab_size
        if "train" in names:
            found["train_chars"] = self.train.stat().st_size // ID_BYTES
        if "val" in names:
            found["val_chars"] = self.val.stat().st_size // ID_BYTES
        if {"train", "val"} <= set(names):
            found["n_chars"] = found["train_chars"] + found["val_chars"]
        wrong = {key: value for key, value in found.items() if manifest[key] != value}
        if wrong:
            stated = ", ".join(f"{k} {manifest[k]} (the files: {v})" for k, v in wrong.items())
            raise StaleInputError(f"{self.manifest} contradicts its files: {stated}; {REBUILD}")


def manifest_digest(manifest: dict) -> str:
    """SHA-256 of the manifest's fields other than `digest` itself (canonical JSON)."""
    fields = {key: value for key, value in manifest.items() if key != "digest"}
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True)
class PreparedData:
    """The encoded splits (D2) and vocabulary (D3) written by the `prepare` stage."""

    train: torch.Tensor
    val: torch.Tensor
    tokenizer: CharTokenizer
    manifest: dict

    @classmethod
    def load(cls, files: DataFiles) -> PreparedData:
        manifest = files.check()
        return cls(
            train=_read_ids(files.train),
            val=_read_ids(files.val),
            tokenizer=CharTokenizer.load(files.vocab),
            manifest=manifest,
        )

    def to(self, device: torch.device) -> PreparedData:
        """The splits on `device` (the tokenizer and manifest stay as they are)."""
        return PreparedData(
            self.train.to(device), self.val.to(device), self.tokenizer, self.manifest
        )


def _read_ids(path: Path) -> torch.Tensor:
    """uint16 ids on disk → int64 tensor (the dtype embedding lookups and losses want)."""
    return torch.from_numpy(np.fromfile(path, dtype=np.uint16).astype(np.int64))
