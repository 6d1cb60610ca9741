"""Training speed benchmark: median step time, characters a second and model FLOPs
utilisation (MFU) after warm-up, for each way to run the step (T5, T6; VARIANTS): eager or
torch.compile'd, with or without the whole step replayed from one CUDA graph; then a profile
of a few more steps: where the step's time goes, kernel by kernel.
"""

from __future__ import annotations

import dataclasses
import logging
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from harness.device import resolve_device, resolve_precision
from harness.seed import seed_everything
from torch.autograd import DeviceType
from torch.profiler import ProfilerActivity, profile

from ..data.dataset import PreparedData
from ..model.build import build_model
from ..training.trainer import Trainer
from ..utils.config import Config, ConfigError

logger = logging.getLogger(__name__)

WARMUP_STEPS = 15
MEASURED_STEPS = 60  # in BLOCKS blocks; the step time is the median block's mean
BLOCKS = 3
PROFILED_STEPS = 5
TOP_KERNELS = 12  # the longest kernels (CPU: operators) a profile lists
# Dense bf16 matmul rate measured on our H100 (8192³ products): the MFU denominator.
DEFAULT_CUDA_PEAK_TFLOPS = 790.0


@dataclass(frozen=True)
class Variant:
    """One way to run the training step (T5): the settings it changes."""

    name: str
    compile: bool
    compile_mode: str
    cuda_graph: bool
    compile_scope: str = "model"

    def settings(self) -> dict[str, Any]:
        """The train.* keys this variant sets, with their values."""
        return {key: value for key, value in dataclasses.asdict(self).items() if key != "name"}


VARIANTS = (
    Variant("eager", compile=False, compile_mode="default", cuda_graph=False),
    Variant("compile", compile=True, compile_mode="default", cuda_graph=False),
    Variant("reduce-overhead", compile=True, compile_mode="reduce-overhead", cuda_graph=False),
    Variant("graph", compile=False, compile_mode="default", cuda_graph=True),
    Variant("compile+graph", compile=True, compile_mode="default", cuda_graph=True),
    Variant(
        "compile-blocks+graph",
        compile=True,
        compile_mode="default",
        cuda_graph=True,
        compile_scope="block",
    ),
    Variant(
        "max-autotune+graph",
        compile=True,
        compile_mode="max-autotune-no-cudagraphs",
        cuda_graph=True,
    ),
)
VARIANT_NAMES = tuple(variant.name for variant in VARIANTS)


def variants(device: torch.device) -> list[Variant]:
    """What to measure here: torch.compile and CUDA graphs are CUDA paths in this project,
    so the CPU measures the plain step and the same step on static buffers (no capture).
    """
    if device.type == "cuda":
        return list(VARIANTS)
    return [variant for variant in VARIANTS if not variant.compile]


def default_variant(config: Config, device: torch.device) -> str | None:
    """The variant a run of `config` trains in on `device` (torch.compile only on CUDA)."""
    train = config.train
    compiled = train.compile and device.type == "cuda"
    wanted = {"compile": compiled, "cuda_graph": train.cuda_graph}
    if compiled:
        wanted |= {"compile_mode": train.compile_mode, "compile_scope": train.compile_scope}
    for variant in variants(device):
        if wanted.items() <= variant.settings().items():
            return variant.name
    return None


def profile_steps(step: Callable[[], object], device: torch.device) -> dict[str, Any]:
    """Where the step's time goes: PROFILED_STEPS steps under the PyTorch profiler, with the
    time each kernel (on the CPU: each operator, self time) takes a step, longest first.
    `busy_ms_per_step` sums them all: next to the step time it shows how much of a step
    the device spends idle (waiting for the host).
    """
    on_cuda = device.type == "cuda"
    activities = [ProfilerActivity.CPU, *([ProfilerActivity.CUDA] if on_cuda else [])]
    with profile(activities=activities) as profiler:
        for _ in range(PROFILED_STEPS):
            step()
        if on_cuda:
            torch.cuda.synchronize(device)
    measured = DeviceType.CUDA if on_cuda else DeviceType.CPU
    rows = []
    for event in profiler.key_averages():
        if event.device_type != measured:
            continue
        micros = event.self_device_time_total if on_cuda else event.self_cpu_time_total
        if micros > 0:
            rows.append((event.key, micros / 1e3 / PROFILED_STEPS, event.count / PROFILED_STEPS))
    rows.sort(key=lambda row: row[1], reverse=True)
    return {
        "unit": "kernel" if on_cuda else "operator",
        "steps": PROFILED_STEPS,
        "busy_ms_per_step": sum(row[1] for row in rows),
        "top": [
            {"name": name, "ms_per_step": ms, "calls_per_step": calls}
            for name, ms, calls in rows[:TOP_KERNELS]
        ],
    }


