"""The one entry point: `python run.py [all|prepare|train|evaluate|sample|bench] [options]`.

`python run.py --epochs 2` is the quick validation: it resolves the configuration once,
then chains the stages prepare → train → evaluate → sample under --out-dir. Each stage is
also a command of its own that takes its input and output files (`--best PATH`, ...; by
default under --out-dir as `FILES` lists them) and its configuration: the options below,
or `--stage-config FILE`, the stage's sections as the workflow resolved them. A stage sees
only the config sections it reads (utils/config.py: STAGE_SECTIONS), and the workflow
derives each stage's code inputs from its `run_<stage>` function here (utils/reads.py).
project/README.md documents every output's fields.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import torch

from data.dataset import CharTokenizer, DataFiles, PreparedData
from data.download import DataSourceError
from data.preprocess import UnusableTextError, prepare
from model.gpt import CharGPT
from testing.evaluator import evaluate
from testing.sampler import sample_text
from testing.validation import validation_loss
from training.bench import DEFAULT_CUDA_PEAK_TFLOPS, VARIANT_NAMES, benchmark
from training.checkpoint import CheckpointError, load_checkpoint
from training.trainer import RESUME_MODES, NonFiniteError, ResumeError, Trainer
from utils.config import (
    CPU_PRESET,
    DEFAULT_CONFIG,
    STAGE_SECTIONS,
    STAGES,
    Config,
    ConfigError,
    Resolved,
    add_arguments,
    build,
    resolve_arguments,
)
from utils.cost import StageCost
from utils.device import DeviceError, resolve_device, resolve_precision
from utils.distributed import Ranks, join, launch, launched_ranks, leave, under_launcher
from utils.inputs import MissingInputError, StaleInputError, file_record, require, verify
from utils.io import DiskFullError, read_json, read_jsonl, write_json, write_text
from utils.lock import BusyError, sole_writer
from utils.reads import write_stage_configs
from utils.seed import seed_everything

logger = logging.getLogger("run")

# Every file a stage reads or writes: its option name and where it goes under --out-dir
# when the option is not given. The workflow's rules name each one themselves.
FILES = {
    "train_ids": "data/train.bin",
    "val_ids": "data/val.bin",
    "vocab": "data/vocab.json",
    "manifest": "data/manifest.json",
    "summary": "train_summary.json",
    "train_log": "train_log.jsonl",
    "best": "checkpoints/best.pt",
    "last": "checkpoints/last.pt",
    "work_dir": "train.resume",
    "metrics": "metrics.json",
    "checks": "quick_validation.json",
    "samples": "samples.txt",
    "samples_meta": "samples.json",
    **{f"{stage}_cost": f"cost/{stage}.json" for stage in STAGES},
    "bench": "bench.json",
}
DATA = ("train_ids", "val_ids", "vocab", "manifest")
# The train stage's files whose size and SHA-256 its summary records for their readers.
TRAIN_RECORDED = ("train_log", "best", "last")
STAGE_FILES = {
    "prepare": (*DATA, "prepare_cost"),
    "train": (*DATA, "summary", "train_log", "best", "last", "work_dir", "train_cost"),
    "evaluate": (
        *DATA,
        "best",
        "summary",
        "train_log",
        "train_cost",
        "metrics",
        "checks",
        "evaluate_cost",
    ),
    "sample": ("vocab", "manifest", "best", "summary", "samples", "samples_meta", "sample_cost"),
    "bench": (*DATA, "bench"),
}
CONFIG_DIR = "config"  # `all`: the resolved stage configs, as the workflow writes them
Files = dict[str, Path]


class UsageError(ValueError):
    """Options that do not fit together (e.g. a file option of another stage)."""


class LaunchError(RuntimeError):
    """Training under torchrun failed (its processes said why)."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Character-level GPT on Tiny Shakespeare (../shared/plan.md).",
        epilog="Outputs and their fields: project/README.md.",
    )
    parser.add_argument(
        "stage",
        nargs="?",
        default="all",
        choices=("all", *STAGES, "bench"),
        help="stage to run; 'all' (the default) runs prepare, train, evaluate and sample",
    )
    add_arguments(parser)
    parser.add_argument(
        "--stage-config",
        type=Path,
        help="the stage's config sections as a JSON file (what the workflow passes); "
        "replaces --config, --set, --epochs, --seed, --device and --data-source",
    )
    parser.add_argument(
        "--out-dir",
        type=Path,
        default=Path("outputs"),
        help="folder for every file not named by its own option (default: ./outputs)",
    )
    parser.add_argument(
        "--resume",
        nargs="?",
        const="strict",
        default="off",
        choices=RESUME_MODES,
        help="train: continue from the newest checkpoint of the work folder. Alone: refuse "
        "one made under other settings or data (except the settings safe to change on "
        "resume); `restart-on-change` (what the workflow passes): start over instead",
    )
    parser.add_argument(
        "--detect-anomaly",
        action="store_true",
        help="torch.autograd anomaly detection (slow): names the operation that made a NaN",
    )
    parser.add_argument(
        "--variant",
        choices=VARIANT_NAMES,
        help="bench only: measure this way of running the step alone (default: every one "
        "this device runs)",
    )
    parser.add_argument(
        "--peak-tflops",
        type=float,
        help="bench only: the device's peak bf16 TFLOP/s for model FLOPs utilisation "
        f"(default on CUDA: {DEFAULT_CUDA_PEAK_TFLOPS:g}, the dense bf16 matmul rate "
        "measured on our H100)",
    )
    files = parser.add_argument_group("files of a stage (default: under --out-dir)")
    for name, default in FILES.items():
        users = [stage for stage, names in STAGE_FILES.items() if name in names]
        files.add_argument(
            option(name),
            type=Path,
            metavar="PATH",
            help=f"{', '.join(users)}; default <out-dir>/{default}",
        )
    return parser.parse_args(argv)


