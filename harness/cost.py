"""E6 Cost: wall time, peak host memory and PyTorch's peak GPU memory of a stage.

The GPU memory that NVML sees for the whole job (CUDA context included) is measured
outside the process by the workflow's monitor; this module records what the process
itself knows. A stage on the CPU (`device` "cpu") imports no torch here: a stage that
needs none (a data preparation) stays free of it.
"""

from __future__ import annotations

import resource
import sys
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch


def peak_host_rss_bytes() -> int:
    """Peak resident set size of this process (ru_maxrss is KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


@dataclass
class StageCost:
    """E6: measures one stage; use as a context manager, then read `record()`."""

    stage: str
    device: torch.device | str
    started: float = field(default=0.0, init=False)
    wall_time_s: float | None = field(default=None, init=False)
    # The stage's own figures, e.g. the evaluation's time or the sampler's speed.
    figures: dict[str, float] = field(default_factory=dict, init=False)
    rate: dict[str, Any] | None = field(default=None, init=False)  # see `throughput`

    def throughput(
        self, unit: str, verb: str, *, count: float | None = None, per_s: float | None = None
    ) -> None:
        """How fast the stage did its work, as the report shows it ("1,234 characters/s
        trained"): `per_s` where the stage measured its own rate, else `count` of `unit`
        over the stage's wall time.
        """
        self.rate = {"unit": unit, "verb": verb, "count": count, "per_s": per_s}

    def time(self, name: str, started: float) -> float:
        """Record the seconds since `started` (perf_counter) as figure `name`."""
        self.figures[name] = time.perf_counter() - started
        return self.figures[name]

    @property
    def on_cuda(self) -> bool:
        return str(self.device).startswith("cuda")

    def __enter__(self) -> StageCost:
        if self.on_cuda:
            import torch  # only on CUDA: see the module's docstring

            torch.cuda.reset_peak_memory_stats(self.device)
        self.started = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.on_cuda:
            import torch

            torch.cuda.synchronize(self.device)
        self.wall_time_s = time.perf_counter() - self.started

    def record(self) -> dict[str, Any]:
        """E6: the figures of the finished stage, ready for JSON."""
        allocated = reserved = None
        if self.on_cuda:
            import torch

            allocated = torch.cuda.max_memory_allocated(self.device)
            reserved = torch.cuda.max_memory_reserved(self.device)
        return {
            "stage": self.stage,
            "device": str(self.device),
            "wall_time_s": self.wall_time_s,
            "peak_host_rss_bytes": peak_host_rss_bytes(),
            "torch_max_memory_allocated_bytes": allocated,
            "torch_max_memory_reserved_bytes": reserved,
            **self.figures,
            "throughput": self._throughput(),
        }

    def _throughput(self) -> dict[str, Any] | None:
        if self.rate is None:
            return None
        per_s = self.rate["per_s"]
        if per_s is None and self.rate["count"] is not None and self.wall_time_s:
            per_s = self.rate["count"] / self.wall_time_s
        return {"per_s": per_s, "unit": self.rate["unit"], "verb": self.rate["verb"]}
