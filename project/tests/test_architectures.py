"""The model interface (model/interface.py) and the one factory (model/build.py): every
architecture that `model.arch` may name keeps what the stages, the trainer, the evaluator,
the sampler, the checkpoint loader and the benchmark use of a model. An architecture added
to ARCHITECTURES runs through all of these tests with no edit here.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torch import nn

from project.model.build import ARCHITECTURES, build_model
from project.model.gpt import CharGPT
from project.model.interface import LanguageModel
from project.tests import dispatch as run
from project.tests.conftest import tiny_model_config
from project.tests.dispatch import load
from project.training.trainer import Trainer, compiled_blocks
from project.utils.config import ARCHS, ConfigError, ModelConfig

V = 11
PROJECT_DIR = Path(__file__).resolve().parents[1]


def tiny(arch: str, seed: int = 0, **changes: object) -> LanguageModel:
    torch.manual_seed(seed)
    return build_model(tiny_model_config(arch=arch, **changes), V)


def test_the_config_accepts_exactly_the_architectures_the_factory_builds() -> None:
    assert tuple(ARCHITECTURES) == ARCHS
    assert ModelConfig().arch == "gpt"
    assert isinstance(build_model(ModelConfig(n_layer=1, d_model=12, n_head=2), V), CharGPT)


def test_an_unknown_architecture_is_refused_with_the_known_ones(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    known = ", ".join(ARCHS)
    with pytest.raises(ConfigError, match=rf"'model\.arch' must be one of {known}; got 'rnn'"):
        load(None, [{"model": {"arch": "rnn"}}])
    with pytest.raises(ConfigError, match=rf"'model\.arch' must be one of {known}; got 'rnn'"):
        build_model(tiny_model_config(arch="rnn"), V)
    out_dir = tmp_path / "out"
    assert run.main(["--device", "cpu", "--out-dir", str(out_dir), "--set", "model.arch=rnn"]) == 2
    assert f"must be one of {known}" in capsys.readouterr().err
    assert not out_dir.exists() or not any(out_dir.iterdir())


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_every_architecture_keeps_the_interface(arch: str) -> None:
    model = tiny(arch)
    assert isinstance(model, LanguageModel) and isinstance(model, nn.Module)
    assert (model.vocab_size, model.block_size) == (V, 16)
    ids = torch.randint(0, V, (3, 16))
    logits = model.eval()(ids)
    assert logits.shape == (3, 16, V) and logits.dtype == torch.float32
    # Each position sees only the past: a prefix gives the prefix's logits.
    torch.testing.assert_close(model(ids[:, :5]), logits[:, :5], rtol=0, atol=1e-5)
    # train.compile_scope=block: the blocks handed in run in place of model.blocks.
    assert torch.equal(model(ids, blocks=list(model.blocks)), logits)
    assert torch.equal(model(ids, blocks=compiled_blocks(model, backend="eager")), logits)


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_every_architecture_counts_its_parameters_and_flops(arch: str) -> None:
    model = tiny(arch)
    total = sum(p.numel() for p in model.parameters())
    assert model.num_parameters() == total > 0
    by_file = model.parameters_by_module()
    # Keyed by the plan files that define the components, the whole model's file first.
    assert by_file and all((PROJECT_DIR / path).is_file() for path in by_file)
    assert by_file[f"model/{type(model).__module__.rsplit('.', 1)[-1]}.py"] == total
    flops = model.flops_per_token()
    # At least 6 FLOPs (forward and backward) for each weight of the blocks' matrices.
    matrices = sum(p.numel() for p in model.blocks.parameters() if p.dim() >= 2)
    assert math.isfinite(flops) and flops >= 6 * matrices


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_every_architecture_samples_reproducibly_past_its_context(arch: str) -> None:
    model = tiny(arch, dropout=0.1).train()
    prompt = torch.randint(0, V, (40,)).tolist()  # longer than T = 16: cropped
    state = torch.get_rng_state()
    first = model.generate(prompt, n=25, temperature=0.8, top_k=3, seed=5)
    assert torch.equal(torch.get_rng_state(), state) and model.training
    assert len(first) == 25 and all(0 <= i < V for i in first)
    assert model.generate(prompt, n=25, temperature=0.8, top_k=3, seed=5) == first
    assert model.generate(prompt[-16:], n=25, temperature=0.8, top_k=3, seed=5) == first
    assert model.generate([1], n=25, temperature=1.0, top_k=None, seed=5) != first


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_every_architecture_trains_and_reloads_from_its_state_dict(
    arch: str, tmp_path: Path
) -> None:
    """A few steps of the Trainer on random ids lower the loss; a model built again from
    the config and loaded from the state dict (load_best_model's path) computes the same.
    """
    sizes = {"n_layer": 1, "n_head": 2, "d_model": 16, "block_size": 8, "dropout": 0.0}
    config, raw = load(None, [{"model": {"arch": arch, **sizes}, "device": "cpu"}])
    torch.manual_seed(0)
    model = build_model(config.model, V)
    ids = torch.arange(2000) % V  # a cycle: easy to learn
    trainer = Trainer(model, ids, config, raw, tmp_path, "fp32", validate=lambda m: 0.0)
    batches = trainer.batches.endless()
    losses = [float(trainer.train_step(*next(batches)).values[0]) for _ in range(30)]
    assert all(math.isfinite(loss) for loss in losses) and losses[-1] < losses[0]
    again = build_model(config.model, V)
    again.load_state_dict(model.state_dict())
    probe = ids[None, :8]
    assert torch.equal(again.eval()(probe), model.eval()(probe))