# -- configuration and files ----------------------------------------------------------


def option(name: str) -> str:
    """The command-line option of a file: `train_log` → `--train-log`."""
    return f"--{name.replace('_', '-')}"


def resolve(args: argparse.Namespace) -> Resolved:
    """The run's configuration from the options; says so when the CPU preset stands in."""
    if args.stage_config is not None:
        raise UsageError(f"--stage-config is for one stage; `{args.stage}` resolves its own")
    resolved = resolve_arguments(args)
    if resolved.source == "cpu-preset":
        logger.warning(
            "on the CPU: using the CPU preset %s instead of the plan's full "
            "configuration (pass --config %s to insist on the plan's sizes)",
            CPU_PRESET,
            DEFAULT_CONFIG,
        )
    return resolved


def stage_config(args: argparse.Namespace) -> Config:
    """The sections the stage reads: from --stage-config, or resolved from the options."""
    sections = STAGE_SECTIONS[args.stage]
    if args.stage_config is None:
        return build(resolve(args).view(args.stage), sections)
    chosen = [
        name
        for name in ("config", "epochs", "seed", "device", "data_source")
        if getattr(args, name) is not None
    ] + (["set"] if args.assignments else [])
    if chosen:
        raise UsageError(f"--stage-config replaces --{', --'.join(chosen)}; pass one or the other")
    if not args.stage_config.is_file():
        raise UsageError(f"--stage-config {args.stage_config}: no such file")
    try:
        return build(read_json(args.stage_config), sections)
    except ConfigError as error:
        raise ConfigError(f"{args.stage_config}: {error}") from None


def stage_files(args: argparse.Namespace, stage: str) -> Files:
    """The stage's files: each named option, else its place under --out-dir."""
    given = {name for name in FILES if getattr(args, name) is not None}
    foreign = sorted(given - set(STAGE_FILES.get(stage, ())))
    if foreign:
        options = ", ".join(option(name) for name in foreign)
        raise UsageError(f"{options}: not a file of stage `{stage}`")
    return {name: getattr(args, name) or args.out_dir / FILES[name] for name in FILES}


def data_files(files: Files) -> DataFiles:
    return DataFiles(files["train_ids"], files["val_ids"], files["vocab"], files["manifest"])


def check_training_outputs(files: Files, *names: str) -> None:
    """The train stage's files are the ones it recorded in its summary (utils/inputs.py)."""
    require([files["summary"]], "train")
    recorded = read_json(files["summary"])["files"]
    for name in names:
        verify(files[name], recorded[name], "train", files["summary"])


def load_data(files: Files, device: torch.device) -> PreparedData:
    data = PreparedData.load(data_files(files))
    return PreparedData(data.train.to(device), data.val.to(device), data.tokenizer, data.manifest)


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


# -- stages ---------------------------------------------------------------------------


def run_prepare(config: Config, files: Files) -> dict[str, Any]:
    """D1-D3: the encoded splits, the vocabulary and the manifest."""
    with StageCost("prepare", torch.device("cpu")) as cost:
        manifest = prepare(config.data, data_files(files))
    write_json(files["prepare_cost"], cost.record())
    return manifest


