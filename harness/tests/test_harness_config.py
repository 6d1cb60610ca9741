"""harness/config.py and harness/sections.py on a synthetic plan: a run's configuration is
the plan, then a config file, then overrides; `device: auto` is decided once; on the CPU a
preset stands in; every bad key or value is refused by name before any work starts.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

import pytest
from harness.config import (
    cuda_present,
    load,
    merge,
    nested,
    parse_assignment,
    read_yaml,
    resolve,
)
from harness.plan import Plan
from harness.sections import ConfigError, as_mapping, build_config

PRESET_NOTE = (
    "CPU preset (configs/cpu.yaml) instead of the plan's full configuration: no CUDA device "
    "and no explicit config file"
)


def write_yaml(tmp_path: Path, text: str, name: str = "config.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# -- the order: the plan, a config file, the overrides --------------------------------------


def test_the_plan_then_the_file_then_each_override(toy_plan: Plan, tmp_path: Path) -> None:
    plan = resolve(toy_plan, cuda=True)
    assert plan.source == "default" and plan.config == toy_plan.config(device="cuda")
    assert plan.raw["train"] == {"epochs": 3, "lr": 0.5}

    path = write_yaml(tmp_path, "train:\n  lr: 0.25\n  epochs: 5\n")
    filed = resolve(toy_plan, path, cuda=True)
    assert filed.source == str(path)
    assert (filed.config.train.lr, filed.config.train.epochs) == (0.25, 5)
    assert filed.config.data.size == 4, "what the file leaves out stays the plan's"

    overridden = resolve(
        toy_plan,
        path,
        [{"train": {"lr": 0.125}}, {"train": {"lr": 0.0625}}, {"seed": 9}],
        cuda=True,
    )
    assert overridden.config.train.lr == 0.0625, "the later override wins"
    assert overridden.config.train.epochs == 5 and overridden.config.seed == 9


def test_merge_returns_a_new_mapping_and_keeps_the_base() -> None:
    base = {"a": 1, "b": {"c": 2, "d": 3}}
    merged = merge(base, {"b": {"d": 4}})
    assert merged == {"a": 1, "b": {"c": 2, "d": 4}}
    assert base == {"a": 1, "b": {"c": 2, "d": 3}}
    with pytest.raises(ConfigError, match=re.escape("config key 'b' must be a mapping of keys")):
        merge(base, {"b": 5})


def test_nested_turns_a_dotted_key_into_an_override() -> None:
    assert nested("train.lr", 0.1) == {"train": {"lr": 0.1}}
    assert nested("seed", 3) == {"seed": 3}


# -- device: auto, and the CPU preset -------------------------------------------------------


@pytest.mark.parametrize(
    ("cuda", "device", "source", "size"),
    [(True, "cuda", "default", 4), (False, "cpu", "cpu-preset", 2)],
)
def test_auto_is_decided_once_and_the_cpu_preset_stands_in(
    toy_plan: Plan, cuda: bool, device: str, source: str, size: int
) -> None:
    resolved = resolve(toy_plan, cuda=cuda)
    assert (resolved.config.device, resolved.source, resolved.config.data.size) == (
        device,
        source,
        size,
    )
    # A stage never sees "auto": its view holds the decision.
    assert resolved.view(("device",)) == {"device": device}
    assert resolved.raw["device"] == device
    notes = resolved.deviations()
    if cuda:
        assert notes == []
    else:
        assert notes == [PRESET_NOTE, "on the CPU: no GPU", "config data.size = 2 (plan: 4)"]
    assert resolved.record() == {"source": source, "deviations": notes, "config": resolved.raw}


def test_the_preset_stands_in_only_without_a_file(toy_plan: Plan, tmp_path: Path) -> None:
    # Overrides apply on top of the preset; an explicit device does not stop it.
    over = resolve(toy_plan, None, [{"train": {"lr": 0.25}}, {"device": "cpu"}], cuda=True)
    assert over.source == "cpu-preset"
    assert (over.config.data.size, over.config.train.lr) == (2, 0.25)
    # A file, even one without keys, insists on the plan's sizes.
    insisting = toy_plan.folder / "configs" / "plan.yaml"
    assert read_yaml(insisting) == {}
    explicit = resolve(toy_plan, insisting, cuda=False)
    assert (explicit.source, explicit.config.data.size) == (str(insisting), 4)
    assert explicit.deviations() == ["on the CPU: no GPU"]
    # Explicit CUDA: no preset.
    assert resolve(toy_plan, None, [{"device": "cuda"}], cuda=False).source == "default"


def test_a_plan_without_a_preset_runs_its_own_sizes_on_the_cpu(toy_plan: Plan) -> None:
    plan = dataclasses.replace(toy_plan, cpu_preset=None, cpu_deviation=None)
    resolved = resolve(plan, cuda=False)
    assert (resolved.source, resolved.config.device, resolved.config.data.size) == (
        "default",
        "cpu",
        4,
    )
    assert resolved.deviations() == []


def test_run_choices_are_not_deviations_but_other_keys_are(toy_plan: Plan) -> None:
    overrides = [
        {"seed": 1},
        {"device": "cuda"},
        nested("train.epochs", 1),
        nested("train.lr", 0.25),
    ]
    assert resolve(toy_plan, None, overrides, cuda=True).deviations() == [
        "config train.lr = 0.25 (plan: 0.5)"
    ]


def test_auto_asks_whether_cuda_is_there(toy_plan: Plan, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert cuda_present() is False
    resolved = resolve(toy_plan)
    assert (resolved.config.device, resolved.source) == ("cpu", "cpu-preset")


# -- YAML -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("yaml_text", "problem"),
    [
        (
            "train:\n  lr: 0.5\n  epochs: x: 2\n",
            "line 3, column 12: mapping values are not allowed here",
        ),
        (
            "data:\n  size: [1\n",
            "line 3, column 1: expected ',' or ']', but got '<stream end>'",
        ),
    ],
)
def test_yaml_syntax_error_names_the_file_line_and_column(
    toy_plan: Plan, tmp_path: Path, yaml_text: str, problem: str
) -> None:
    path = write_yaml(tmp_path, yaml_text)
    with pytest.raises(ConfigError) as caught:
        load(toy_plan, path)
    assert str(caught.value) == f"config file {path} is not valid YAML: {problem}"


def test_yaml_syntax_error_in_set_names_the_text_line_and_column() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_assignment("train.lr=[1")
    assert str(caught.value) == (
        "--set 'train.lr=[1' is not valid YAML: line 1, column 12: "
        "expected ',' or ']', but got '<stream end>'"
    )


def test_config_file_that_is_not_utf8_is_a_config_error(toy_plan: Plan, tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes("data:\n  source: café\n".encode("latin-1"))
    with pytest.raises(ConfigError, match=re.escape(f"config file {path} is not valid YAML")):
        load(toy_plan, path)


def test_a_file_is_a_mapping_or_empty(toy_plan: Plan, tmp_path: Path) -> None:
    listed = write_yaml(tmp_path, "- 1\n- 2\n", "listed.yaml")
    with pytest.raises(ConfigError, match=re.escape(f"config file {listed} must hold a mapping")):
        load(toy_plan, listed)
    empty = write_yaml(tmp_path, "", "empty.yaml")
    assert load(toy_plan, empty)[0] == toy_plan.config()
    with pytest.raises(ConfigError, match=re.escape("config file not found: ")):
        load(toy_plan, tmp_path / "absent.yaml")


# -- values: numbers given as strings, wrong types ------------------------------------------


def test_set_assignment_parses_numbers(toy_plan: Plan) -> None:
    assert parse_assignment("train.lr=3e-4") == {"train": {"lr": "3e-4"}}  # YAML 1.1: a str
    config, raw = load(toy_plan, None, [parse_assignment("train.lr=3e-4")])
    assert isinstance(config.train.lr, float) and config.train.lr == 3e-4
    assert raw["train"]["lr"] == "3e-4", "the raw mapping is what was merged"
    resolved = resolve(toy_plan, None, [parse_assignment("train.lr=3e-4")], cuda=True)
    assert resolved.raw["train"]["lr"] == 3e-4, "a resolved run holds the checked value"
    config, _ = load(
        toy_plan, None, [parse_assignment("train.epochs=7"), parse_assignment("seed=5")]
    )
    assert (config.train.epochs, config.seed) == (7, 5)
    config, _ = load(toy_plan, None, [parse_assignment("data.source=null")])
    assert config.data.source is None
    config, _ = load(toy_plan, None, [parse_assignment("train.lr=1")])  # an int for a float
    assert config.train.lr == 1.0 and isinstance(config.train.lr, float)
    with pytest.raises(ConfigError, match="key=value"):
        parse_assignment("train.lr")


@pytest.mark.parametrize(
    ("override", "value"),
    [
        ({"train": {"epochs": "7"}}, 7),  # as Snakemake's --config hands numbers over
        ({"train": {"lr": "0.25"}}, 0.25),
        ({"train": {"lr": "1e-3"}}, 1e-3),
        ({"train": {"lr": 1}}, 1.0),
    ],
)
def test_numeric_strings_become_numbers(
    toy_plan: Plan, override: dict[str, Any], value: float
) -> None:
    ((section, inner),) = override.items()
    ((key, _),) = inner.items()
    got = getattr(getattr(load(toy_plan, None, [override])[0], section), key)
    assert got == value and type(got) is type(value)


@pytest.mark.parametrize(
    ("override", "says"),
    [
        ({"train": {"lr": "fast"}}, "config key 'train.lr' must be of type float, got 'fast'"),
        ({"train": {"epochs": "2.5"}}, "config key 'train.epochs' must be of type int"),
        ({"train": {"epochs": 2.5}}, "config key 'train.epochs' must be of type int"),
        ({"train": {"epochs": True}}, "config key 'train.epochs' must be of type int"),
        ({"data": {"source": 7}}, "config key 'data.source' must be of type str"),
        ({"seed": "x"}, "config key 'seed' must be of type int"),
    ],
)
def test_a_wrong_type_is_refused_by_name(
    toy_plan: Plan, override: dict[str, Any], says: str
) -> None:
    with pytest.raises(ConfigError, match=re.escape(says)):
        load(toy_plan, None, [override])


@pytest.mark.parametrize("text", ["inf", "nan", "-inf"])
def test_non_finite_numbers_given_as_strings_are_rejected(toy_plan: Plan, text: str) -> None:
    with pytest.raises(ConfigError, match=r"'train\.lr' must be a finite number"):
        load(toy_plan, None, [parse_assignment(f'train.lr="{text}"')])


def test_the_plans_checks_run_on_the_merged_values(toy_plan: Plan, tmp_path: Path) -> None:
    path = write_yaml(tmp_path, "train:\n  lr: 2.0\n")
    with pytest.raises(ConfigError, match=re.escape("config key 'train.lr' must be in (0, 1]")):
        resolve(toy_plan, path, cuda=True)
    assert resolve(toy_plan, path, [{"train": {"lr": 0.5}}], cuda=True).config.train.lr == 0.5


# -- missing keys take their defaults; unknown keys are refused -----------------------------


def test_a_key_missing_from_a_config_takes_its_default_and_says_so(
    toy_plan: Plan, caplog: pytest.LogCaptureFixture
) -> None:
    """As in a stage config or a checkpoint written before the key existed: each key, and
    each whole section, in turn.
    """
    plan = toy_plan.config()
    full = as_mapping(plan)
    keys = ("seed", "device", "data", "data.size", "data.source", "train", "train.epochs")
    for key in (*keys, "train.lr"):
        raw = as_mapping(plan)
        *parents, name = key.split(".")
        section = raw
        for parent in parents:
            section = section[parent]
        default = section.pop(name)
        caplog.clear()
        with caplog.at_level("WARNING"):
            assert build_config(toy_plan.config, raw) == plan, key
        assert f"config key '{key}' is missing" in caplog.text, key
        assert repr(default) in caplog.text, key
    assert as_mapping(plan) == full


def test_a_stage_view_lacking_a_section_or_key_takes_the_defaults(toy_plan: Plan) -> None:
    config = build_config(toy_plan.config, {"train": {"epochs": 3}}, ("train", "data"))
    plan = toy_plan.config()
    assert (config.train, config.data) == (plan.train, plan.data)
    assert (config.seed, config.device) == (None, None), "sections it does not read are None"


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ({"train": {"rate": 0.1}}, "train.rate"),
        ({"trian": {"lr": 0.1}}, "trian"),
        ({"train": {"lr": {"peak": 0.1}}}, "train.lr"),
        ({"train": 3}, "train"),
    ],
)
def test_unknown_key_is_rejected_by_name(
    toy_plan: Plan, override: dict[str, Any], key: str
) -> None:
    with pytest.raises(ConfigError, match=re.escape(f"'{key}'")):
        load(toy_plan, None, [override])


def test_an_unknown_key_lists_the_known_ones_in_a_file_and_in_a_stage_config(
    toy_plan: Plan, tmp_path: Path
) -> None:
    says = "unknown config key 'train.rate' (known keys here: train.epochs, train.lr)"
    with pytest.raises(ConfigError) as caught:
        load(toy_plan, write_yaml(tmp_path, "train:\n  rate: 0.1\n"))
    assert str(caught.value) == says
    with pytest.raises(ConfigError) as caught:
        build_config(toy_plan.config, {"train": {"epochs": 1, "rate": 0.1}}, ("train",))
    assert str(caught.value) == says


def test_a_stage_config_holds_only_the_sections_the_stage_reads(toy_plan: Plan) -> None:
    with pytest.raises(ConfigError) as caught:
        build_config(toy_plan.config, {"train": {}, "data": {}}, ("train",))
    assert str(caught.value) == "config keys ['data'] are not read here (only ['train'])"
