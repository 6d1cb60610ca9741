"""The `bench` stage: training speed on the prepared data (training/bench.py), which it
prepares first where it is missing. Not a rule of the workflow: benchmark.py runs it.
"""

from __future__ import annotations

import argparse

from harness.io import write_json
from harness.stage import Files, Stage

from ..utils.config import Config
from . import prepare as stage_prepare

# The stage's machinery (torch) is imported when it runs or its options are asked for (the
# dispatcher adds a stage's options only when it runs that stage).


def add_options(parser: argparse.ArgumentParser) -> None:
    from ..training.bench import DEFAULT_CUDA_PEAK_TFLOPS, VARIANT_NAMES

    parser.add_argument(
        "--variant",
        choices=VARIANT_NAMES,
        help="measure this way of running the step alone (default: every one this device runs)",
    )
    parser.add_argument(
        "--peak-tflops",
        type=float,
        help="the device's peak bf16 TFLOP/s for model FLOPs utilisation (default on CUDA: "
        f"{DEFAULT_CUDA_PEAK_TFLOPS:g}, the dense bf16 matmul rate measured on our H100)",
    )


def run(config: Config, files: Files, args: argparse.Namespace) -> None:
    from ..data.dataset import DataFiles, PreparedData
    from ..training.bench import benchmark

    if not files["manifest"].is_file():
        stage_prepare.run(config, files, argparse.Namespace(source=None))
    data = PreparedData.load(DataFiles.named(files))
    write_json(files["bench"], benchmark(config, data, args.peak_tflops, args.variant))


STAGE = Stage(
    name="bench",
    run=run,
    options=add_options,
    help="training speed: step time, characters a second, MFU, a profile of each variant",
    sections=("seed", "device", "data", "model", "train", "eval"),
    inputs=("train_ids", "val_ids", "vocab", "manifest"),
    outputs={"bench": "bench.json"},
)
