"""The `train` stage (T1-T8): train on the prepared data, validate, keep best.pt and last.pt.

Under torchrun (train.devices > 1) every process trains its share and rank 0 writes.
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
from pathlib import Path
from typing import Any

import torch
from harness.cost import StageCost
from harness.device import resolve_device, resolve_precision
from harness.distributed import Ranks, join, launch, leave, under_launcher
from harness.errors import ProjectError
from harness.inputs import file_record
from harness.io import write_json
from harness.lock import sole_writer
from harness.seed import seed_everything
from harness.stage import Files, Stage

from ..data.dataset import DataFiles, PreparedData
from ..model.gpt import CharGPT
from ..testing.validation import require_full_window, validation_loss
from ..training.resume import RESUME_MODES
from ..training.trainer import Trainer
from ..utils.config import Config

logger = logging.getLogger(__name__)

# The files whose size and SHA-256 the summary records for their readers.
RECORDED = ("train_log", "best", "last")
WORK_DIR = "train.resume"  # under --out-dir, unless --work-dir names it


class LaunchError(ProjectError, RuntimeError):
    """Training under torchrun failed (its processes said why)."""


def add_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--resume",
        nargs="?",
        const="strict",
        default="off",
        choices=RESUME_MODES,
        help="continue from the newest checkpoint of the work folder. Alone: refuse one "
        "made under other settings or data (except the settings safe to change on resume); "
        "`restart-on-change` (what the workflow passes): start over instead",
    )
    parser.add_argument(
        "--work-dir",
        type=Path,
        metavar="PATH",
        help=f"training's own folder while it runs (default: <out-dir>/{WORK_DIR})",
    )


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


def work_dir(args: argparse.Namespace) -> Path:
    return args.work_dir or args.out_dir / WORK_DIR


def run(config: Config, files: Files, args: argparse.Namespace) -> None:
    """T1-T8, in this process or, for train.devices > 1, under torchrun (one process a
    device: NCCL on CUDA, gloo on the CPU) running `run.py` with this stage's own argv.
    """
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
            train(config, files, args.resume, work_dir(args), ranks.device(device), ranks)
            return
        with sole_writer(work_dir(args), "training"):
            train(config, files, args.resume, work_dir(args), ranks.device(device), ranks)
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
    precision = resolve_precision(config.train.precision, device)
    seed_everything(config.seed)
    with StageCost("train", device) as cost:
        data = PreparedData.load(DataFiles.named(files)).to(device)
        require_full_window(len(data.val), config.model.block_size)
        model = CharGPT(config.model, data.tokenizer.vocab_size).to(device)
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
    write_json(files["train_cost"], cost.record())


def environment(device: torch.device) -> dict[str, Any]:
    on_cuda = device.type == "cuda"
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "device": str(device),
        "gpu_name": torch.cuda.get_device_name(device) if on_cuda else None,
        "cpu_threads": torch.get_num_threads(),
        # What "peak memory within the device" is checked against.
        "device_memory_bytes": (
            torch.cuda.get_device_properties(device).total_memory
            if on_cuda
            else os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        ),
    }


STAGE = Stage(
    name="train",
    gpu=True,
    trains=True,
    run=run,
    options=add_options,
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
