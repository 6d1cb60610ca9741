"""Multi-device training (train.devices > 1): PyTorch's own launcher and process group.

`run.py train` with N devices starts itself again under `torchrun` (one process a device);
each process finds its rank here, joins the process group (NCCL on CUDA, gloo on the CPU)
and trains its share of every batch under DistributedDataParallel. Rank 0 alone writes.
"""

from __future__ import annotations

import ctypes
import functools
import os
import signal
import subprocess
import sys
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Ranks:
    """This process's place among the training processes."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """The one process that writes logs, checkpoints and summaries."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def device(self, device: torch.device) -> torch.device:
        """Each process its own GPU (torchrun's LOCAL_RANK); the CPU is shared."""
        return torch.device("cuda", self.local_rank) if device.type == "cuda" else device

    def mean(self, values: torch.Tensor) -> torch.Tensor:
        """The mean of `values` over the processes (in place where distributed)."""
        if self.distributed:
            dist.all_reduce(values)
            values /= self.world_size
        return values

    def from_main(self, value: float, device: torch.device) -> float:
        """`value` as rank 0 has it (the others pass anything)."""
        if not self.distributed:
            return value
        tensor = torch.tensor([value], dtype=torch.float64, device=device)
        dist.broadcast(tensor, src=0)
        return float(tensor.item())

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()


def under_launcher() -> bool:
    """Whether torchrun started this process (it sets the rank variables)."""
    return "LOCAL_RANK" in os.environ and "WORLD_SIZE" in os.environ


def launch(devices: int, argv: list[str]) -> int:
    """Run `run.py ARGV` under torchrun, one process a device; returns its exit code.

    torchrun gets SIGTERM when this process dies, however it dies (`kill -9` included): it
    then stops its workers, which would otherwise go on training and writing without it.
    """
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc-per-node={devices}",
        sys.argv[0],
        *argv,
    ]
    stop_with_me = functools.partial(die_with_parent, signal.SIGTERM, os.getpid())
    return subprocess.run(command, check=False, preexec_fn=stop_with_me).returncode


PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
# Looked up here, not in a forked child before exec (preexec_fn), where other threads' locks
# may be held.
_PRCTL = ctypes.CDLL(None, use_errno=True).prctl if sys.platform.startswith("linux") else None


def die_with_parent(signum: int, parent: int) -> None:
    """Have the kernel send this process `signum` when its parent, `parent`, dies; at once if
    it already has. Linux only: elsewhere nothing.
    """
    if _PRCTL is None:
        return
    _PRCTL(PR_SET_PDEATHSIG, signum)
    if os.getppid() != parent:  # the parent died before prctl took effect
        os.kill(os.getpid(), signum)


def die_with_launcher() -> None:
    """torchrun starts each worker in a session of its own, so a torchrun killed outright (a
    scheduler's time limit, SIGKILL) would leave its workers training: on Linux the kernel
    kills this worker when its parent dies.
    """
    die_with_parent(signal.SIGKILL, os.getppid())


def launched_ranks() -> Ranks:
    """This process's ranks as torchrun set them (rank 0 of 1 outside torchrun)."""
    if not under_launcher():
        return Ranks()
    return Ranks(
        rank=int(os.environ["RANK"]),
        world_size=int(os.environ["WORLD_SIZE"]),
        local_rank=int(os.environ["LOCAL_RANK"]),
    )


def join(device: torch.device) -> Ranks:
    """This process's ranks, joining the process group when torchrun started it."""
    ranks = launched_ranks()
    if not ranks.distributed:
        return ranks
    die_with_launcher()
    if device.type == "cuda":
        torch.cuda.set_device(ranks.local_rank)
    dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return ranks


def leave() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()
