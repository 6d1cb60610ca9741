"""M8 CharGPT: the whole model and its sampler."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from ..model.attention import KVCache
from ..model.block import TransformerBlock
from ..model.embedding import TokenEmbedding
from ..model.init import init_weights
from ..model.norm import RMSNorm
from ..model.rope import RotaryEmbedding
from ..utils.config import ModelConfig


class CharGPT(nn.Module):
    """M8 CharGPT: embedding (M1) → dropout → L blocks (M6) → final RMSNorm (M3) → output
    head tied to the embedding, giving logits z ∈ R^{T×V}.
    """

    def __init__(self, config: ModelConfig, vocab_size: int) -> None:
        super().__init__()
        self.config = config
        self.vocab_size = vocab_size
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

    def num_parameters(self) -> int:
        """Parameters counted once (the tied head adds none)."""
        return sum(p.numel() for p in self.parameters())

    def parameters_by_module(self) -> dict[str, int]:
        """Parameters of each component, keyed by the project file that defines it
        (e.g. "model/attention.py": all L attention layers together).
        """
        counts: dict[str, int] = {}
        for module in self.modules():
            source = type(module).__module__
            if source.startswith("model."):
                path = source.replace(".", "/") + ".py"
                counts[path] = counts.get(path, 0) + sum(p.numel() for p in module.parameters())
        return counts

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
        ids. Sampling uses its own generator seeded with `seed`, so samples are reproducible
        and do not disturb the global random state.
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
            logits = logits[:, -1, :].float() / temperature
            if top_k is not None:
                kth = torch.topk(logits, min(top_k, logits.shape[-1])).values[:, -1:]
                logits = logits.masked_fill(logits < kth, float("-inf"))
            probs = torch.softmax(logits, dim=-1)
            next_id = torch.multinomial(probs, num_samples=1, generator=generator)
            ids = torch.cat((ids, next_id), dim=1)
        self.train(was_training)
        return ids[0, len(prompt_ids) :].tolist()
