"""E5 Samples: text that the trained model writes after a prompt."""

from __future__ import annotations

from ..data.dataset import CharTokenizer, UnknownCharacterError
from ..model.interface import LanguageModel
from ..utils.config import ConfigError, SampleConfig


def sample_text(model: LanguageModel, tokenizer: CharTokenizer, settings: SampleConfig) -> str:
    """E5: `settings.num_chars` characters generated from `settings.prompt` with a fixed
    seed, temperature and top-k (plan: 500 from "ROMEO:", 0.8, 40), prompt included.
    """
    try:
        prompt_ids = tokenizer.encode(settings.prompt)
    except UnknownCharacterError as error:
        raise ConfigError(
            f"sample.prompt {settings.prompt!r} cannot be written in the corpus's characters: "
            f"{error}; choose a prompt made of characters of the training text"
        ) from None
    ids = model.generate(
        prompt_ids,
        n=settings.num_chars,
        temperature=settings.temperature,
        top_k=settings.top_k,
        seed=settings.seed,
    )
    return settings.prompt + tokenizer.decode(ids)
