"""E1-E4: losses, bits per character, perplexity, accuracy and the reference baselines."""

from __future__ import annotations

import math

import torch


def bits_per_char(loss_nats: float) -> float:
    """E2 Bits per character = E1 / ln 2."""
    return loss_nats / math.log(2)


def perplexity(loss_nats: float) -> float:
    """E2 Perplexity = exp(E1)."""
    return math.exp(loss_nats)


def topk_hits(
    logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor, k: int
) -> torch.Tensor:
    """E3: how many scored positions have their target among the k highest logits."""
    top = logits.topk(min(k, logits.shape[-1]), dim=-1).indices
    hit = (top == targets.unsqueeze(-1)).any(dim=-1)
    return (hit & mask).sum()


def uniform_loss(vocab_size: int) -> float:
    """E4 uniform model: every character equally likely, ln V nats (log₂ V bits)."""
    return math.log(vocab_size)


def unigram_log_probs(train_ids: torch.Tensor, vocab_size: int) -> torch.Tensor:
    """E4 unigram model fitted on the training split, with add-one smoothing so that a
    character absent from training keeps a finite loss.
    """
    counts = torch.bincount(train_ids.cpu(), minlength=vocab_size).double() + 1.0
    return (counts / counts.sum()).log()


def unigram_loss(train_ids: torch.Tensor, scored_targets: torch.Tensor, vocab_size: int) -> float:
    """E4: mean unigram loss (nats) on the scored positions."""
    log_probs = unigram_log_probs(train_ids, vocab_size)
    return float(-log_probs[scored_targets.cpu()].mean())


def baseline_record(loss_nats: float) -> dict[str, float]:
    """A reference model's figures, in the same units as the trained model's."""
    return {
        "loss_nats": loss_nats,
        "bits_per_char": bits_per_char(loss_nats),
        "perplexity": perplexity(loss_nats),
    }
