"""E1-E4: score the validation split exactly (D5) and compare with the baselines."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from data.dataset import PreparedData
from data.loader import eval_batches, eval_windows
from model.gpt import CharGPT
from testing.metrics import (
    baseline_record,
    bits_per_char,
    perplexity,
    topk_hits,
    uniform_loss,
    unigram_loss,
)
from utils.config import EvalConfig
from utils.device import autocast, inference_mode


@dataclass(frozen=True)
class SplitScore:
    """E1/E3 sums over every scored position of a split."""

    loss_nats: float
    top1_accuracy: float
    top5_accuracy: float
    scored: int


def eval_stride(config: EvalConfig, block_size: int) -> int:
    """D5: the stride S, by default T/2 (at least 1, for a context of one character)."""
    return config.stride or max(1, block_size // 2)


def score_split(
    model: CharGPT,
    ids: torch.Tensor,
    config: EvalConfig,
    precision: str,
) -> SplitScore:
    """E1 validation loss (nats per character) and E3 accuracy over the whole split (D5).

    Sums stay on the device and are read back once, at the end.
    """
    block_size = model.config.block_size
    windows = eval_windows(len(ids), block_size, eval_stride(config, block_size))
    device = ids.device
    nll = torch.zeros((), dtype=torch.float64, device=device)
    top1 = torch.zeros((), dtype=torch.int64, device=device)
    top5 = torch.zeros((), dtype=torch.int64, device=device)
    with inference_mode(model):
        for inputs, targets, mask in eval_batches(ids, windows, block_size, config.batch_size):
            with autocast(device, precision):
                logits = model(inputs)
            logits = logits.float()
            losses = F.cross_entropy(logits.transpose(1, 2), targets, reduction="none")
            nll += losses[mask].double().sum()
            top1 += topk_hits(logits, targets, mask, 1)
            top5 += topk_hits(logits, targets, mask, 5)
    scored = sum(w.scored for w in windows)
    return SplitScore(
        loss_nats=nll.item() / scored,
        top1_accuracy=top1.item() / scored,
        top5_accuracy=top5.item() / scored,
        scored=scored,
    )


def validation_loss(
    model: CharGPT, data: PreparedData, config: EvalConfig, precision: str
) -> float:
    """E1 on the validation split, the number T7 selects checkpoints by."""
    return score_split(model, data.val, config, precision).loss_nats


def evaluate(
    model: CharGPT, data: PreparedData, config: EvalConfig, precision: str
) -> dict[str, Any]:
    """E1-E4: the model's figures and the uniform and unigram baselines on the same
    positions (every validation character after the first).
    """
    score = score_split(model, data.val, config, precision)
    vocab_size = data.tokenizer.vocab_size
    uniform = baseline_record(uniform_loss(vocab_size))
    unigram = baseline_record(unigram_loss(data.train, data.val[1:], vocab_size))
    return {
        "plan_ids": ["E1", "E2", "E3", "E4"],
        "split": "val",
        "scored_chars": score.scored,
        "context": model.config.block_size,
        "stride": eval_stride(config, model.config.block_size),
        "val_loss_nats": score.loss_nats,
        "bits_per_char": bits_per_char(score.loss_nats),
        "perplexity": perplexity(score.loss_nats),
        "top1_accuracy": score.top1_accuracy,
        "top5_accuracy": score.top5_accuracy,
        "baselines": {"uniform": uniform, "unigram": unigram},
        "beats_uniform": score.loss_nats < uniform["loss_nats"],
        "beats_unigram": score.loss_nats < unigram["loss_nats"],
    }
