"""E1-E4: score the validation split exactly (D5) and compare with the baselines."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
from harness.contract import Figure

from ..data.dataset import PreparedData
from ..model.interface import LanguageModel
from ..testing.metrics import (
    baseline_record,
    bits_per_char,
    perplexity,
    topk_hits,
    uniform_loss,
    unigram_loss,
)
from ..testing.validation import eval_stride, scored_batches, scored_positions
from ..utils.config import EvalConfig


@dataclass(frozen=True)
class SplitScore:
    """E1/E3 sums over every scored position of a split."""

    loss_nats: float
    top1_accuracy: float
    top5_accuracy: float
    scored: int


def score_split(
    model: LanguageModel,
    ids: torch.Tensor,
    config: EvalConfig,
    precision: str,
) -> SplitScore:
    """E1 validation loss (nats per character) and E3 accuracy over the whole split (D5),
    in one pass over testing/validation.py's windows.

    Sums stay on the device and are read back once, at the end.
    """
    device = ids.device
    nll = torch.zeros((), dtype=torch.float64, device=device)
    top1 = torch.zeros((), dtype=torch.int64, device=device)
    top5 = torch.zeros((), dtype=torch.int64, device=device)
    for logits, targets, mask, losses in scored_batches(model, ids, config, precision):
        nll += losses[mask].double().sum()
        top1 += topk_hits(logits, targets, mask, 1)
        top5 += topk_hits(logits, targets, mask, 5)
    scored = scored_positions(ids, config, model.block_size)
    return SplitScore(
        loss_nats=nll.item() / scored,
        top1_accuracy=top1.item() / scored,
        top5_accuracy=top5.item() / scored,
        scored=scored,
    )


def figures(score: SplitScore, references: dict[str, dict[str, float]]) -> list[Figure]:
    """Every figure of metrics.json, in the order the report and the summary show them; a
    new metric is one more `Figure` here (`references`: the baselines' records by name).
    """

    def of(key: str) -> dict[str, float]:
        return {name: record[key] for name, record in references.items()}

    loss = score.loss_nats
    return [
        Figure(
            "val_loss_nats",
            "validation loss",
            loss,
            "nats/char",
            ".4f",
            baselines=of("loss_nats"),
        ),
        Figure(
            "bits_per_char",
            "validation bits per character",
            bits_per_char(loss),
            "bits/char",
            ".4f",
            summary=True,
            baselines=of("bits_per_char"),
        ),
        Figure(
            "perplexity",
            "validation perplexity",
            perplexity(loss),
            "",
            ".3f",
            baselines=of("perplexity"),
        ),
        Figure("top1_accuracy", "top-1 accuracy", score.top1_accuracy, "", ".3f"),
        Figure("top5_accuracy", "top-5 accuracy", score.top5_accuracy, "", ".3f"),
    ]


def evaluate(
    model: LanguageModel, data: PreparedData, config: EvalConfig, precision: str
) -> dict[str, Any]:
    """E1-E4: the model's figures and the uniform and unigram baselines on the same
    positions (every validation character after the first): each figure under its name,
    and all of them with how to show them in `figures`.
    """
    score = score_split(model, data.val, config, precision)
    vocab_size = data.tokenizer.vocab_size
    uniform = baseline_record(uniform_loss(vocab_size))
    unigram = baseline_record(unigram_loss(data.train, data.val[1:], vocab_size))
    declared = figures(score, {"uniform": uniform, "unigram": unigram})
    return {
        "plan_ids": ["E1", "E2", "E3", "E4"],
        "split": "val",
        "scored_chars": score.scored,
        "context": model.block_size,
        "stride": eval_stride(config, model.block_size),
        **{figure.name: figure.value for figure in declared},
        "baselines": {"uniform": uniform, "unigram": unigram},
        "beats_uniform": score.loss_nats < uniform["loss_nats"],
        "beats_unigram": score.loss_nats < unigram["loss_nats"],
        "figures": [asdict(figure) for figure in declared],
        "model_name": type(model).__name__,
        "references": {"unigram": "Unigram (train split, add-one)", "uniform": "Uniform"},
        "note": f"Scored characters: {score.scored:,} (context {model.block_size}, "
        f"stride {eval_stride(config, model.block_size)}).",
    }
