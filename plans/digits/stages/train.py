"""The `train` stage (T1-T8): train on the prepared digits, validate every epoch, keep
best.pt and last.pt.
"""

from __future__ import annotations

import argparse
import logging

from harness.inputs import file_record
from harness.io import write_json
from harness.stage import Files, Stage, work_dir

from ..utils.config import Config

logger = logging.getLogger(__name__)

RECORDED = ("train_log", "best", "last")  # the files whose size and SHA-256 the summary holds


def run(config: Config, files: Files, args: argparse.Namespace) -> dict:
    """T1-T8 on one device (T5: fp32), in a work folder that one process alone writes;
    E6: the stage's cost and the training throughput in images a second.
    """
    from harness.contract import parameters_by_module
    from harness.cost import StageCost
    from harness.device import environment, resolve_device
    from harness.lock import sole_writer

    from ..data.dataset import PreparedDigits
    from ..training.precision import strict_fp32
    from ..training.setup import build_trainer

    device = resolve_device(config.device)
    folder = work_dir(args, "train")
    with sole_writer(folder, "training"), strict_fp32(), StageCost("train", device) as cost:
        data = PreparedDigits.load(files["digits"], files["manifest"]).to(device)
        trainer = build_trainer(config, data, folder)
        logger.info(
            "training %s (%s parameters) on %s",
            config.model.arch,
            f"{trainer.model.num_parameters():,}",
            device,
        )
        summary = trainer.train(resume=args.resume)
        trainer.publish(files["train_log"], files["best"], files["last"])
    cost.throughput("images", "trained", per_s=summary["images_per_s"])
    summary.update(
        arch=config.model.arch,
        parameters=trainer.model.num_parameters(),
        parameters_by_module=parameters_by_module(trainer.model),
        environment=environment(device),
        files={name: file_record(files[name]) for name in RECORDED},
    )
    write_json(files["summary"], summary)
    write_json(files["train_cost"], cost.record())
    return summary


STAGE = Stage(
    name="train",
    run=run,
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
