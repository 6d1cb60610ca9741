"""The one model factory: the architecture that `model.arch` names, built from the model
config. Adding an architecture is its model file, its line in ARCHITECTURES and its name
in utils/config.py's ARCHS (what the config check accepts before any work).
"""

from __future__ import annotations

from collections.abc import Callable

from ..model.gpt import CharGPT
from ..model.interface import LanguageModel
from ..utils.config import ConfigError, ModelConfig

ARCHITECTURES: dict[str, Callable[[ModelConfig, int], LanguageModel]] = {
    "gpt": CharGPT,  # M8
}


def build_model(config: ModelConfig, vocab_size: int) -> LanguageModel:
    """The model `config.arch` names, for a vocabulary of `vocab_size`, initialised from
    PyTorch's global generator (seeded by the caller), on the CPU.
    """
    architecture = ARCHITECTURES.get(config.arch)
    if architecture is None:  # ModelConfig.check refuses it first, from ARCHS
        raise ConfigError(
            f"config key 'model.arch' must be one of {', '.join(ARCHITECTURES)}; "
            f"got {config.arch!r}"
        )
    return architecture(config, vocab_size)
