"""E1 on the validation split (D5 windows): the loss-only path that training selects its
checkpoints by (T7). Nothing here computes accuracy or baselines, so an edit of those
(testing/metrics.py, testing/evaluator.py) does not retrain.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
import torch.nn.functional as F
from harness.device import autocast, inference_mode

from ..data.dataset import PreparedData
from ..data.loader import eval_batches, eval_windows
from ..model.interface import LanguageModel
from ..utils.config import ConfigError, EvalConfig


def eval_stride(config: EvalConfig, block_size: int) -> int:
    """D5: the stride S, by default T/2 (at least 1, for a context of one character)."""
    return config.stride or max(1, block_size // 2)


def require_full_window(n_ids: int, block_size: int) -> None:
    """D5 scores windows of T+1 ids (T inputs, T targets): a split that holds none cannot be
    scored, which would pass a loss over fewer positions off as the split's.
    """
    if n_ids < block_size + 1:
        raise ConfigError(
            f"the validation split has {n_ids} characters, fewer than one full window of "
            f"model.block_size + 1 = {block_size + 1}: it cannot be scored; use a longer "
            "text, a larger validation share (a lower data.train_fraction) or a smaller "
            "model.block_size"
        )


def scored_batches(
    model: LanguageModel, ids: torch.Tensor, config: EvalConfig, precision: str
) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]]:
    """D5 over a split: (fp32 logits (B, T, V), targets (B, T), mask (B, T) of the positions
    each window scores, per-position losses in nats (B, T)) for every batch of windows.
    """
    block_size = model.block_size
    require_full_window(len(ids), block_size)
    windows = eval_windows(len(ids), block_size, eval_stride(config, block_size))
    with inference_mode(model):
        for inputs, targets, mask in eval_batches(ids, windows, block_size, config.batch_size):
            with autocast(ids.device, precision):
                logits = model(inputs)
            logits = logits.float()
            losses = F.cross_entropy(logits.transpose(1, 2), targets, reduction="none")
            yield logits, targets, mask, losses


def scored_positions(ids: torch.Tensor, config: EvalConfig, block_size: int) -> int:
    """How many positions D5's windows score: every character after the first."""
    windows = eval_windows(len(ids), block_size, eval_stride(config, block_size))
    return sum(w.scored for w in windows)


def split_loss(
    model: LanguageModel, ids: torch.Tensor, config: EvalConfig, precision: str
) -> float:
    """E1: mean loss in nats over every scored position of `ids`, summed on the device and
    read back once.
    """
    nll = torch.zeros((), dtype=torch.float64, device=ids.device)
    for _, _, mask, losses in scored_batches(model, ids, config, precision):
        nll += losses[mask].double().sum()
    return nll.item() / scored_positions(ids, config, model.block_size)


def validation_loss(
    model: LanguageModel, data: PreparedData, config: EvalConfig, precision: str
) -> float:
    """E1 on the validation split, the number T7 selects checkpoints by."""
    return split_loss(model, data.val, config, precision)
