"""E1-E4: exact split scoring (D5), derived metrics and the reference baselines."""

from __future__ import annotations

import contextlib
import json
import math
import signal
from collections.abc import Callable, Iterator

import pytest
import torch

from project.data.dataset import CharTokenizer, PreparedData
from project.model.interface import LanguageModel
from project.testing.evaluator import evaluate, score_split
from project.testing.metrics import (
    bits_per_char,
    perplexity,
    topk_hits,
    uniform_loss,
    unigram_log_probs,
    unigram_loss,
)
from project.utils.config import EvalConfig

# score_split's loss against the brute force's, the same model scored in other batches:
# measured with torch 2.13 on a 2-core AMD EPYC (AVX-512), 1 and 2 threads,
# ATEN_CPU_CAPABILITY unset (avx512), avx2 and default, at most 1.1e-8 apart (relative).
SCORE_REL = 1e-5


def brute_force_score(
    model: LanguageModel, ids: torch.Tensor, stride: int
) -> tuple[float, float, float]:
    """Score each position p = 1..N−1 on its own, with the context D5 gives it.

    The first window holds ids[0 : L] (L = min(T, N−1)) and scores targets 1..L; window
    k ≥ 1 ends at min(L + k·S, N−1), starts L before its end and scores what is new.
    """
    block = model.block_size
    n = len(ids)
    length = min(block, n - 1)
    nll, top1, top5 = 0.0, 0, 0
    model.eval()
    with torch.no_grad():
        for p in range(1, n):
            if p <= length:
                start = 0
            else:
                k = math.ceil((p - length) / stride)
                start = min(length + k * stride, n - 1) - length
            assert p - start <= block
            logits = model(ids[None, start:p])[0, -1].double()
            target = int(ids[p])
            nll -= torch.log_softmax(logits, dim=-1)[target].item()
            top1 += int(logits.argmax()) == target
            top5 += target in logits.topk(5).indices.tolist()
    return nll / (n - 1), top1 / (n - 1), top5 / (n - 1)


