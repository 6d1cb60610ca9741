"""T2 Optimiser and T3 schedule."""

from __future__ import annotations

import math

import torch
from torch import nn

from ..utils.config import TrainConfig


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """T2: weight decay on every parameter with two or more dimensions (linear weights,
    the embedding), none on the one-dimensional gains.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    return [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]


def build_optimizer(
    model: nn.Module, config: TrainConfig, device: torch.device
) -> torch.optim.AdamW:
    """T2 Optimiser: AdamW, β = (0.9, 0.99), ε = 1e-8, decay 0.1; fused kernels on CUDA.

    For a CUDA-graph step (train.cuda_graph) the learning rate is a device tensor that the
    T3 schedule fills in place, and the update is capturable (its step count stays on the
    device); the CPU runs the same fused update without a graph.
    """
    static = config.cuda_graph
    return torch.optim.AdamW(
        parameter_groups(model, config.weight_decay),
        lr=torch.tensor(config.lr, device=device) if static else config.lr,
        betas=(config.beta1, config.beta2),
        eps=config.adam_eps,
        fused=static or device.type == "cuda",
        capturable=static and device.type == "cuda",
    )


def warmup_steps(total_steps: int, config: TrainConfig) -> int:
    """T3: the warm-up lasts min(100, 5 %) of the run's optimiser steps."""
    return min(config.warmup_max_steps, int(config.warmup_fraction * total_steps))


def learning_rate(step: int, total_steps: int, config: TrainConfig) -> float:
    """T3 Schedule: the learning rate of optimiser step `step` (0-based).

    Linear warm-up to the peak at the last warm-up step, then cosine decay that reaches
    `min_lr` exactly at the last step of the run (step total_steps − 1).
    """
    warmup = warmup_steps(total_steps, config)
    if step < warmup:
        return config.lr * (step + 1) / warmup
    peak_step = max(warmup - 1, 0)
    span = max(total_steps - 1 - peak_step, 1)
    progress = min((step - peak_step) / span, 1.0)
    return config.min_lr + 0.5 * (config.lr - config.min_lr) * (1 + math.cos(math.pi * progress))


def build_schedule(
    optimizer: torch.optim.Optimizer, total_steps: int, config: TrainConfig
) -> torch.optim.lr_scheduler.LambdaLR:
    """T3: the schedule as a LambdaLR (a factor of the peak), so its state checkpoints."""
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: learning_rate(step, total_steps, config) / config.lr
    )
