"""The one entry point: `python run.py [prepare|train|evaluate|sample|bench|all] [options]`.

`python run.py --epochs 2` is the quick validation: prepare → train → evaluate → sample.
Every stage writes JSON (or JSON Lines) under --out-dir; project/README.md documents the
fields, which are the contract the Snakemake workflow reads.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import platform
import sys
from pathlib import Path
from typing import Any

import torch

from data.dataset import MANIFEST_FILE, PreparedData
from data.download import DataSourceError
from data.preprocess import prepare
from model.gpt import CharGPT
from testing.evaluator import evaluate, validation_loss
from training.bench import benchmark
from training.checkpoint import BEST, load_checkpoint
from training.trainer import CHECKPOINT_DIR, LOG_FILE, NonFiniteError, Trainer
from utils.config import (
    CPU_PRESET,
    DEFAULT_CONFIG,
    Config,
    ConfigError,
    differences,
    load,
    parse_assignment,
)
from utils.config import build as build_config
from utils.cost import StageCost
from utils.device import DeviceError, resolve_device, resolve_precision
from utils.io import read_json, read_jsonl, write_json, write_text
from utils.seed import seed_everything

logger = logging.getLogger("run")

STAGES = ("all", "prepare", "train", "evaluate", "sample", "bench")
DATA_DIR = "data"
TRAIN_SUMMARY = "train_summary.json"
METRICS = "metrics.json"
SAMPLES = "samples.txt"
SAMPLES_META = "samples.json"
QUICK_VALIDATION = "quick_validation.json"
BENCH = "bench.json"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Character-level GPT on Tiny Shakespeare (../shared/plan.md).",
        epilog="Outputs and their fields: project/README.md.",
    )
    parser.add_argument(
        "stage",
        nargs="?",
        default="all",
        choices=STAGES,
        help="stage to run; 'all' (the default) runs prepare, train, evaluate and sample",
    )
    parser.add_argument(
        "--config",
        type=Path,
        help="YAML file whose keys override configs/default.yaml (the plan); "
        "without it, --device auto on a machine without CUDA uses configs/cpu.yaml",
    )
    parser.add_argument(
        "--set",
        dest="assignments",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one config key, e.g. --set train.lr=3e-4 (repeatable)",
    )
    parser.add_argument("--epochs", type=int, help="training epochs (train.epochs)")
    parser.add_argument(
        "--device",
        choices=("auto", "cpu", "cuda"),
        help="where to run; auto = CUDA if available, else the CPU (config key: device)",
    )
    parser.add_argument("--seed", type=int, help="the one seed of Python, NumPy, PyTorch (T8)")
    parser.add_argument(
        "--out-dir",
        type=Path,
        default=Path("outputs"),
        help="folder for every output (default: ./outputs)",
    )
    parser.add_argument(
        "--data-source",
        help="where the text comes from: a file (data.local_file), a mirror folder laid out "
        "<dir>/<dataset>/<file> (data.mirror_dir) or an http(s) URL (data.url)",
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue training from <out-dir>/checkpoints/last.pt",
    )
    parser.add_argument(
        "--detect-anomaly",
        action="store_true",
        help="torch.autograd anomaly detection (slow): names the operation that made a NaN",
    )
    parser.add_argument(
        "--peak-tflops",
        type=float,
        help="bench only: the device's peak bf16 TFLOP/s for model FLOPs utilisation "
        "(default on CUDA: 790, the dense bf16 matmul rate measured on our H100)",
    )
    return parser.parse_args(argv)


# -- configuration --------------------------------------------------------------------


def cli_overrides(args: argparse.Namespace) -> list[dict[str, Any]]:
    """The command line as config overrides, applied after the config file."""
    overrides = [parse_assignment(text) for text in args.assignments]
    if args.epochs is not None:
        overrides.append({"train": {"epochs": args.epochs}})
    if args.seed is not None:
        overrides.append({"seed": args.seed})
    if args.device is not None:
        overrides.append({"device": args.device})
    if args.data_source is not None:
        overrides.append({"data": data_source_override(args.data_source)})
    return overrides


def data_source_override(source: str) -> dict[str, str]:
    if source.startswith(("http://", "https://")):
        return {"url": source}
    path = Path(source).expanduser().resolve()
    if path.is_dir():
        return {"mirror_dir": str(path)}
    if path.is_file():
        return {"local_file": str(path)}
    raise ConfigError(f"--data-source {source}: no such file or folder (nor an http(s) URL)")


def resolve_config(args: argparse.Namespace) -> tuple[Config, dict[str, Any], str]:
    """Pick the config file (explicit, else the plan, else the CPU preset), apply the CLI.

    Returns the config, its raw mapping and a label of where it came from.
    """
    overrides = cli_overrides(args)
    if args.config is not None:
        config, raw = load(args.config, overrides)
        return config, raw, str(args.config)
    config, raw = load(None, overrides)
    if config.device == "auto" and not torch.cuda.is_available():
        config, raw = load(CPU_PRESET, overrides)
        logger.warning(
            "no CUDA device: using the CPU preset %s instead of the plan's full "
            "configuration (pass --config %s to insist on the plan's sizes)",
            CPU_PRESET,
            DEFAULT_CONFIG,
        )
        return config, raw, "cpu-preset"
    return config, raw, "default"


def deviations(config: Config, source: str, device: torch.device) -> list[str]:
    """What this run does differently from the plan, as the report lists it."""
    notes = []
    if source == "cpu-preset":
        notes.append(
            "CPU preset (configs/cpu.yaml) instead of the plan's full configuration: "
            "no CUDA device and no explicit --config"
        )
    if device.type != "cuda":
        notes.append("no GPU: trained on the CPU in fp32 (T5 plans bf16 on CUDA)")
    plan, _ = load()
    # The run length and the device are choices of the run, not of the plan's design.
    for row in differences(config, plan):
        if row["key"] not in ("device", "train.epochs"):
            notes.append(f"config {row['key']} = {row['used']!r} (plan: {row['plan']!r})")
    return notes


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


def peak_memory(summary: dict[str, Any]) -> int:
    """The training stage's peak on its device: PyTorch's reserved GPU memory, else host RSS."""
    cost = summary["cost"]
    return cost["torch_max_memory_reserved_bytes"] or cost["peak_host_rss_bytes"]


# -- stages ---------------------------------------------------------------------------


def run_prepare(config: Config, out_dir: Path) -> dict[str, Any]:
    """D1-D3: the encoded splits, vocab.json and manifest.json under <out-dir>/data."""
    with StageCost("prepare", torch.device("cpu")) as cost:
        manifest = prepare(config.data, out_dir / DATA_DIR)
    manifest["cost"] = cost.record()
    write_json(out_dir / DATA_DIR / MANIFEST_FILE, manifest)
    return manifest


def load_data(out_dir: Path, device: torch.device) -> PreparedData:
    data = PreparedData.load(out_dir / DATA_DIR)
    return PreparedData(data.train.to(device), data.val.to(device), data.tokenizer, data.manifest)


def run_train(
    config: Config, raw: dict[str, Any], source: str, out_dir: Path, resume: bool
) -> dict[str, Any]:
    """T1-T8: train, validate every epoch, keep best.pt and last.pt."""
    device = resolve_device(config.device)
    precision = resolve_precision(config.train.precision, device)
    seed_everything(config.seed)
    with StageCost("train", device) as cost:
        data = load_data(out_dir, device)
        model = CharGPT(config.model, data.tokenizer.vocab_size).to(device)
        logger.info(
            "training %s parameters on %s (%s), %s",
            f"{model.num_parameters():,}",
            device,
            precision,
            source,
        )
        trainer = Trainer(
            model,
            data.train,
            config,
            raw,
            out_dir,
            precision,
            validate=lambda m: validation_loss(m, data, config.eval, precision),
        )
        summary = trainer.train(resume=resume)
    summary.update(
        parameters=model.num_parameters(),
        parameters_by_module=model.parameters_by_module(),
        vocab_size=data.tokenizer.vocab_size,
        config_source=source,
        deviations=deviations(config, source, device),
        config=config.to_dict(),
        environment=environment(device),
        cost=cost.record(),
    )
    write_json(out_dir / TRAIN_SUMMARY, summary)
    return summary


def load_best_model(out_dir: Path, device: torch.device) -> tuple[CharGPT, dict[str, Any], Config]:
    """The best checkpoint's model, its training state and the config it was trained with."""
    checkpoint = load_checkpoint(out_dir / CHECKPOINT_DIR / BEST, device)
    trained = build_config(checkpoint["config"])
    model = CharGPT(trained.model, checkpoint["vocab_size"]).to(device)
    model.load_state_dict(checkpoint["model"])
    return model, checkpoint["state"], trained


