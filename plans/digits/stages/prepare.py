"""The `prepare` stage (D1-D3): the verified digits file → its rows and the manifest, which
every later stage reads.
"""

from __future__ import annotations

import argparse
from typing import Any

from harness.io import read_json, write_json
from harness.stage import Files, Stage

from ..utils.config import Config


def run(config: Config, files: Files, args: argparse.Namespace) -> dict[str, Any]:
    """D1-D3: locate and verify the file, split it, record D3's statistics (E6: its cost)."""
    from harness.cost import StageCost

    from ..data.prepare import prepare
    from ..data.source import locate_source, recorded_source

    with StageCost("prepare", "cpu") as cost:
        source = (
            locate_source(config.data)
            if args.source is None
            else recorded_source(read_json(args.source))
        )
        manifest = prepare(source, files["digits"], files["manifest"])
    cost.throughput("images", "prepared", count=manifest["rows"])
    write_json(files["prepare_cost"], cost.record())
    return manifest


STAGE = Stage(
    name="prepare",
    run=run,
    help="locate, verify, parse and split the digits; normalisation statistics (D1-D3)",
    sections=("data",),
    inputs=(),
    outputs={
        "digits": "data/digits.npy",
        "manifest": "data/manifest.json",
        "prepare_cost": "cost/prepare.json",
    },
)
