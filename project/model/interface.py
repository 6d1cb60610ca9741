"""The model interface: all that the stages, the trainer, the evaluator, the sampler, the
checkpoint loader and the benchmark use of a model. Every architecture that
model/build.py knows implements it; nothing outside model/ names an architecture.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol, Self, runtime_checkable

import torch
from torch import nn


@runtime_checkable
class LanguageModel(Protocol):
    """A next-character model: ids (B, T) → logits (B, T, V).

    It is a torch.nn.Module: training wraps it in DistributedDataParallel and
    torch.compile, checkpoints hold its state_dict, and AdamW and clipping take its
    parameters. The nn.Module members listed below are the only ones callers use.
    model/base.py's CharModel supplies the parameter counts and the sampler.
    """

    vocab_size: int  # V; checkpoints record it, to build the model again
    block_size: int  # the context T that training windows and D5 scoring use
    # The repeated units that train.compile_scope=block compiles one by one (T5); a
    # model without them has an empty list (compile_scope=block then compiles nothing).
    blocks: nn.ModuleList
    training: bool

    def __call__(
        self, ids: torch.Tensor, *, blocks: Sequence[Callable[..., torch.Tensor]] | None = None
    ) -> torch.Tensor:
        """ids (B, t ≤ T) → logits (B, t, V); `blocks` run in place of self.blocks (the
        same blocks, each compiled on its own).
        """
        ...

    def flops_per_token(self) -> float:
        """Training FLOPs (forward and backward) per predicted position, for the
        benchmark's model FLOPs utilisation.
        """
        ...

    def num_parameters(self) -> int:
        """Parameters counted once (tied weights once)."""
        ...

    def parameters_by_module(self) -> dict[str, int]:
        """Parameters of each component, keyed by the plan file that defines it
        ("model/attention.py"): train_summary.json's `parameters_by_module`.
        """
        ...

    def generate(
        self, prompt_ids: list[int], n: int, temperature: float, top_k: int | None, seed: int
    ) -> list[int]:
        """E5: `n` ids sampled after the prompt (context cropped to the last T), with a
        generator of its own seeded by `seed`; the global random state is left alone.
        """
        ...

    # nn.Module's own members that callers use.
    def parameters(self, recurse: bool = True) -> Iterator[nn.Parameter]: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state_dict: dict[str, Any], strict: bool = True) -> Any: ...

    def to(self, device: torch.device | str) -> Self: ...

    def train(self, mode: bool = True) -> Self: ...

    def eval(self) -> Self: ...
