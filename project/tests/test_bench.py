"""training.bench: which variant a configuration trains in, and the step profile's sums.
(The benchmark end to end, on the real text: tests/test_benchmark.py.)
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from project.data.dataset import DataFiles, PreparedData
from project.tests import dispatch as run
from project.tests.dispatch import load
from project.training import bench
from project.training.bench import (
    TOP_KERNELS,
    VARIANTS,
    Variant,
    benchmark,
    default_variant,
    profile_steps,
    variants,
)

CPU, CUDA = torch.device("cpu"), torch.device("cuda")


def test_the_default_configuration_is_one_measured_variant_on_each_device() -> None:
    config = load()[0]
    # torch.compile is a CUDA path here: the CPU runs the same settings uncompiled.
    assert default_variant(config, CPU) == "graph"
    assert default_variant(config, CUDA) == "compile+graph"


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: v.name)
def test_each_variant_is_found_from_its_own_settings(variant: Variant) -> None:
    config = load()[0]
    train = dataclasses.replace(config.train, **variant.settings())
    config = dataclasses.replace(config, train=train)
    assert default_variant(config, CUDA) == variant.name
    on_cpu = default_variant(config, CPU)
    assert on_cpu in {v.name for v in variants(CPU)}
    assert [v.cuda_graph for v in VARIANTS if v.name == on_cpu] == [variant.cuda_graph]


def test_profile_lists_each_operator_once_a_step_longest_first() -> None:
    a, b = torch.randn(512, 512), torch.randn(512, 512)

    def step() -> None:
        (a @ b).relu_()

    profile = profile_steps(step, CPU)
    rows = {row["name"]: row for row in profile["top"]}
    assert rows["aten::mm"]["calls_per_step"] == rows["aten::relu_"]["calls_per_step"] == 1
    times = [row["ms_per_step"] for row in profile["top"]]
    assert times == sorted(times, reverse=True)
    assert profile["top"][0]["name"] == "aten::mm"  # 2·512³ multiply-adds against 512² maxima
    assert len(times) < TOP_KERNELS  # every operator listed: they make up the busy time
    assert profile["busy_ms_per_step"] == pytest.approx(sum(times))


def test_a_failing_profiler_costs_the_profile_not_the_timings(
    prepared_run_dir: Path, tiny_config_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*_args: object) -> dict:
        raise RuntimeError("CUPTI_ERROR_NOT_INITIALIZED")

    monkeypatch.setattr(bench, "profile_steps", broken)
    config = load(tiny_config_file, [{"device": "cpu"}])[0]
    files = {name: prepared_run_dir / run.FILES[name] for name in run.DATA}
    data = PreparedData.load(DataFiles.named(files))
    figures = benchmark(config, data, peak_tflops=None, only="eager")["variants"]["eager"]
    assert figures["median_step_ms"] > 0
    assert figures["profile"] == {"error": "RuntimeError: CUPTI_ERROR_NOT_INITIALIZED", "top": []}
