"""utils.config: the plan's defaults, its keys' types and ranges, its CPU preset. How a
configuration is resolved and read (files, --set, missing and unknown keys) is the
harness's: harness/tests/test_harness_config.py.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
import torch._inductor
from harness.config import nested, read_yaml

from project.tests import dispatch as run
from project.tests.dispatch import PLAN_CONFIG, load
from project.tests.dispatch import resolve_config as resolve
from project.utils.config import COMPILE_MODES, Config, ConfigError


def write_yaml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_default_config_is_the_plan() -> None:
    config, raw = load()
    model, train = config.model, config.train
    assert (model.n_layer, model.n_head, model.d_model, model.block_size) == (6, 6, 384, 256)
    assert model.dropout == 0.2 and model.rope_base == 10000.0 and model.norm_eps == 1e-6
    assert model.init_std == 0.02
    assert (train.lr, train.min_lr, train.warmup_max_steps, train.warmup_fraction) == (
        1e-3,
        1e-4,
        100,
        0.05,
    )
    assert (train.beta1, train.beta2, train.adam_eps, train.weight_decay) == (0.9, 0.99, 1e-8, 0.1)
    assert (train.grad_clip, train.batch_size) == (1.0, 64)
    assert config.data.train_fraction == 0.9
    assert config.data.sha256 == "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"
    assert config.eval.stride is None
    sample = config.sample
    assert (sample.prompt, sample.num_chars, sample.temperature, sample.top_k) == (
        "ROMEO:",
        500,
        0.8,
        40,
    )
    assert raw["model"]["d_model"] == 384


@pytest.mark.parametrize(
    ("yaml_text", "key"),
    [
        ('train:\n  lr: "fast"\n', "train.lr"),
        ("train:\n  epochs: 2.5\n", "train.epochs"),
        ("train:\n  epochs: true\n", "train.epochs"),  # a bool is not an int here
        ("train:\n  compile: 1\n", "train.compile"),
        ("model: 3\n", "model"),
        ("sample:\n  prompt: 7\n", "sample.prompt"),
    ],
)
def test_wrong_type_is_rejected_by_name(tmp_path: Path, yaml_text: str, key: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(f"'{key}'")):
        load(write_yaml(tmp_path, yaml_text))


@pytest.mark.parametrize(
    ("yaml_text", "key"),
    [
        ("model:\n  dropout: 1.5\n", "model.dropout"),
        ("model:\n  dropout: -0.1\n", "model.dropout"),
        ("train:\n  epochs: 0\n", "train.epochs"),
        ("train:\n  min_lr: 1.0\n", "train.min_lr"),  # above the peak lr
        ("model:\n  n_head: 5\n", "model.d_model"),  # 384 not divisible by 5
        ("model:\n  d_model: 36\n  n_head: 4\n", "model.d_model"),  # odd head width
        ("train:\n  precision: fp16\n", "train.precision"),
        ("device: tpu\n", "device"),
        ("eval:\n  stride: 300\n", "eval.stride"),  # longer than the context
        ("train:\n  compile_mode: fastest\n", "train.compile_mode"),
    ],
)
def test_out_of_range_is_rejected_by_name(tmp_path: Path, yaml_text: str, key: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(f"'{key}'")):
        load(write_yaml(tmp_path, yaml_text))


@pytest.mark.parametrize("mode", COMPILE_MODES)
def test_compile_modes_with_cuda_graphs_of_their_own_exclude_the_step_graph(
    tmp_path: Path, mode: str
) -> None:
    # Whether a mode brings CUDA graphs is torch's fact: read it from torch.
    own_graphs = torch._inductor.list_mode_options(mode).get("triton.cudagraphs", False)
    assert COMPILE_MODES[mode] == own_graphs
    text = f"train:\n  compile: true\n  cuda_graph: true\n  compile_mode: {mode}\n"
    if own_graphs:
        with pytest.raises(ConfigError, match=r"'train\.compile_mode'.*cannot nest"):
            load(write_yaml(tmp_path, text))
    else:
        assert load(write_yaml(tmp_path, text))[0].train.compile_mode == mode
    off = tmp_path / "off.yaml"  # load() parses each path once a process
    off.write_text(text.replace("cuda_graph: true", "cuda_graph: false"), encoding="utf-8")
    assert load(off)[0].train.compile_mode == mode


def test_cli_set_goes_through_the_same_checks() -> None:
    args = run.parse_args(["train", "--set", "train.lr=3e-4", "--epochs", "3", "--device", "cpu"])
    resolved = run.resolve(args)
    config = resolved.config
    assert config.train.lr == 3e-4 and config.train.epochs == 3 and config.device == "cpu"
    # No config file and the CPU: the CPU preset stands in for the plan's sizes, for the
    # benchmark too (the plan's size takes seconds a step on a CPU).
    assert resolved.source == "cpu-preset" and config.model.n_layer == 2
    bench = run.resolve(run.parse_args(["bench", "--device", "cpu"]))
    assert bench.source == "cpu-preset" and bench.config.model.n_layer == 2


@pytest.mark.parametrize(
    ("cuda", "source", "n_layer"), [(True, "default", 6), (False, "cpu-preset", 2)]
)
def test_the_cpu_preset_sizes_the_model_unless_a_file_insists_on_the_plan(
    cuda: bool, source: str, n_layer: int
) -> None:
    """The plan's own preset and plan file (how `auto` and the preset are decided: the
    harness's tests, harness/tests/test_harness_config.py).
    """
    resolved = resolve(None, [], cuda=cuda)
    assert resolved.config.device == ("cuda" if cuda else "cpu")
    assert (resolved.source, resolved.config.model.n_layer) == (source, n_layer)
    # An explicit file wins over the preset, on the CPU too.
    explicit = resolve(PLAN_CONFIG, [], cuda=False)
    assert (explicit.source, explicit.config.model.n_layer) == (str(PLAN_CONFIG), 6)


def test_checks_across_sections_run_when_the_run_is_resolved() -> None:
    with pytest.raises(ConfigError, match=r"'eval\.stride' must be <= model\.block_size \(32\)"):
        resolve(None, [{"model": {"block_size": 32}}, {"eval": {"stride": 40}}], cuda=False)


# -- the plan is the dataclasses' defaults -------------------------------------------------


def test_the_plan_is_the_defaults_and_the_plan_file_holds_no_keys() -> None:
    assert read_yaml(PLAN_CONFIG) == {}, "the plan is Config's defaults, not a second copy"
    config, raw = load()
    assert config == Config() and raw == Config().to_dict()


@pytest.mark.parametrize(("key", "seed"), [("seed", -5), ("seed", 2**32), ("sample.seed", -1)])
def test_a_seed_outside_numpys_range_is_refused(key: str, seed: int) -> None:
    with pytest.raises(ConfigError, match=r"must be in \[0, 2\*\*32 - 1\]"):
        load(None, [nested(key, seed)])
