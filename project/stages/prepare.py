"""The `prepare` stage (D1-D3): the source text → the encoded splits, the vocabulary and
the manifest, which every later stage reads.
"""

from __future__ import annotations

import argparse

from harness.io import read_json, write_json
from harness.stage import Files, Stage

from ..utils.config import Config

# The stage's machinery (torch) is imported when it runs, so that declaring the plan
# (plan.py: the planner, `run.py --help`, `run.py config`) imports none of it.


def run(config: Config, files: Files, args: argparse.Namespace) -> dict:
    """D1-D3: the encoded splits, the vocabulary and the manifest."""
    import torch
    from harness.cost import StageCost

    from ..data.dataset import DataFiles
    from ..data.download import locate_source, recorded_source
    from ..data.preprocess import prepare

    with StageCost("prepare", torch.device("cpu")) as cost:
        source = (
            locate_source(config.data)
            if args.source is None
            else recorded_source(read_json(args.source), config.data)
        )
        manifest = prepare(config.data, DataFiles.named(files), source)
    cost.throughput("characters", "prepared", count=manifest["n_chars"])
    write_json(files["prepare_cost"], cost.record())
    return manifest


STAGE = Stage(
    name="prepare",
    run=run,
    help="fetch, verify, split and encode the text (D1-D3)",
    sections=("data",),
    inputs=(),
    outputs={
        "train_ids": "data/train.bin",
        "val_ids": "data/val.bin",
        "vocab": "data/vocab.json",
        "manifest": "data/manifest.json",
        "prepare_cost": "cost/prepare.json",
    },
)