def time_variant(
    config: Config, data: PreparedData, device: torch.device, precision: str
) -> dict[str, Any]:
    """Step time of one configuration after warm-up (compilation, capture), timed apart."""
    seed_everything(config.seed)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    model = build_model(config.model, data.tokenizer.vocab_size).to(device)
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
        batches = trainer.batches.endless()
        sync = torch.cuda.synchronize if device.type == "cuda" else lambda: None
        started = time.perf_counter()
        for _ in range(WARMUP_STEPS):
            trainer.train_step(*next(batches))
        sync()
        warmup_s = time.perf_counter() - started
        # Steps overlap on the device as in training, so time blocks of steps, not one.
        block_times = []
        for _ in range(BLOCKS):
            begin = time.perf_counter()
            for _ in range(MEASURED_STEPS // BLOCKS):
                trainer.train_step(*next(batches))
            sync()
            block_times.append((time.perf_counter() - begin) / (MEASURED_STEPS // BLOCKS))
        try:
            profiled = profile_steps(lambda: trainer.train_step(*next(batches)), device)
        except RuntimeError as error:  # the profiler (CUPTI) failing costs only the profile
            logger.warning("profiling the step failed; its timings stand", exc_info=True)
            profiled = {"error": f"{type(error).__name__}: {error}", "top": []}
    step_s = statistics.median(block_times)
    chars = trainer.chars_per_step
    return {
        "median_step_ms": step_s * 1e3,
        "chars_per_s": chars / step_s,
        "achieved_tflops": model.flops_per_token() * chars / step_s / 1e12,
        "warmup_s": warmup_s,
        "max_memory_reserved_bytes": (
            torch.cuda.max_memory_reserved(device) if device.type == "cuda" else None
        ),
        "profile": profiled,
    }


def benchmark(
    config: Config, data: PreparedData, peak_tflops: float | None, only: str | None = None
) -> dict[str, Any]:
    """Measure every variant (or the one named `only`), print a table and return the
    figures (bench.json).
    """
    device = resolve_device(config.device)
    precision = resolve_precision(config.train.precision, device)
    if peak_tflops is None and device.type == "cuda":
        peak_tflops = DEFAULT_CUDA_PEAK_TFLOPS
    chosen = [v for v in variants(device) if only in (None, v.name)]
    if not chosen:
        raise ConfigError(
            f"bench variant {only!r} is not measured on {device.type}; choose from "
            f"{', '.join(v.name for v in variants(device))}"
        )
    results = {}
    for variant in chosen:
        train = dataclasses.replace(config.train, **variant.settings())
        result = time_variant(dataclasses.replace(config, train=train), data, device, precision)
        result["mfu"] = result["achieved_tflops"] / peak_tflops if peak_tflops else None
        result["settings"] = variant.settings()  # for a run in this variant
        results[variant.name] = result
    print(
        f"bench on {device} ({precision}), B={config.train.batch_size} "
        f"T={config.model.block_size} L={config.model.n_layer} d={config.model.d_model}; "
        f"{WARMUP_STEPS} warm-up + {MEASURED_STEPS} measured steps"
    )
    width = max(len("variant"), *map(len, results)) + 2
    print(
        f"{'variant':<{width}}{'step ms':>10}{'chars/s':>14}{'TFLOP/s':>10}{'MFU':>8}"
        f"{'warm-up s':>11}"
    )
    for name, r in results.items():
        mfu = f"{r['mfu']:.1%}" if r["mfu"] is not None else "n/a"
        print(
            f"{name:<{width}}{r['median_step_ms']:>10.2f}{r['chars_per_s']:>14,.0f}"
            f"{r['achieved_tflops']:>10.2f}{mfu:>8}{r['warmup_s']:>11.1f}"
        )
    return {
        "device": str(device),
        "gpu_name": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "precision": precision,
        "peak_tflops": peak_tflops,
        "batch_size": config.train.batch_size,
        "block_size": config.model.block_size,
        "n_layer": config.model.n_layer,
        "d_model": config.model.d_model,
        "warmup_steps": WARMUP_STEPS,
        "measured_steps": MEASURED_STEPS,
        "variants_here": [variant.name for variant in variants(device)],
        "default_variant": default_variant(config, device),
        "variants": results,
    }
