"""Device and precision choice (T5): bf16 autocast on CUDA, fp32 on the CPU."""

from __future__ import annotations

import contextlib
import os
import platform
from collections.abc import Iterator
from typing import Any

import torch

from harness.errors import ProjectError


class DeviceError(ProjectError, RuntimeError):
    """The requested device is not available here."""


def resolve_device(requested: str) -> torch.device:
    """Map `auto|cpu|cuda` to a torch device; asking for CUDA without one is an error."""
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested == "cuda" and not torch.cuda.is_available():
        raise DeviceError(
            "--device cuda was requested but PyTorch sees no CUDA device "
            f"(torch {torch.__version__}, built for CUDA {torch.version.cuda}); "
            "use --device cpu or --device auto"
        )
    return torch.device(requested)


def resolve_precision(requested: str, device: torch.device) -> str:
    """T5: `auto` means bf16 on CUDA and fp32 on the CPU."""
    if requested == "auto":
        return "bf16" if device.type == "cuda" else "fp32"
    return requested


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager[None]:
    """T5: bf16 autocast (fp32 master weights) where asked; a no-op for fp32."""
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


@contextlib.contextmanager
def inference_mode(model: torch.nn.Module) -> Iterator[None]:
    """Evaluate with dropout off and no autograd, then restore the model's mode."""
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            yield
    finally:
        model.train(was_training)


def environment(device: torch.device) -> dict[str, Any]:
    """A training summary's `environment` (harness/contract.py): what ran the training, and
    the memory that "peak memory within the device" is checked against (the GPU's, or the
    host's on the CPU).
    """
    on_cuda = device.type == "cuda"
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "device": str(device),
        "gpu_name": torch.cuda.get_device_name(device) if on_cuda else None,
        "cpu_threads": torch.get_num_threads(),
        "device_memory_bytes": (
            torch.cuda.get_device_properties(device).total_memory
            if on_cuda
            else os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        ),
    }
