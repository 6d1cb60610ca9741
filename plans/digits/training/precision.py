"""T5 Precision: fp32 on every device."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch


@contextlib.contextmanager
def strict_fp32() -> Iterator[None]:
    """T5: fp32 on every device, while the block runs: no autocast anywhere, and on CUDA no
    TF32 in the convolutions (cuDNN's default) nor in the matrix products; the settings
    are restored after.
    """
    backends = (torch.backends.cudnn.conv, torch.backends.cuda.matmul)
    previous = [backend.fp32_precision for backend in backends]
    for backend in backends:
        backend.fp32_precision = "ieee"
    try:
        yield
    finally:
        for backend, setting in zip(backends, previous, strict=True):
            backend.fp32_precision = setting
