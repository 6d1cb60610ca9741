"""T1 loss, T2 optimiser groups, T3 schedule."""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Callable

import pytest
import torch

from model.gpt import CharGPT
from training.loss import next_char_loss
from training.optim import build_optimizer, build_schedule, learning_rate, warmup_steps
from utils.config import TrainConfig, load


@pytest.fixture(scope="module")
def plan_train() -> TrainConfig:
    config, _ = load()
    return config.train


# -- T1 -------------------------------------------------------------------------------------


def test_next_char_loss_is_mean_negative_log_softmax_of_the_target() -> None:
    torch.manual_seed(0)
    batch, length, vocab = 2, 3, 5
    logits = torch.randn(batch, length, vocab) * 3
    targets = torch.randint(0, vocab, (batch, length))
    total = 0.0
    for b in range(batch):
        for t in range(length):
            z = [float(v) for v in logits[b, t]]
            log_norm = math.log(sum(math.exp(v) for v in z))
            total += -(z[int(targets[b, t])] - log_norm)
    expected = total / (batch * length)
    loss = next_char_loss(logits, targets)
    assert loss.shape == ()
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_next_char_loss_is_fp32_for_bf16_logits() -> None:
    logits = torch.randn(2, 4, 7).bfloat16()
    targets = torch.randint(0, 7, (2, 4))
    loss = next_char_loss(logits, targets)
    assert loss.dtype == torch.float32
    expected = next_char_loss(logits.float(), targets)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)


# -- T2 -------------------------------------------------------------------------------------


def test_optimizer_decays_matrices_and_not_gains(
    make_model: Callable[..., CharGPT], plan_train: TrainConfig
) -> None:
    model = make_model()
    optimizer = build_optimizer(model, plan_train, torch.device("cpu"))
    assert isinstance(optimizer, torch.optim.AdamW)
    seen: list[int] = []
    for group in optimizer.param_groups:
        for p in group["params"]:
            seen.append(id(p))
            expected_decay = 0.1 if p.dim() >= 2 else 0.0
            assert group["weight_decay"] == expected_decay
        assert group["betas"] == (0.9, 0.99)
        assert group["eps"] == 1e-8
        assert group["lr"] == 1e-3
    assert sorted(seen) == sorted(id(p) for p in model.parameters())  # each exactly once
    assert len(seen) == len(set(seen))
    by_id = {id(p): name for name, p in model.named_parameters()}
    undecayed = {by_id[id(p)] for p in optimizer.param_groups[1]["params"]}
    assert undecayed == {n for n in by_id.values() if n.endswith("gain")}
    assert "embedding.weight" in {by_id[id(p)] for p in optimizer.param_groups[0]["params"]}


def test_optimizer_hyperparameters_come_from_the_config(
    make_model: Callable[..., CharGPT], plan_train: TrainConfig
) -> None:
    changed = dataclasses.replace(
        plan_train, beta1=0.8, beta2=0.95, adam_eps=1e-6, weight_decay=0.3, lr=5e-4
    )
    optimizer = build_optimizer(make_model(), changed, torch.device("cpu"))
    decays = [g["weight_decay"] for g in optimizer.param_groups]
    assert decays == [0.3, 0.0]
    for group in optimizer.param_groups:
        assert group["betas"] == (0.8, 0.95)
        assert group["eps"] == 1e-6
        assert group["lr"] == 5e-4


# -- T3 -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("total", "warmup"), [(122, 6), (10000, 100), (2000, 100), (19, 0)])
def test_warmup_length_is_min_of_100_and_5_percent(
    plan_train: TrainConfig, total: int, warmup: int
) -> None:
    assert warmup_steps(total, plan_train) == warmup


@pytest.mark.parametrize("total", [122, 1830, 10000])
def test_schedule_shape(plan_train: TrainConfig, total: int) -> None:
    warmup = warmup_steps(total, plan_train)
    lrs = [learning_rate(step, total, plan_train) for step in range(total)]
    assert lrs[0] == pytest.approx(1e-3 / warmup)
    for step in range(warmup):  # linear warm-up
        assert lrs[step] == pytest.approx(1e-3 * (step + 1) / warmup)
    assert lrs[warmup - 1] == pytest.approx(1e-3)  # peak at the end of the warm-up
    assert max(lrs) == pytest.approx(1e-3)
    assert lrs[total - 1] == pytest.approx(1e-4, rel=1e-9)  # min_lr at the last step
    after = lrs[warmup - 1 :]
    assert all(b <= a for a, b in itertools.pairwise(after))
    # Cosine: half-way through the decay the rate is the midpoint of peak and floor.
    mid = (warmup - 1 + total - 1) / 2
    if mid.is_integer():
        assert learning_rate(int(mid), total, plan_train) == pytest.approx(5.5e-4)


def test_lambda_schedule_sets_the_optimizer_rate_of_each_step(
    make_model: Callable[..., CharGPT], plan_train: TrainConfig
) -> None:
    total = 122
    model = make_model()
    optimizer = build_optimizer(model, plan_train, torch.device("cpu"))
    schedule = build_schedule(optimizer, total, plan_train)
    for step in range(total):
        for group in optimizer.param_groups:
            assert group["lr"] == pytest.approx(learning_rate(step, total, plan_train), rel=1e-12)
        optimizer.step()
        schedule.step()
