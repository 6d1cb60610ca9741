"""T2 Optimiser and T3 schedule."""

from __future__ import annotations

import math

import torch
from torch import nn

from ..utils.config import TrainConfig


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """T2: weight decay on the convolution and linear weights; none on the biases and the
    BatchNorm gains and shifts.
    """
    decayed = [m.weight for m in model.modules() if isinstance(m, nn.Conv2d | nn.Linear)]
    chosen = {id(p) for p in decayed}
    rest = [p for p in model.parameters() if id(p) not in chosen]
    return [
        {"params": decayed, "weight_decay": weight_decay},
        {"params": rest, "weight_decay": 0.0},
    ]


def build_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.AdamW:
    """T2 Optimiser: AdamW, peak learning rate 2e-3, β = (0.9, 0.999), ε = 1e-8, weight
    decay 5e-4 (parameter_groups).
    """
    return torch.optim.AdamW(
        parameter_groups(model, config.weight_decay),
        lr=config.lr,
        betas=(config.beta1, config.beta2),
        eps=config.adam_eps,
    )


def warmup_steps(total_steps: int, config: TrainConfig) -> int:
    """T3: the warm-up lasts the first 5 % of the optimiser steps, at least one."""
    return max(1, int(config.warmup_fraction * total_steps))


def learning_rate(step: int, total_steps: int, config: TrainConfig) -> float:
    """T3 Schedule: the learning rate of optimiser step `step` (0-based): linear warm-up to
    the peak at the last warm-up step, then cosine decay to 1 % of the peak at the last
    step of the run (total_steps − 1).
    """
    warmup = warmup_steps(total_steps, config)
    if step < warmup:
        return config.lr * (step + 1) / warmup
    final = config.lr * config.final_lr_fraction
    progress = (step - (warmup - 1)) / max(total_steps - warmup, 1)
    return final + 0.5 * (config.lr - final) * (1 + math.cos(math.pi * min(progress, 1.0)))


def build_schedule(
    optimizer: torch.optim.Optimizer, total_steps: int, config: TrainConfig
) -> torch.optim.lr_scheduler.LambdaLR:
    """T3: the schedule as a LambdaLR (a factor of the peak), so that its state checkpoints."""
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: learning_rate(step, total_steps, config) / config.lr
    )