def run_evaluate(config: Config, out_dir: Path) -> dict[str, Any]:
    """E1-E4 on the best checkpoint: metrics.json, then the quick-validation checks."""
    device = resolve_device(config.device)
    with StageCost("evaluate", device) as cost:
        data = load_data(out_dir, device)
        model, state, trained = load_best_model(out_dir, device)
        # Score in the precision the model was trained in (T5), not this stage's config.
        precision = resolve_precision(trained.train.precision, device)
        metrics = evaluate(model, data, config.eval, precision)
    metrics.update(
        checkpoint=BEST, checkpoint_step=state["best_step"], precision=precision, cost=cost.record()
    )
    write_json(out_dir / METRICS, metrics)
    quick_validation(out_dir, metrics)
    logger.info(
        "validation: %.4f bpc (uniform %.4f, unigram %.4f), top-1 %.3f, top-5 %.3f",
        metrics["bits_per_char"],
        metrics["baselines"]["uniform"]["bits_per_char"],
        metrics["baselines"]["unigram"]["bits_per_char"],
        metrics["top1_accuracy"],
        metrics["top5_accuracy"],
    )
    return metrics


def run_sample(config: Config, out_dir: Path) -> str:
    """E5 Samples: 500 characters generated from "ROMEO:" with a fixed seed, temperature
    0.8 and top-k 40 by the best checkpoint: samples.txt (+ samples.json).

    It lives here, not in testing/, so that editing the evaluator does not redo samples.
    """
    device = resolve_device(config.device)
    settings = config.sample
    with StageCost("sample", device) as cost:
        tokenizer = PreparedData.load(out_dir / DATA_DIR).tokenizer
        model, state, _ = load_best_model(out_dir, device)
        ids = model.generate(
            tokenizer.encode(settings.prompt),
            n=settings.num_chars,
            temperature=settings.temperature,
            top_k=settings.top_k,
            seed=settings.seed,
        )
        text = settings.prompt + tokenizer.decode(ids)
    write_text(out_dir / SAMPLES, text + "\n")
    meta = {
        "plan_ids": ["E5"],
        **config.to_dict()["sample"],
        "checkpoint": BEST,
        "checkpoint_step": state["best_step"],
        "cost": cost.record(),
    }
    write_json(out_dir / SAMPLES_META, meta)
    return text


