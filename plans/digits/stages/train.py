"""The `train` stage (T1-T8): train on the prepared digits, validate every epoch, keep
best.pt and last.pt.
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

from harness.inputs import file_record
from harness.io import write_json
from harness.stage import Files, Stage

from ..utils.config import Config

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

WORK_DIR = "train.work"  # under --out-dir, unless --work-dir names it
RESUME_MODES = ("off", "strict", "restart-on-change")  # training/trainer.py: Trainer._start
RECORDED = ("train_log", "best", "last")  # the files whose size and SHA-256 the summary holds


def add_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--resume",
        nargs="?",
        const="strict",
        default="off",
        choices=RESUME_MODES,
        help="continue from the work folder's newest checkpoint. Alone: refuse one made "
        "under other settings or data; `restart-on-change` (what the workflow passes): "
        "start over instead",
    )
    parser.add_argument(
        "--work-dir",
        type=Path,
        metavar="PATH",
        help=f"training's own folder while it runs (default: <out-dir>/{WORK_DIR})",
    )


def run(config: Config, files: Files, args: argparse.Namespace) -> dict:
    """T1-T8 on one device (T5: fp32), in a work folder that one process alone writes;
    E6: the stage's cost and the training throughput in images a second.
    """
    from harness.cost import StageCost
    from harness.device import resolve_device
    from harness.lock import sole_writer

    from ..data.dataset import PreparedDigits
    from ..training.precision import strict_fp32
    from ..training.setup import build_trainer

    device = resolve_device(config.device)
    work_dir = args.work_dir or args.out_dir / WORK_DIR
    with sole_writer(work_dir, "training"), strict_fp32(), StageCost("train", device) as cost:
        data = PreparedDigits.load(files["digits"], files["manifest"]).to(device)
        trainer = build_trainer(config, data, work_dir)
        logger.info(
            "training %s (%s parameters) on %s",
            config.model.arch,
            f"{trainer.model.num_parameters():,}",
            device,
        )
        summary = trainer.train(resume=args.resume)
        trainer.publish(files["train_log"], files["best"], files["last"])
    cost.figures["images_per_s"] = summary["images_per_s"]
    summary.update(
        arch=config.model.arch,
        parameters=trainer.model.num_parameters(),
        device=str(device),
        device_memory_bytes=device_memory_bytes(device),
        files={name: file_record(files[name]) for name in RECORDED},
    )
    write_json(files["summary"], summary)
    write_json(files["train_cost"], cost.record())
    return summary


def device_memory_bytes(device: torch.device) -> int:
    """What "peak memory within the device" is checked against: the GPU's memory, or the
    host's on the CPU.
    """
    import torch

    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).total_memory
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


STAGE = Stage(
    name="train",
    run=run,
    options=add_options,
    help="train, validate every epoch, keep best.pt and last.pt (T1-T8)",
    # `data`: D4's switch data.augment.
    sections=("seed", "device", "data", "model", "train"),
    inputs=("digits", "manifest"),
    outputs={
        "summary": "train_summary.json",
        "train_log": "train_log.jsonl",
        "best": "checkpoints/best.pt",
        "last": "checkpoints/last.pt",
        "train_cost": "cost/train.json",
    },
    gpu=True,
    trains=True,
)