def run_train(config: Config, files: Files, resume: str) -> dict[str, Any]:
    """T1-T8: train, validate every epoch, keep best.pt and last.pt (one writer at a time).
    Under torchrun every process trains its share; rank 0 writes.
    """
    device = resolve_device(config.device)
    ranks = join(device)
    try:
        if not ranks.main:
            return train_stage(config, files, resume, ranks.device(device), ranks)
        with sole_writer(files["work_dir"], "training"):
            return train_stage(config, files, resume, ranks.device(device), ranks)
    finally:
        leave()


def run_distributed(config: Config, argv: list[str]) -> None:
    """train.devices > 1: `run.py ARGV` (the train stage) under torchrun, one process a
    device (NCCL on CUDA, gloo on the CPU).
    """
    devices = config.train.devices
    logger.info("training on %d devices: starting torchrun", devices)
    code = launch(devices, argv)
    if code != 0:
        raise LaunchError(
            f"training under torchrun ({devices} processes) failed with exit code {code}; "
            "the processes' own errors are above"
        )


def train_stage(
    config: Config, files: Files, resume: str, device: torch.device, ranks: Ranks
) -> dict[str, Any]:
    precision = resolve_precision(config.train.precision, device)
    seed_everything(config.seed)
    with StageCost("train", device) as cost:
        data = load_data(files, device)
        model = CharGPT(config.model, data.tokenizer.vocab_size).to(device)
        logger.info(
            "training %s parameters on %s (%s)", f"{model.num_parameters():,}", device, precision
        )
        trainer = Trainer(
            model,
            data.train,
            config,
            config.to_dict(),
            files["work_dir"],
            precision,
            validate=lambda m: validation_loss(m, data, config.eval, precision),
            data={key: data.manifest[key] for key in ("source_sha256", "train_fraction")},
            ranks=ranks,
        )
        summary = trainer.train(resume=resume)
        trainer.publish(files["train_log"], files["best"], files["last"])
    if not ranks.main:
        return summary
    summary.update(
        parameters=model.num_parameters(),
        parameters_by_module=model.parameters_by_module(),
        vocab_size=data.tokenizer.vocab_size,
        environment=environment(device),
        files={name: file_record(files[name]) for name in TRAIN_RECORDED},
    )
    write_json(files["summary"], summary)
    write_json(files["train_cost"], cost.record())
    return summary


def load_best_model(best: Path, device: torch.device) -> tuple[CharGPT, dict[str, Any], Config]:
    """The best checkpoint's model, its training state and the config it was trained with."""
    checkpoint = load_checkpoint(best, device)
    trained = build(checkpoint["config"], STAGE_SECTIONS["train"])
    model = CharGPT(trained.model, checkpoint["vocab_size"]).to(device)
    model.load_state_dict(checkpoint["model"])
    return model, checkpoint["state"], trained


def run_evaluate(config: Config, files: Files) -> dict[str, Any]:
    """E1-E4 on the best checkpoint: metrics.json, then the quick-validation checks."""
    device = resolve_device(config.device)
    check_training_outputs(files, "best", "train_log")
    with StageCost("evaluate", device) as cost:
        data = load_data(files, device)
        model, state, trained = load_best_model(files["best"], device)
        # Score in the precision the model was trained in (T5), not this stage's config.
        precision = resolve_precision(trained.train.precision, device)
        started = time.perf_counter()
        metrics = evaluate(model, data, config.eval, precision)  # ends reading sums back
        cost.time("evaluation_s", started)
    metrics.update(checkpoint_step=state["best_step"], precision=precision)
    write_json(files["metrics"], metrics)
    write_json(files["evaluate_cost"], cost.record())
    quick_validation(files, metrics)
    logger.info(
        "validation: %.4f bpc (uniform %.4f, unigram %.4f), top-1 %.3f, top-5 %.3f",
        metrics["bits_per_char"],
        metrics["baselines"]["uniform"]["bits_per_char"],
        metrics["baselines"]["unigram"]["bits_per_char"],
        metrics["top1_accuracy"],
        metrics["top5_accuracy"],
    )
    return metrics


def run_sample(config: Config, files: Files) -> str:
    """E5 Samples from the best checkpoint: samples.txt (+ samples.json)."""
    device = resolve_device(config.device)
    data_files(files).check("vocab")
    check_training_outputs(files, "best")
    with StageCost("sample", device) as cost:
        tokenizer = CharTokenizer.load(files["vocab"])
        model, state, _ = load_best_model(files["best"], device)
        started = time.perf_counter()
        text = sample_text(model, tokenizer, config.sample)
        cost.figures["chars_per_s"] = config.sample.num_chars / cost.time("sampling_s", started)
    write_text(files["samples"], text + "\n")
    meta = {
        "plan_ids": ["E5"],
        **config.to_dict()["sample"],
        "checkpoint_step": state["best_step"],
    }
    write_json(files["samples_meta"], meta)
    write_json(files["sample_cost"], cost.record())
    return text


