"""The model section of the configuration (M2, M3): which architecture, and its sizes."""

from __future__ import annotations

from dataclasses import dataclass

from harness.sections import require, require_choice

ARCHS = ("cnn", "linear")  # `model.arch`: M2 DigitCNN or M3 LinearClassifier


@dataclass(frozen=True)
class ModelConfig:
    """M2/M3: the plan's model; `arch` picks M2 or M3, the other keys size M2."""

    arch: str = "cnn"
    """One of ARCHS: cnn (M2 DigitCNN) or linear (M3 LinearClassifier)."""
    channels: int = 32
    """M2: the first two ConvBlocks' width; >= 1."""
    deep_channels: int = 64
    """M2: the last two ConvBlocks' width; >= 1."""
    dropout: float = 0.3
    """M2: dropout before the linear head; in [0, 1)."""

    def check(self) -> None:
        require_choice(self.arch, "model.arch", ARCHS)
        for key in ("channels", "deep_channels"):
            require(getattr(self, key) >= 1, f"model.{key}", "must be >= 1")
        require(0.0 <= self.dropout < 1.0, "model.dropout", "must be in [0, 1)")
