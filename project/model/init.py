"""M7 Initialisation."""

from __future__ import annotations

import math

from torch import nn

from ..model.block import TransformerBlock


def residual_std(init_std: float, n_layer: int) -> float:
    """M7: the residual output projections use std / sqrt(2L)."""
    return init_std / math.sqrt(2 * n_layer)


def init_weights(blocks: nn.ModuleList, init_std: float) -> None:
    """M7 Initialisation: every linear weight N(0, std²); each block's two residual output
    projections (attention output, W₂) N(0, (std/sqrt(2L))²). Gains stay at 1 (M3) and
    the embedding keeps its own M1 init.
    """
    scaled = residual_std(init_std, len(blocks))
    for block in blocks:
        assert isinstance(block, TransformerBlock)
        for module in block.modules():
            if isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, mean=0.0, std=init_std)
        nn.init.normal_(block.attn.proj.weight, mean=0.0, std=scaled)
        nn.init.normal_(block.ffn.w2.weight, mean=0.0, std=scaled)