def quick_validation(files: Files, metrics: dict[str, Any]) -> dict[str, Any]:
    """The plan's quick-validation expectations, checked on the outputs of a run:
    quick_validation.json, which the workflow's report shows.
    """
    summary = read_json(files["summary"])
    cost = read_json(files["train_cost"])
    steps = [r for r in read_jsonl(files["train_log"]) if r["kind"] == "train"]
    # The training stage's peak on its device: PyTorch's reserved GPU memory, else host RSS.
    peak = cost["torch_max_memory_reserved_bytes"] or cost["peak_host_rss_bytes"]
    checks = {
        "training loss lower at the end than at the start": summary["final_train_loss"]
        < summary["first_train_loss"],
        "no NaN or Inf in loss or gradients": len(steps) == summary["steps"]
        and all(math.isfinite(r["loss"]) and math.isfinite(r["grad_norm"]) for r in steps),
        "validation bpc below the unigram baseline": metrics["beats_unigram"],
        "validation bpc below the uniform baseline": metrics["beats_uniform"],
        "peak memory within the device": peak < summary["environment"]["device_memory_bytes"],
    }
    result = {"passed": all(checks.values()), "checks": checks}
    write_json(files["checks"], result)
    return result


def run_all(args: argparse.Namespace) -> int:
    """Resolve once, write the stage configs as the workflow does, chain the stages."""
    resolved = resolve(args)
    config_files = write_stage_configs(args.out_dir / CONFIG_DIR, resolved)
    files = stage_files(args, "all")

    def view(stage: str) -> Config:
        return build(resolved.view(stage), STAGE_SECTIONS[stage])

    run_prepare(view("prepare"), files)
    train = view("train")
    if train.train.devices > 1:
        argv = [
            "train",
            "--stage-config",
            str(config_files["train"]),
            "--out-dir",
            str(args.out_dir),
        ]
        run_distributed(train, [*argv, "--resume", args.resume])
        summary = read_json(files["summary"])
    else:
        summary = run_train(train, files, args.resume)
    metrics = run_evaluate(view("evaluate"), files)
    text = run_sample(view("sample"), files)
    result = read_json(files["checks"])
    print(f"\n--- sample ---\n{text}\n--------------")
    print(
        f"epochs {summary['epochs_run']}, steps {summary['steps']}, train loss "
        f"{summary['first_train_loss']:.4f} -> {summary['final_train_loss']:.4f}, "
        f"val {metrics['bits_per_char']:.4f} bpc (unigram "
        f"{metrics['baselines']['unigram']['bits_per_char']:.4f}), "
        f"{summary['train_time_s']:.0f} s training"
    )
    for check, ok in result["checks"].items():
        print(f"[{'ok' if ok else 'FAILED'}] {check}")
    print(f"outputs: {args.out_dir.resolve()}")
    return 0 if result["passed"] else 1


def run_bench(args: argparse.Namespace) -> None:
    """Training speed on the prepared data (prepared first where it is missing)."""
    config = resolve(args).config
    files = stage_files(args, "bench")
    if not files["manifest"].is_file():
        run_prepare(config, files)
    data = PreparedData.load(data_files(files))
    write_json(files["bench"], benchmark(config, data, args.peak_tflops, args.variant))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(  # under torchrun, rank 0 alone reports progress
        level=logging.INFO if launched_ranks().main else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        if args.detect_anomaly:
            torch.autograd.set_detect_anomaly(True)
        if args.stage == "all":
            return run_all(args)
        if args.stage == "bench":
            run_bench(args)
            return 0
        config, files = stage_config(args), stage_files(args, args.stage)
        if args.stage == "prepare":
            run_prepare(config, files)
        elif args.stage == "train" and config.train.devices > 1 and not under_launcher():
            run_distributed(config, sys.argv[1:])
        elif args.stage == "train":
            run_train(config, files, args.resume)
        elif args.stage == "evaluate":
            run_evaluate(config, files)
        else:
            print(run_sample(config, files))
    except (
        ConfigError,
        UsageError,
        DataSourceError,
        DeviceError,
        NonFiniteError,
        ResumeError,
        BusyError,
        MissingInputError,
        StaleInputError,
        CheckpointError,
        DiskFullError,
        UnusableTextError,
        LaunchError,
    ) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2 if isinstance(error, ConfigError | UsageError) else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
