"""T1-T8: loss, optimiser groups, schedule, stability, checkpoints, resume, seeding."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest
import torch
from harness.io import read_jsonl

from digits.data.dataset import PreparedDigits
from digits.model.config import ModelConfig
from digits.model.interface import build_model
from digits.training.checkpoint import load_checkpoint
from digits.training.loss import classification_loss
from digits.training.optim import learning_rate, parameter_groups, warmup_steps
from digits.training.precision import strict_fp32
from digits.training.setup import build_trainer
from digits.training.trainer import LAST, LOG, NonFiniteError, ResumeError, TrainState, Validation
from digits.utils.config import Config, TrainConfig


def config(epochs: int = 2, **train: object) -> Config:
    return Config(device="cpu", train=TrainConfig(epochs=epochs, **train))


def test_the_loss_is_the_mean_cross_entropy_in_nats() -> None:
    logits = torch.tensor([[0.0, 0.0], [2.0, 0.0]])
    expected = (math.log(2) + math.log(1 + math.exp(-2))) / 2
    assert classification_loss(logits, torch.tensor([1, 0])).item() == pytest.approx(expected)


def test_weight_decay_is_on_conv_and_linear_weights_only() -> None:
    model = build_model(ModelConfig())
    decayed, rest = parameter_groups(model, 5e-4)
    names = {id(p): name for name, p in model.named_parameters()}
    assert sorted(names[id(p)] for p in decayed["params"]) == [
        "features.0.conv.weight",
        "features.1.conv.weight",
        "features.3.conv.weight",
        "features.4.conv.weight",
        "head.weight",
    ]
    assert decayed["weight_decay"] == 5e-4 and rest["weight_decay"] == 0.0
    assert len(decayed["params"]) + len(rest["params"]) == len(list(model.parameters()))


def test_the_schedule_warms_up_over_5_percent_then_decays_to_1_percent() -> None:
    train = TrainConfig()
    total = 40 * 26
    warmup = warmup_steps(total, train)
    assert warmup == 52
    assert learning_rate(0, total, train) == pytest.approx(2e-3 / 52)
    assert learning_rate(warmup - 1, total, train) == pytest.approx(2e-3)
    assert learning_rate(total - 1, total, train) == pytest.approx(2e-5)
    rates = [learning_rate(step, total, train) for step in range(total)]
    assert all(a >= b for a, b in zip(rates[warmup - 1 :], rates[warmup:], strict=False))
    assert warmup_steps(10, train) == 1  # at least one
    assert learning_rate(0, 10, train) == pytest.approx(2e-3)


def test_selection_prefers_accuracy_then_the_lower_loss() -> None:
    state = TrainState(best_val_accuracy=0.9, best_val_loss=0.3)
    assert state.improves(Validation(loss=0.5, accuracy=0.91))
    assert state.improves(Validation(loss=0.2, accuracy=0.9))
    assert not state.improves(Validation(loss=0.3, accuracy=0.9))
    assert not state.improves(Validation(loss=0.1, accuracy=0.89))


def weights(model: torch.nn.Module) -> list[torch.Tensor]:
    return [t.clone() for t in model.state_dict().values()]


def test_resume_continues_bit_for_bit(prepared: PreparedDigits, tmp_path: Path) -> None:
    straight = build_trainer(config(3), prepared, tmp_path / "straight")
    summary = straight.train()
    assert summary["epochs_run"] == 3 and summary["steps"] == 78

    first = build_trainer(config(3), prepared, tmp_path / "resumed")
    first.config = dataclasses.replace(first.config, epochs=1)  # killed after epoch 1
    first.train()
    with torch.no_grad():  # a process that goes on after the checkpoint must not count
        next(first.model.parameters()).add_(1.0)
    second = build_trainer(config(3), prepared, tmp_path / "resumed")
    resumed = second.train(resume="strict")
    assert resumed["resumed_from_step"] == 26
    assert read_jsonl(tmp_path / "resumed" / LOG) == read_jsonl(tmp_path / "straight" / LOG)
    for a, b in zip(weights(straight.model), weights(second.model), strict=True):
        assert torch.equal(a, b)
    assert straight.optimizer.state_dict()["state"][0]["exp_avg"].equal(
        second.optimizer.state_dict()["state"][0]["exp_avg"]
    )


def test_two_runs_with_one_seed_give_the_same_losses(
    prepared: PreparedDigits, tmp_path: Path
) -> None:
    def losses(seed: int, folder: str) -> list[dict]:
        build_trainer(
            dataclasses.replace(config(1), seed=seed), prepared, tmp_path / folder
        ).train()
        return read_jsonl(tmp_path / folder / LOG)

    assert losses(1337, "a") == losses(1337, "b") != losses(7, "c")


def test_resume_refuses_other_settings_unless_told_to_restart(
    prepared: PreparedDigits, tmp_path: Path
) -> None:
    build_trainer(config(1, lr=1e-3), prepared, tmp_path).train()
    with pytest.raises(ResumeError, match=r"changed: config\.train\.lr"):
        build_trainer(config(1), prepared, tmp_path).train(resume="strict")
    summary = build_trainer(config(1), prepared, tmp_path).train(resume="restart-on-change")
    assert summary["resumed_from_step"] is None


def test_a_non_finite_loss_stops_at_its_step_and_keeps_the_last_checkpoint(
    prepared: PreparedDigits, tmp_path: Path
) -> None:
    trainer = build_trainer(config(2), prepared, tmp_path)
    trainer.config = dataclasses.replace(trainer.config, epochs=1)
    trainer.train()
    saved = (tmp_path / LAST).read_bytes()
    trainer = build_trainer(config(2), prepared, tmp_path)
    trainer.batches.padded[:] = math.nan  # every image of epoch 2 is NaN
    with pytest.raises(NonFiniteError, match=r"at step 27 \(epoch 2\): loss=nan.*from epoch 1"):
        trainer.train(resume="strict")
    assert (tmp_path / LAST).read_bytes() == saved
    assert load_checkpoint(tmp_path / LAST)["state"]["step"] == 26
    assert read_jsonl(tmp_path / LOG)[-1]["step"] == 27


def test_strict_fp32_turns_tf32_off_while_it_runs() -> None:
    conv = torch.backends.cudnn.conv
    before = conv.fp32_precision
    with strict_fp32():
        assert conv.fp32_precision == "ieee" == torch.backends.cuda.matmul.fp32_precision
    assert conv.fp32_precision == before
