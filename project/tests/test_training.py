"""T1 loss, T2 optimiser groups, T3 schedule, T7 checkpoints."""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import os
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from project.model.build import build_model
from project.model.interface import LanguageModel
from project.tests.dispatch import load
from project.training.checkpoint import LAST, CheckpointError, load_checkpoint, save_checkpoint
from project.training.loss import next_char_loss
from project.training.optim import build_optimizer, build_schedule, learning_rate, warmup_steps
from project.training.resume import ResumeError, log_until
from project.training.trainer import Trainer
from project.utils.config import Config, TrainConfig


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
    make_model: Callable[..., LanguageModel], plan_train: TrainConfig
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
    make_model: Callable[..., LanguageModel], plan_train: TrainConfig
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


@pytest.mark.parametrize("cuda_graph", [False, True])
def test_lambda_schedule_sets_the_optimizer_rate_of_each_step(
    make_model: Callable[..., LanguageModel], plan_train: TrainConfig, cuda_graph: bool
) -> None:
    total = 122
    model = make_model()
    train = dataclasses.replace(plan_train, cuda_graph=cuda_graph)
    optimizer = build_optimizer(model, train, torch.device("cpu"))
    lr_tensors = [group["lr"] for group in optimizer.param_groups]
    schedule = build_schedule(optimizer, total, train)
    # A CUDA graph reads the learning rate from the tensor it captured: float32, in place.
    rel = 2e-7 if cuda_graph else 1e-12
    for step in range(total):
        for group, captured in zip(optimizer.param_groups, lr_tensors, strict=True):
            assert group["lr"] is captured or not cuda_graph
            assert float(group["lr"]) == pytest.approx(learning_rate(step, total, train), rel=rel)
        optimizer.step()
        schedule.step()


# -- T7 -------------------------------------------------------------------------------------


def checkpoint_state(make_model: Callable[..., LanguageModel]) -> dict[str, Any]:
    return {"model": make_model().state_dict(), "state": {"step": 3}}


def test_save_checkpoint_removes_the_leftovers_of_killed_saves(
    tmp_path: Path, make_model: Callable[..., LanguageModel]
) -> None:
    leftovers = [tmp_path / ".last.pt.ab12cd34.tmp", tmp_path / ".best.pt.k3j_9x2q.tmp"]
    kept = [tmp_path / "best.pt", tmp_path / "train_log.jsonl"]
    for path in leftovers + kept:
        path.write_bytes(b"x")
    save_checkpoint(tmp_path / "last.pt", checkpoint_state(make_model))
    assert not any(path.exists() for path in leftovers)
    assert all(path.is_file() for path in kept)
    assert load_checkpoint(tmp_path / "last.pt")["state"] == {"step": 3}


class Payload:
    """Unpickling it would run a shell command (a harmless one: it creates a file)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch {self.marker}",))


def assert_names_the_rebuild(error: CheckpointError, path: Path) -> None:
    message = str(error)
    assert str(path) in message
    assert "snakemake --forcerun train" in message and "python run.py train" in message
    assert "weights_only" not in message and "trust" not in message


@pytest.mark.parametrize("writer", ["torch.save", "pickle.dump"])
def test_load_checkpoint_refuses_a_pickle_with_a_payload(
    tmp_path: Path, make_model: Callable[..., LanguageModel], writer: str
) -> None:
    marker, path = tmp_path / "payload-ran", tmp_path / "best.pt"
    state = {**checkpoint_state(make_model), "extra": Payload(marker)}
    if writer == "torch.save":
        torch.save(state, path)
    else:
        path.write_bytes(pickle.dumps(state, protocol=2))
    with pytest.raises(CheckpointError, match="is not a checkpoint this project wrote") as caught:
        load_checkpoint(path)
    assert_names_the_rebuild(caught.value, path)
    assert caught.value.__cause__ is None and caught.value.__suppress_context__
    assert not marker.exists(), "the payload never ran"


TRUNCATIONS: dict[str, Callable[[int], int]] = {
    "half": lambda size: size // 2,
    "all-but-1%": lambda size: size - size // 100,
    "10-bytes": lambda size: 10,
    "empty": lambda size: 0,
}


@pytest.mark.parametrize("kept", TRUNCATIONS.values(), ids=TRUNCATIONS.keys())
def test_load_checkpoint_reports_a_truncated_file(
    tmp_path: Path, make_model: Callable[..., LanguageModel], kept: Callable[[int], int]
) -> None:
    path = tmp_path / "last.pt"
    save_checkpoint(path, checkpoint_state(make_model))
    data = path.read_bytes()
    path.write_bytes(data[: kept(len(data))])
    with pytest.raises(CheckpointError, match="damaged or truncated") as caught:
        load_checkpoint(path)
    assert_names_the_rebuild(caught.value, path)


def test_load_checkpoint_passes_other_runtime_errors_through(
    tmp_path: Path, make_model: Callable[..., LanguageModel], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "best.pt"
    save_checkpoint(path, checkpoint_state(make_model))

    def out_of_memory(*args: object, **kwargs: object) -> None:
        raise torch.OutOfMemoryError("CUDA out of memory")

    monkeypatch.setattr(torch, "load", out_of_memory)
    with pytest.raises(torch.OutOfMemoryError):
        load_checkpoint(path)


def test_resume_keeps_the_log_up_to_the_checkpoint_and_drops_a_torn_line(
    tmp_path: Path,
) -> None:
    """T7: a kill can cut the log's last line in the middle of its write."""
    log = tmp_path / "train_log.jsonl"
    records = [{"kind": "train", "step": step, "loss": 1.0 / step} for step in range(1, 6)]
    text = "".join(json.dumps(r) + "\n" for r in records)
    log.write_text(text + '{"kind": "train", "st', encoding="utf-8")
    assert log_until(log, 3) == records[:3]
    assert log_until(log, 99) == records