@pytest.mark.parametrize(("n", "stride", "batch_size"), [(61, 3, 5), (61, None, 64), (12, 5, 2)])
def test_score_split_equals_brute_force_per_position(
    make_model: Callable[..., LanguageModel], n: int, stride: int | None, batch_size: int
) -> None:
    model = make_model(vocab_size=11, block_size=8, dropout=0.2)  # dropout must be off in eval
    torch.manual_seed(3)
    ids = torch.randint(0, 11, (n,))
    score = score_split(
        model.train(), ids, EvalConfig(stride=stride, batch_size=batch_size), "fp32"
    )
    assert model.training  # mode restored
    loss, top1, top5 = brute_force_score(model, ids, stride or 8 // 2)
    assert score.scored == n - 1
    assert score.loss_nats == pytest.approx(loss, rel=SCORE_REL)
    assert score.top1_accuracy == pytest.approx(top1)
    assert score.top5_accuracy == pytest.approx(top5)
    assert score.top1_accuracy <= score.top5_accuracy


@contextlib.contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    def expire(signum: int, frame: object) -> None:
        raise TimeoutError(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def test_score_split_terminates_for_a_one_character_context(
    make_model: Callable[..., LanguageModel],
) -> None:
    model = make_model(vocab_size=5, block_size=1)
    ids = torch.randint(0, 5, (20,))
    with time_limit(60.0):  # a hang guard: it ends in milliseconds
        score = score_split(model, ids, EvalConfig(stride=None, batch_size=64), "fp32")
    assert score.scored == 19
    assert score.loss_nats == pytest.approx(brute_force_score(model, ids, 1)[0], rel=SCORE_REL)


def test_topk_hits_counts_only_scored_positions() -> None:
    logits = torch.tensor([[[0.0, 3.0, 1.0, 2.0], [5.0, 0.0, 0.0, 1.0], [0.0, 0.0, 0.0, 9.0]]])
    targets = torch.tensor([[1, 3, 0]])  # top-1 hit, top-2 hit, miss
    mask = torch.tensor([[True, True, True]])
    assert topk_hits(logits, targets, mask, 1).item() == 1
    assert topk_hits(logits, targets, mask, 2).item() == 2
    assert topk_hits(logits, targets, mask, 10).item() == 3  # k larger than V
    assert topk_hits(logits, targets, torch.tensor([[False, True, True]]), 2).item() == 1


def test_unigram_baseline_is_add_one_smoothed_frequency() -> None:
    vocab = 5
    train = torch.tensor([0, 0, 1, 2, 2, 2])  # ids 3 and 4 never occur in training
    targets = torch.tensor([2, 4, 0, 2])
    counts = [2, 1, 3, 0, 0]
    total = sum(counts) + vocab
    probs = [(c + 1) / total for c in counts]
    expected = -sum(math.log(probs[t]) for t in targets.tolist()) / len(targets)
    assert unigram_loss(train, targets, vocab) == pytest.approx(expected, rel=1e-12)
    log_probs = unigram_log_probs(train, vocab)
    assert log_probs.exp().sum().item() == pytest.approx(1.0)
    assert log_probs[4].item() == pytest.approx(math.log(1 / 11))


def test_uniform_bits_per_char_and_perplexity() -> None:
    assert uniform_loss(65) == pytest.approx(math.log(65))
    assert bits_per_char(uniform_loss(65)) == pytest.approx(math.log2(65))
    assert bits_per_char(1.4697) == pytest.approx(1.4697 / math.log(2))
    assert perplexity(1.4697) == pytest.approx(math.exp(1.4697))
    assert perplexity(uniform_loss(65)) == pytest.approx(65)


def split_text(text: str) -> PreparedData:
    """`text` as prepared data: its first 50 characters train, the rest validate."""
    tokenizer = CharTokenizer.from_text(text)
    ids = torch.tensor(tokenizer.encode(text))
    return PreparedData(ids[:50], ids[50:], tokenizer, manifest={})


def test_evaluate_reports_model_and_baselines_on_the_same_positions(
    make_model: Callable[..., LanguageModel],
) -> None:
    data = split_text("To be, or not to be, that is the question:\nWhether 'tis nobler in the mind")
    vocab = data.tokenizer.vocab_size
    model = make_model(vocab_size=vocab, block_size=8)
    config = EvalConfig(stride=None, batch_size=4)
    metrics = evaluate(model, data, config, "fp32")
    score = score_split(model, data.val, config, "fp32")
    assert metrics["scored_chars"] == len(data.val) - 1
    assert metrics["stride"] == 4
    assert metrics["val_loss_nats"] == score.loss_nats
    assert metrics["bits_per_char"] == pytest.approx(score.loss_nats / math.log(2))
    assert metrics["perplexity"] == pytest.approx(math.exp(score.loss_nats))
    uniform = metrics["baselines"]["uniform"]
    assert uniform["loss_nats"] == pytest.approx(math.log(vocab))
    assert uniform["bits_per_char"] == pytest.approx(math.log2(vocab))
    unigram = metrics["baselines"]["unigram"]
    counts = torch.bincount(data.train, minlength=vocab).double() + 1
    hand = -(counts / counts.sum()).log()[data.val[1:]].mean().item()
    assert unigram["loss_nats"] == pytest.approx(hand, rel=1e-12)
    assert metrics["beats_uniform"] == (score.loss_nats < math.log(vocab))
    assert metrics["beats_unigram"] == (score.loss_nats < hand)


def test_every_figure_says_how_to_show_it_and_matches_its_field(
    make_model: Callable[..., LanguageModel],
) -> None:
    data = split_text("Now is the winter of our discontent made glorious summer by this sun")
    model = make_model(vocab_size=data.tokenizer.vocab_size, block_size=8)
    metrics = json.loads(json.dumps(evaluate(model, data, EvalConfig(None, 4), "fp32")))
    figures = {figure["name"]: figure for figure in metrics["figures"]}
    assert list(figures) == [
        "val_loss_nats",
        "bits_per_char",
        "perplexity",
        "top1_accuracy",
        "top5_accuracy",
    ]
    for name, figure in figures.items():
        assert figure["value"] == metrics[name]
        assert set(figure) == {"name", "label", "value", "unit", "format", "summary", "baselines"}
        assert format(figure["value"], figure["format"])  # a valid format spec
    assert [name for name, figure in figures.items() if figure["summary"]] == ["bits_per_char"]
    for name, key in (("val_loss_nats", "loss_nats"), ("bits_per_char", "bits_per_char")):
        assert figures[name]["baselines"] == {
            model_name: record[key] for model_name, record in metrics["baselines"].items()
        }
    assert figures["top1_accuracy"]["baselines"] == {}  # E4 defines no baseline accuracy