def quick_validation(out_dir: Path, metrics: dict[str, Any]) -> dict[str, Any]:
    """The plan's quick-validation expectations, checked on the outputs of a run:
    quick_validation.json, which the workflow's report shows.
    """
    summary = read_json(out_dir / TRAIN_SUMMARY)
    steps = [r for r in read_jsonl(out_dir / LOG_FILE) if r["kind"] == "train"]
    checks = {
        "training loss lower at the end than at the start": summary["final_train_loss"]
        < summary["first_train_loss"],
        "no NaN or Inf in loss or gradients": len(steps) == summary["steps"]
        and all(math.isfinite(r["loss"]) and math.isfinite(r["grad_norm"]) for r in steps),
        "validation bpc below the unigram baseline": metrics["beats_unigram"],
        "validation bpc below the uniform baseline": metrics["beats_uniform"],
        "peak memory within the device": peak_memory(summary)
        < summary["environment"]["device_memory_bytes"],
    }
    result = {"passed": all(checks.values()), "checks": checks}
    write_json(out_dir / QUICK_VALIDATION, result)
    return result


def run_all(config: Config, raw: dict[str, Any], source: str, args: argparse.Namespace) -> int:
    out_dir = args.out_dir
    run_prepare(config, out_dir)
    summary = run_train(config, raw, source, out_dir, args.resume)
    metrics = run_evaluate(config, out_dir)
    text = run_sample(config, out_dir)
    result = read_json(out_dir / QUICK_VALIDATION)
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
    print(f"outputs: {out_dir.resolve()}")
    return 0 if result["passed"] else 1


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        config, raw, source = resolve_config(args)
        if args.detect_anomaly:
            torch.autograd.set_detect_anomaly(True)
        if args.stage == "all":
            return run_all(config, raw, source, args)
        if args.stage == "prepare":
            run_prepare(config, args.out_dir)
        elif args.stage == "train":
            run_train(config, raw, source, args.out_dir, args.resume)
        elif args.stage == "evaluate":
            run_evaluate(config, args.out_dir)
        elif args.stage == "sample":
            print(run_sample(config, args.out_dir))
        elif args.stage == "bench":
            report = benchmark(config, prepared_data(config, args.out_dir), args.peak_tflops)
            write_json(args.out_dir / BENCH, report)
    except (
        ConfigError,
        DataSourceError,
        DeviceError,
        NonFiniteError,
        FileNotFoundError,
        ValueError,
    ) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2 if isinstance(error, ConfigError) else 1
    return 0


def prepared_data(config: Config, out_dir: Path) -> PreparedData:
    """The prepared splits, preparing them first where they are missing (bench)."""
    if not (out_dir / DATA_DIR / MANIFEST_FILE).is_file():
        run_prepare(config, out_dir)
    return PreparedData.load(out_dir / DATA_DIR)


if __name__ == "__main__":
    sys.exit(main())
