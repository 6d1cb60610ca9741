"""T8 Reproducibility: one seed drives Python, NumPy and PyTorch."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    """T8: seed Python's, NumPy's and PyTorch's (CPU and CUDA) generators from one seed."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device


def seed_rank(seed: int, step: int, rank: int) -> None:
    """Under DDP: PyTorch's generators (dropout) get a stream of each process's own, drawn
    from (seed, step, rank) where a run starts or resumes; the checkpoint holds rank 0's.
    """
    torch.manual_seed(int(np.random.SeedSequence([seed, step, rank]).generate_state(1)[0]))


def rng_state() -> dict[str, Any]:
    """T8: every generator state a resumed run needs to continue bit for bit."""
    state: dict[str, Any] = {
        "python": random.getstate(),
        # Plain lists, not arrays, so checkpoints load with torch.load(weights_only=True).
        "numpy": _numpy_state_to_plain(np.random.get_state()),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """T8: restore what `rng_state` saved."""
    random.setstate(state["python"])
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _numpy_state_to_plain(state: tuple[Any, ...]) -> list[Any]:
    name, keys, pos, has_gauss, cached = state
    return [name, keys.tolist(), int(pos), int(has_gauss), float(cached)]
