"""The `train` stage (T1-T8): train on the prepared data, validate, keep best.pt and last.pt.

Under torchrun (train.devices > 1) every process trains its share and rank 0 writes. E6
Cost: the stage's cost record (harness/cost.py: wall time, peak host and PyTorch memory)
with the characters a second it trained.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from harness.errors import ProjectError
from harness.io import write_json
from harness.stage import Files, Stage, work_dir

from ..utils.config import Config

# The stage's machinery (torch) is imported when it runs, so that declaring the plan
# (plan.py: the planner, `run.py --help`, `run.py config`) imports none of it.
if TYPE_CHECKING:
    import torch
    from harness.distributed import Ranks

logger = logging.getLogger(__name__)

# The files whose size and SHA-256 the summary records for their readers.
RECORDED = ("train_log", "best", "last")


class LaunchError(ProjectError, RuntimeError):
    """Training under torchrun failed (its processes said why)."""


def own_argv(args: argparse.Namespace) -> list[str]:
    """run.py's arguments for this stage alone, as each torchrun process runs it: its own
    command line, or under `run.py all` the train config that `all` wrote.
    """
    if args.stage == "train":
        return args.argv
    folder = [] if args.work_dir is None else ["--work-dir", str(args.work_dir)]
    return [
        *("train", "--stage-config", str(args.stage_config), "--out-dir", str(args.out_dir)),
        *("--resume", args.resume, *folder),
    ]


def run(config: Config, files: Files, args: argparse.Namespace) -> None:
    """T1-T8, in this process or, for train.devices > 1, under torchrun (one process a
    device: NCCL on CUDA, gloo on the CPU) running `run.py` with this stage's own argv.
    """
    from harness.device import resolve_device
    from harness.distributed import join, launch, leave, under_launcher
    from harness.lock import sole_writer

    devices = config.train.devices
    if devices > 1 and not under_launcher():
        logger.info("training on %d devices: starting torchrun", devices)
        code = launch(devices, own_argv(args))
        if code != 0:
            raise LaunchError(
                f"training under torchrun ({devices} processes) failed with exit code "
                f"{code}; the processes' own errors are above"
            )
        return
    device = resolve_device(config.device)
    ranks = join(device)
    try:
        if not ranks.main:
            train(config, files, args.resume, work_dir(args, "train"), ranks.device(device), ranks)
            return
        with sole_writer(work_dir(args, "train"), "training"):
            train(config, files, args.resume, work_dir(args, "train"), ranks.device(device), ranks)
    finally:
        leave()


def train(
    config: Config,
    files: Files,
    resume: str,
    folder: Path,
    device: torch.device,
    ranks: Ranks,
) -> None:
    from harness.cost import StageCost
    from harness.device import environment, resolve_precision
    from harness.inputs import file_record
    from harness.seed import seed_everything

    from ..data.dataset import DataFiles, PreparedData
    from ..model.build import build_model
    from ..testing.validation import require_full_window, validation_loss
    from ..training.trainer import Trainer

    precision = resolve_precision(config.train.precision, device)
    seed_everything(config.seed)
    with StageCost("train", device) as cost:
        data = PreparedData.load(DataFiles.named(files)).to(device)
        require_full_window(len(data.val), config.model.block_size)
        model = build_model(config.model, data.tokenizer.vocab_size).to(device)
        logger.info(
            "training %s parameters on %s (%s)", f"{model.num_parameters():,}", device, precision
        )
        trainer = Trainer(
            model,
            data.train,
            config,
            config.to_dict(),
            folder,
            precision,
            validate=lambda m: validation_loss(m, data, config.eval, precision),
            data={key: data.manifest[key] for key in ("source_sha256", "train_fraction")},
            ranks=ranks,
        )
        summary = trainer.train(resume=resume)
        trainer.publish(files["train_log"], files["best"], files["last"])
    if not ranks.main:
        return
    summary.update(
        parameters=model.num_parameters(),
        parameters_by_module=model.parameters_by_module(),
        vocab_size=data.tokenizer.vocab_size,
        environment=environment(device),
        files={name: file_record(files[name]) for name in RECORDED},
    )
    write_json(files["summary"], summary)
    cost.throughput("characters", "trained", per_s=summary.get("chars_per_s"))
    write_json(files["train_cost"], cost.record())


STAGE = Stage(
    name="train",
    gpu=True,
    trains=True,
    run=run,
    help="train, validate every epoch, keep best.pt and last.pt (T1-T8)",
    # `eval`: the validation inside training picks best.pt.
    sections=("seed", "device", "model", "train", "eval"),
    inputs=("train_ids", "val_ids", "vocab", "manifest"),
    outputs={
        "summary": "train_summary.json",
        "train_log": "train_log.jsonl",
        "best": "checkpoints/best.pt",
        "last": "checkpoints/last.pt",
        "train_cost": "cost/train.json",
    },
)
