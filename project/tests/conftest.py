"""Shared fixtures: the real Tiny Shakespeare text, a tiny config, prepared data, tiny models."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch

from project.model.build import build_model
from project.model.interface import LanguageModel
from project.tests import dispatch as run
from project.tests.run_files import output
from project.utils.config import ModelConfig

PROJECT_DIR = Path(__file__).resolve().parents[1]
# The offline copy beside the checkout: <repo>/../shared/data/tinyshakespeare/input.txt
SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
SHAKESPEARE_FILE = SHARED_DATA / "tinyshakespeare" / "input.txt"

# A model small enough that one epoch of the real text (241 steps) takes a few seconds on a
# 2-core CPU, but with dropout on so that resume and determinism also cover the RNG state.
TINY_YAML = """\
model:
  n_layer: 1
  n_head: 2
  d_model: 32
  block_size: 64
  dropout: 0.1
train:
  epochs: 1
  batch_size: 64
  lr: 3.0e-3
  min_lr: 3.0e-4
  compile: false
eval:
  batch_size: 256
"""


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread() -> Iterator[None]:
    """Run PyTorch on one thread. The test machine has 2 cores shared with other work; with
    2 OpenMP threads and one core busy elsewhere, a tiny training epoch measured 5x slower
    (63 s instead of 12 s) because the threads wait on each other. Subprocesses started by
    tests get the same count (OMP_NUM_THREADS), which the bit-for-bit resume test needs.
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def shakespeare_file() -> Path:
    """The real text (D1); tests that claim a result on it skip when it is absent."""
    if not SHAKESPEARE_FILE.is_file():
        pytest.skip(f"the offline copy of Tiny Shakespeare is absent: {SHAKESPEARE_FILE}")
    return SHAKESPEARE_FILE


@pytest.fixture(scope="session")
def tiny_config_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("config") / "tiny.yaml"
    path.write_text(TINY_YAML, encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def tiny_cli(tiny_config_file: Path, shakespeare_file: Path) -> Callable[..., list[str]]:
    """argv for run.main with the tiny config on the CPU: tiny_cli(stage, out_dir, *extra)."""

    def argv(stage: str, out_dir: Path, *extra: str) -> list[str]:
        return [
            stage,
            "--config",
            str(tiny_config_file),
            "--data-source",
            str(shakespeare_file),
            "--device",
            "cpu",
            "--out-dir",
            str(out_dir),
            *extra,
        ]

    return argv


@pytest.fixture(scope="session")
def prepared_run_dir(
    tmp_path_factory: pytest.TempPathFactory, tiny_cli: Callable[..., list[str]]
) -> Path:
    """An --out-dir whose data/ holds the prepared real text (`run.py prepare`, once)."""
    out_dir = tmp_path_factory.mktemp("prepared")
    assert run.main(tiny_cli("prepare", out_dir)) == 0
    return out_dir


@pytest.fixture
def with_prepared_data(prepared_run_dir: Path) -> Callable[[Path], Path]:
    """Copy the prepared data/ folder into a fresh --out-dir (saves preparing it again)."""

    def copy(out_dir: Path) -> Path:
        for name in run.DATA:
            output(out_dir, name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(output(prepared_run_dir, name), output(out_dir, name))
        return out_dir

    return copy


def tiny_model_config(**changes: object) -> ModelConfig:
    """The plan's model at tiny sizes, without dropout."""
    sizes: dict[str, object] = {
        "n_layer": 2,
        "n_head": 2,
        "d_model": 32,
        "block_size": 16,
        "dropout": 0.0,
    }
    return ModelConfig(**{**sizes, **changes})  # type: ignore[arg-type]


@pytest.fixture
def make_model() -> Callable[..., LanguageModel]:
    """make_model(vocab_size=11, seed=0, **model_config_changes) -> a tiny model of
    `model.arch` (by default the plan's CharGPT), from the factory.
    """

    def make(vocab_size: int = 11, seed: int = 0, **changes: object) -> LanguageModel:
        torch.manual_seed(seed)
        return build_model(tiny_model_config(**changes), vocab_size)

    return make
