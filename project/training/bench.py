"""Training speed benchmark: median step time, characters a second and model FLOPs
utilisation (MFU) after warm-up, eager and with torch.compile (T5, T6).
"""

from __future__ import annotations

import dataclasses
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from data.dataset import PreparedData
from model.gpt import CharGPT
from training.trainer import Trainer
from utils.config import Config
from utils.device import resolve_device, resolve_precision
from utils.seed import seed_everything

WARMUP_STEPS = 15
MEASURED_STEPS = 40
# Dense bf16 matmul rate measured on our H100 (8192³ products): the MFU denominator.
DEFAULT_CUDA_PEAK_TFLOPS = 790.0


def flops_per_char(model: CharGPT) -> float:
    """Training FLOPs per character: 6 per weight used in a matmul (forward + backward),
    the tied head included, plus 12·L·d·T for the attention scores and their use.
    """
    config = model.config
    matmul_weights = sum(p.numel() for p in model.blocks.parameters() if p.dim() >= 2)
    head = model.embedding.weight.numel()
    attention = 12 * config.n_layer * config.d_model * config.block_size
    return 6 * (matmul_weights + head) + attention


def variants(device: torch.device) -> list[tuple[str, bool, str]]:
    """(label, compile, mode) to measure; torch.compile is a CUDA path in this project."""
    eager = [("eager", False, "default")]
    if device.type != "cuda":
        return eager
    return [
        *eager,
        ("compile", True, "default"),
        ("compile reduce-overhead", True, "reduce-overhead"),
    ]


def time_variant(
    config: Config, data: PreparedData, device: torch.device, precision: str
) -> dict[str, Any]:
    """Median step time of one configuration, warm-up (compilation) timed separately."""
    seed_everything(config.seed)
    model = CharGPT(config.model, data.tokenizer.vocab_size).to(device)
    with tempfile.TemporaryDirectory() as scratch:
        trainer = Trainer(
            model,
            data.train.to(device),
            config,
            {},
            Path(scratch),
            precision,
            validate=lambda m: 0.0,
        )
        batches = trainer.batches.epoch(0)
        sync = torch.cuda.synchronize if device.type == "cuda" else lambda: None
        started = time.perf_counter()
        for _ in range(WARMUP_STEPS):
            trainer.train_step(*next(batches))
        sync()
        warmup_s = time.perf_counter() - started
        times = []
        for _ in range(MEASURED_STEPS):
            begin = time.perf_counter()
            trainer.train_step(*next(batches))
            sync()
            times.append(time.perf_counter() - begin)
    step_s = statistics.median(times)
    chars = config.train.batch_size * config.model.block_size
    return {
        "median_step_ms": step_s * 1e3,
        "chars_per_s": chars / step_s,
        "achieved_tflops": flops_per_char(model) * chars / step_s / 1e12,
        "warmup_s": warmup_s,
    }


def benchmark(config: Config, data: PreparedData, peak_tflops: float | None) -> dict[str, Any]:
    """Measure every variant, print a table and return the figures (bench.json)."""
    device = resolve_device(config.device)
    precision = resolve_precision(config.train.precision, device)
    if peak_tflops is None and device.type == "cuda":
        peak_tflops = DEFAULT_CUDA_PEAK_TFLOPS
    results = {}
    for label, compile_model, mode in variants(device):
        train = dataclasses.replace(config.train, compile=compile_model, compile_mode=mode)
        result = time_variant(dataclasses.replace(config, train=train), data, device, precision)
        result["mfu"] = result["achieved_tflops"] / peak_tflops if peak_tflops else None
        results[label] = result
    print(
        f"bench on {device} ({precision}), B={config.train.batch_size} "
        f"T={config.model.block_size} L={config.model.n_layer} d={config.model.d_model}; "
        f"{WARMUP_STEPS} warm-up + {MEASURED_STEPS} measured steps"
    )
    print(
        f"{'variant':<26}{'step ms':>10}{'chars/s':>14}{'TFLOP/s':>10}{'MFU':>8}{'warm-up s':>11}"
    )
    for label, r in results.items():
        mfu = f"{r['mfu']:.1%}" if r["mfu"] is not None else "n/a"
        print(
            f"{label:<26}{r['median_step_ms']:>10.2f}{r['chars_per_s']:>14,.0f}"
            f"{r['achieved_tflops']:>10.2f}{mfu:>8}{r['warmup_s']:>11.1f}"
        )
    return {
        "device": str(device),
        "gpu_name": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "precision": precision,
        "peak_tflops": peak_tflops,
        "batch_size": config.train.batch_size,
        "block_size": config.model.block_size,
        "warmup_steps": WARMUP_STEPS,
        "measured_steps": MEASURED_STEPS,
        "variants": results,
    }
