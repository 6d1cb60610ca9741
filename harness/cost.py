"""E6 Cost: wall time, peak host memory and PyTorch's peak GPU memory of a stage.

The GPU memory that NVML sees for the whole job (CUDA context included) is measured
outside the process by the workflow's monitor; this module records what the process
itself knows.
"""

from __future__ import annotations

import resource
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import torch


def peak_host_rss_bytes() -> int:
    """Peak resident set size of this process (ru_maxrss is KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


@dataclass
class StageCost:
    """E6: measures one stage; use as a context manager, then read `record()`."""

    stage: str
    device: torch.device
    started: float = field(default=0.0, init=False)
    wall_time_s: float | None = field(default=None, init=False)
    # The stage's own figures, e.g. the evaluation's time or the sampler's speed.
    figures: dict[str, float] = field(default_factory=dict, init=False)

    def time(self, name: str, started: float) -> float:
        """Record the seconds since `started` (perf_counter) as figure `name`."""
        self.figures[name] = time.perf_counter() - started
        return self.figures[name]

    def __enter__(self) -> StageCost:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        self.started = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self.wall_time_s = time.perf_counter() - self.started

    def record(self) -> dict[str, Any]:
        """E6: the figures of the finished stage, ready for JSON."""
        on_cuda = self.device.type == "cuda"
        return {
            "stage": self.stage,
            "device": str(self.device),
            "wall_time_s": self.wall_time_s,
            "peak_host_rss_bytes": peak_host_rss_bytes(),
            "torch_max_memory_allocated_bytes": (
                torch.cuda.max_memory_allocated(self.device) if on_cuda else None
            ),
            "torch_max_memory_reserved_bytes": (
                torch.cuda.max_memory_reserved(self.device) if on_cuda else None
            ),
            **self.figures,
        }