# -- T7/T8: a work folder written before a config key existed -------------------------------

# A dozen steps of a tiny model on random ids.
TINY_TRAINING = {
    "model": {"n_layer": 1, "n_head": 2, "d_model": 16, "block_size": 8, "dropout": 0.0},
    "train": {"epochs": 1, "batch_size": 8},
    "device": "cpu",
}


def tiny_config(**model_changes: object) -> Config:
    config, _ = load(None, [TINY_TRAINING, {"model": model_changes}])
    return config


def tiny_trainer(
    work_dir: Path, config: Config, raw_config: dict[str, Any] | None = None
) -> Trainer:
    """A Trainer of `config` on the same ids; its checkpoints record `raw_config` (by
    default `config`'s own), as a version of the code that knew only those keys would.
    """
    torch.manual_seed(0)
    ids = torch.randint(0, 11, (1000,))
    return Trainer(
        build_model(config.model, 11),
        ids,
        config,
        raw_config or config.to_dict(),
        work_dir,
        "fp32",
        validate=lambda model: 1.0,
        data={"source_sha256": "0" * 64},
    )


def written_before(key: str, config: Config) -> dict[str, Any]:
    """`config` as a version of the code from before `key` (section.name) wrote it."""
    raw = config.to_dict()
    section, name = key.split(".")
    del raw[section][name]
    return raw


def test_a_work_folder_from_before_a_key_resumes_at_its_default_and_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = tiny_config()
    first = tiny_trainer(tmp_path, config, written_before("model.norm_eps", config)).train()
    with caplog.at_level("INFO"):
        summary = tiny_trainer(tmp_path, config).train(resume="strict")
    assert summary["resumed_from_step"] == first["steps"]
    assert "config key 'model.norm_eps' is missing" in caplog.text
    assert "changed on resume" not in caplog.text


def test_a_key_the_work_folder_predates_set_off_its_default_is_a_change(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    old = tiny_config()
    tiny_trainer(tmp_path, old, written_before("model.norm_eps", old)).train()
    new = tiny_config(norm_eps=1e-5)
    with pytest.raises(
        ResumeError, match=r"cannot resume from \S+: .*\(changed: model\.norm_eps\)"
    ):
        tiny_trainer(tmp_path, new).train(resume="strict")
    with caplog.at_level("WARNING"):
        summary = tiny_trainer(tmp_path, new).train(resume="restart-on-change")
    assert summary["resumed_from_step"] is None
    assert "(changed: model.norm_eps); starting from step 0" in caplog.text


UNREADABLE: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "no config": lambda c: {key: value for key, value in c.items() if key != "config"},
    "not a mapping": lambda c: {**c, "config": ["model"]},
    "a section that is not a mapping": lambda c: {**c, "config": {**c["config"], "model": 3}},
    "a key this version does not know": lambda c: {
        **c,
        "config": {**c["config"], "model": {**c["config"]["model"], "n_experts": 8}},
    },
}


@pytest.mark.parametrize("damage", UNREADABLE.values(), ids=UNREADABLE.keys())
def test_a_checkpoint_whose_config_cannot_be_read_restarts_or_refuses_in_one_line(
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    damage: Callable[[dict[str, Any]], dict[str, Any]],
) -> None:
    config = tiny_config()
    tiny_trainer(tmp_path, config).train()
    save_checkpoint(tmp_path / LAST, damage(load_checkpoint(tmp_path / LAST)))
    with pytest.raises(ResumeError, match="its training config cannot be read") as caught:
        tiny_trainer(tmp_path, config).train(resume="strict")
    assert "\n" not in str(caught.value)
    with caplog.at_level("WARNING"):
        summary = tiny_trainer(tmp_path, config).train(resume="restart-on-change")
    assert summary["resumed_from_step"] is None
    assert "its training config cannot be read" in caplog.text


def test_a_fresh_start_says_which_checkpoint_it_discards_and_how_to_resume_instead(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A run without --resume over the work folder of a crashed one starts from step 0 and
    says so in one line: the checkpoint it deletes, its step, and --resume.
    """
    config = tiny_config()
    crashed = tiny_trainer(tmp_path, config).train()  # not published: as a crash leaves it
    with caplog.at_level("WARNING"):
        summary = tiny_trainer(tmp_path, config).train()
    assert summary["resumed_from_step"] is None
    (warning,) = [r for r in caplog.records if r.levelname == "WARNING"]
    message = warning.getMessage()
    assert "\n" not in message
    assert str(tmp_path / LAST) in message
    assert f"at step {crashed['steps']};" in message
    assert "--resume" in message
