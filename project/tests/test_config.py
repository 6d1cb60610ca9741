"""utils.config: the plan's defaults, and every way a bad value is rejected before work starts."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import torch
import torch._inductor
import yaml
from harness.config import merge, nested, parse_assignment, read_yaml

from project.tests import dispatch as run
from project.tests.dispatch import PLAN_CONFIG, load
from project.tests.dispatch import resolve_config as resolve
from project.utils.config import COMPILE_MODES, Config, ConfigError, build


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
    ("override", "key"),
    [
        ({"model": {"n_layers": 3}}, "model.n_layers"),
        ({"trian": {"lr": 1e-3}}, "trian"),
        ({"train": {"lr": {"peak": 1e-3}}}, "train.lr"),
    ],
)
def test_unknown_key_is_rejected_by_name(override: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(f"'{key}'")):
        load(None, [override])


def test_unknown_key_in_a_config_file_is_rejected_by_name(tmp_path: Path) -> None:
    path = write_yaml(tmp_path, "model:\n  n_layers: 4\n")
    with pytest.raises(ConfigError, match=re.escape("'model.n_layers'")):
        load(path)


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


@pytest.mark.parametrize(
    ("yaml_text", "problem"),
    [
        (
            "train:\n  lr: 1.0e-3\n  epochs: x: 2\n",
            "line 3, column 12: mapping values are not allowed here",
        ),
        (
            "model:\n  n_layer: [1\n",
            "line 3, column 1: expected ',' or ']', but got '<stream end>'",
        ),
    ],
)
def test_yaml_syntax_error_names_the_file_line_and_column(
    tmp_path: Path, yaml_text: str, problem: str
) -> None:
    path = write_yaml(tmp_path, yaml_text)
    with pytest.raises(ConfigError) as caught:
        load(path)
    assert str(caught.value) == f"config file {path} is not valid YAML: {problem}"


def test_config_file_that_is_not_utf8_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes("sample:\n  prompt: café\n".encode("latin-1"))
    with pytest.raises(ConfigError, match=re.escape(f"config file {path} is not valid YAML")):
        load(path)


def test_yaml_syntax_error_in_set_names_the_text_line_and_column() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_assignment("train.lr=[1")
    assert str(caught.value) == (
        "--set 'train.lr=[1' is not valid YAML: line 1, column 12: "
        "expected ',' or ']', but got '<stream end>'"
    )


def test_set_assignment_parses_numbers() -> None:
    assert parse_assignment("train.lr=3e-4") == {"train": {"lr": "3e-4"}}  # YAML 1.1 reads a str
    config, _ = load(None, [parse_assignment("train.lr=3e-4")])
    assert isinstance(config.train.lr, float)
    assert config.train.lr == 3e-4
    config, _ = load(None, [parse_assignment("train.epochs=7"), parse_assignment("seed=5")])
    assert (config.train.epochs, config.seed) == (7, 5)
    config, _ = load(None, [parse_assignment("train.patience=null")])
    assert config.train.patience is None
    config, _ = load(None, [parse_assignment("train.lr=1")])  # an int where a float is due
    assert config.train.lr == 1.0 and isinstance(config.train.lr, float)
    with pytest.raises(ConfigError, match="key=value"):
        parse_assignment("train.lr")


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
def test_auto_is_decided_once_and_recorded(cuda: bool, source: str, n_layer: int) -> None:
    resolved = resolve(None, [], cuda=cuda)
    assert resolved.config.device == ("cuda" if cuda else "cpu")
    assert (resolved.source, resolved.config.model.n_layer) == (source, n_layer)
    # A stage never sees "auto": it reads the decision.
    assert resolved.view(("device",))["device"] == resolved.config.device
    # An explicit file wins over the preset, on the CPU too.
    explicit = resolve(PLAN_CONFIG, [], cuda=False)
    assert (explicit.source, explicit.config.model.n_layer) == (str(PLAN_CONFIG), 6)


def test_checks_across_sections_run_when_the_run_is_resolved() -> None:
    with pytest.raises(ConfigError, match=r"'eval\.stride' must be <= model\.block_size \(32\)"):
        resolve(None, [{"model": {"block_size": 32}}, {"eval": {"stride": 40}}], cuda=False)


def test_later_overrides_win_and_merge_keeps_the_base() -> None:
    base = {"a": 1, "b": {"c": 2, "d": 3}}
    merged = merge(base, {"b": {"d": 4}})
    assert merged == {"a": 1, "b": {"c": 2, "d": 4}}
    assert base == {"a": 1, "b": {"c": 2, "d": 3}}
    config, _ = load(None, [{"train": {"lr": 2e-3}}, {"train": {"lr": 5e-4}}])
    assert config.train.lr == 5e-4


@pytest.mark.parametrize(
    ("assignment", "key"),
    [
        ("train.lr=fast", "train.lr"),
        ("model.n_layers=3", "model.n_layers"),
        ("train.epochs=0", "train.epochs"),
        ("train.lr=[1", "'train.lr=[1' is not valid YAML: line 1, column 12"),
    ],
)
def test_bad_set_exits_2_before_writing_anything(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], assignment: str, key: str
) -> None:
    out_dir = tmp_path / "out"
    code = run.main(["--device", "cpu", "--out-dir", str(out_dir), "--set", assignment])
    assert code == 2
    assert key in capsys.readouterr().err
    assert not out_dir.exists() or not any(out_dir.iterdir())


def test_config_cli_prints_the_resolved_config_or_the_bad_key(
    capsys: pytest.CaptureFixture[str],
) -> None:
    preset = str(PLAN_CONFIG.with_name("cpu.yaml"))
    shown = ["config", "--config", preset, "--set", "train.lr=3e-4", "--device", "cpu"]
    assert run.main(shown) == 0
    printed = yaml.safe_load(capsys.readouterr().out.split("\n", 1)[1])
    assert printed["train"]["lr"] == 3e-4 and printed["device"] == "cpu"
    assert run.main(["config", "--config", preset, "--set", "model.n_layers=2"]) == 2
    assert "model.n_layers" in capsys.readouterr().err


@pytest.mark.parametrize("text", ["inf", "nan", "-inf"])
def test_non_finite_numbers_given_as_strings_are_rejected(text: str) -> None:
    with pytest.raises(ConfigError, match=r"'train\.grad_clip' must be a finite number"):
        load(None, [parse_assignment(f'train.grad_clip="{text}"')])


# -- the plan is the dataclasses' defaults; a key a config predates takes its default -------


def plan_keys() -> list[str]:
    """Every dotted key of the plan, from the dataclasses: "seed", ..., "model.norm_eps", ..."""
    keys = []
    for name, value in Config().to_dict().items():
        keys += [f"{name}.{key}" for key in value] if isinstance(value, dict) else [name]
    return keys


def test_the_plan_is_the_defaults_and_the_plan_file_holds_no_keys() -> None:
    assert read_yaml(PLAN_CONFIG) == {}, "the plan is Config's defaults, not a second copy"
    config, raw = load()
    assert config == Config() and raw == Config().to_dict()


@pytest.mark.parametrize("key", plan_keys())
def test_a_key_missing_from_a_config_takes_its_default_and_says_so(
    key: str, caplog: pytest.LogCaptureFixture
) -> None:
    """As in a stage config or a checkpoint written before the key existed."""
    raw = Config().to_dict()
    *parents, name = key.split(".")
    section = raw
    for parent in parents:
        section = section[parent]
    default = section.pop(name)
    with caplog.at_level("WARNING"):
        assert build(raw) == Config()
    assert f"config key '{key}' is missing" in caplog.text and repr(default) in caplog.text


def test_a_stage_view_lacking_a_section_or_key_takes_the_defaults() -> None:
    model = Config().to_dict()["model"]
    del model["norm_eps"]
    config = build({"model": model}, ("model", "eval"))
    assert (config.model, config.eval, config.train) == (Config().model, Config().eval, None)


def test_an_unknown_key_of_a_stage_config_is_rejected_by_name() -> None:
    model = {**Config().to_dict()["model"], "n_layers": 3}
    with pytest.raises(ConfigError, match=re.escape("unknown config key 'model.n_layers'")):
        build({"model": model}, ("model",))


@pytest.mark.parametrize(("key", "seed"), [("seed", -5), ("seed", 2**32), ("sample.seed", -1)])
def test_a_seed_outside_numpys_range_is_refused(key: str, seed: int) -> None:
    with pytest.raises(ConfigError, match=r"must be in \[0, 2\*\*32 - 1\]"):
        load(None, [nested(key, seed)])
