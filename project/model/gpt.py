"""M8 CharGPT: the whole model and its sampler."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from ..model.attention import KVCache
from ..model.base import CharModel, sample_next
from ..model.block import TransformerBlock
from ..model.embedding import TokenEmbedding
from ..model.init import init_weights
from ..model.norm import RMSNorm
from ..model.rope import RotaryEmbedding
from ..utils.config import ModelConfig


class CharGPT(CharModel):
    """M8 CharGPT: embedding (M1) → dropout → L blocks (M6) → final RMSNorm (M3) → output
    head tied to the embedding, giving logits z ∈ R^{T×V}. It keeps the model interface
    (model/interface.py); its parameter counts come from CharModel.
    """

    def __init__(self, config: ModelConfig, vocab_size: int) -> None:
        super().__init__()
        self.config = config
        self.vocab_size = vocab_size
        self.block_size = config.block_size
        head_dim = config.d_model // config.n_head
        # One RoPE table shared by every block: it holds no parameters.
        rope = RotaryEmbedding(head_dim, config.block_size, config.rope_base)
        self.embedding = TokenEmbedding(vocab_size, config.d_model, config.init_std)
        self.dropout = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(
            TransformerBlock(config.d_model, config.n_head, config.dropout, config.norm_eps, rope)
            for _ in range(config.n_layer)
        )
        self.final_norm = RMSNorm(config.d_model, config.norm_eps)
        init_weights(self.blocks, config.init_std)

    def forward(
        self,
        ids: torch.Tensor,
        caches: list[KVCache] | None = None,
        blocks: Sequence[Callable[..., torch.Tensor]] | None = None,
    ) -> torch.Tensor:
        """ids (B, T) → logits (B, T, V); with one KVCache a block, ids continue the cached
        positions. `blocks` run in place of self.blocks: the same blocks, each compiled on
        its own (T5, train.compile_scope).
        """
        end = ids.shape[-1] + (caches[0].length if caches else 0)
        if end > self.config.block_size:
            raise ValueError(f"sequence of {end} exceeds the context T={self.config.block_size}")
        x = self.dropout(self.embedding(ids))
        for i, block in enumerate(self.blocks if blocks is None else blocks):
            x = block(x, caches[i] if caches else None)
        return self.embedding.logits(self.final_norm(x))

    def flops_per_token(self) -> float:
        """Training FLOPs per position: 6 per weight used in a matmul (forward + backward),
        the tied head included, plus 12·L·d·T for the attention scores and their use.
        """
        config = self.config
        matmul_weights = sum(p.numel() for p in self.blocks.parameters() if p.dim() >= 2)
        head = self.embedding.weight.numel()
        attention = 12 * config.n_layer * config.d_model * config.block_size
        return 6 * (matmul_weights + head) + attention

    @torch.inference_mode()
    def generate(
        self,
        prompt_ids: list[int],
        n: int,
        temperature: float,
        top_k: int | None,
        seed: int,
    ) -> list[int]:
        """M8 generate: sample `n` ids after the prompt, cropping the context to the last T.

        While the context fits in T, a KV cache computes only each new position. Past T the
        plan's crop changes every position's context, so each step recomputes the last T
        ids, as CharModel.generate does at every step. Sampling uses its own generator seeded
        with `seed`, so samples are reproducible and do not disturb the global random state.
        """
        was_training = self.training
        self.eval()
        device = self.embedding.weight.device
        generator = torch.Generator(device=device).manual_seed(seed)
        ids = torch.tensor([prompt_ids], dtype=torch.long, device=device)
        block_size = self.config.block_size
        caches = [KVCache() for _ in self.blocks]
        for _ in range(n):
            if ids.shape[1] <= block_size:
                logits = self(ids[:, caches[0].length :], caches)
            else:
                logits = self(ids[:, -block_size:])
            next_id = sample_next(logits[:, -1, :], temperature, top_k, generator)
            ids = torch.cat((ids, next_id), dim=1)
        self.train(was_training)
        return ids[0, len(prompt_ids) :].tolist()
