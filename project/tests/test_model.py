"""M1-M8: each model component against its definition in the plan."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
import torch

from project.model.attention import CausalSelfAttention, KVCache
from project.model.block import TransformerBlock
from project.model.embedding import TokenEmbedding
from project.model.feedforward import SwiGLU, swiglu_hidden_width
from project.model.gpt import CharGPT
from project.model.init import residual_std
from project.model.norm import RMSNorm
from project.model.rope import RotaryEmbedding
from project.tests.dispatch import load

B, T, D, H = 3, 10, 32, 4
HEAD_DIM = D // H


def plan_model() -> CharGPT:
    """The plan's full-size model (L=6, H=6, d=384, T=256) on the V=65 vocabulary."""
    config, _ = load()
    assert (config.model.n_layer, config.model.n_head, config.model.d_model) == (6, 6, 384)
    torch.manual_seed(1)
    return CharGPT(config.model, 65)


def rotate_at(rope: RotaryEmbedding, vector: torch.Tensor, position: int) -> torch.Tensor:
    """RoPE of `vector` placed at sequence position `position`."""
    x = torch.zeros(1, 1, position + 1, vector.numel())
    x[0, 0, position] = vector
    return rope(x)[0, 0, position]


# -- shapes -------------------------------------------------------------------------------


def test_every_module_keeps_the_documented_shapes() -> None:
    torch.manual_seed(0)
    ids = torch.randint(0, 11, (B, T))
    x = torch.randn(B, T, D)
    embedding = TokenEmbedding(11, D, 0.02)
    assert embedding(ids).shape == (B, T, D)
    assert embedding.logits(x).shape == (B, T, 11)
    rope = RotaryEmbedding(HEAD_DIM, 16, 10000.0)
    heads = torch.randn(B, H, T, HEAD_DIM)
    assert rope(heads).shape == heads.shape
    assert RMSNorm(D, 1e-6)(x).shape == x.shape
    assert CausalSelfAttention(D, H, 0.0, rope)(x).shape == x.shape
    assert SwiGLU(D, 0.0)(x).shape == x.shape
    assert TransformerBlock(D, H, 0.0, 1e-6, rope)(x).shape == x.shape


def test_chargpt_gives_logits_per_position_and_rejects_too_long_inputs(
    make_model: Callable[..., CharGPT],
) -> None:
    model = make_model(vocab_size=13)
    ids = torch.randint(0, 13, (B, 16))
    assert model(ids).shape == (B, 16, 13)
    assert model(ids[:, :5]).shape == (B, 5, 13)
    with pytest.raises(ValueError, match="exceeds the context"):
        model(torch.zeros(1, 17, dtype=torch.long))


# -- M3 RMSNorm ---------------------------------------------------------------------------


@pytest.mark.parametrize("scale", [1.0, 1e-4])  # at 1e-4, mean(x²) ≈ 1e-8 ≪ ε: ε must count
def test_rmsnorm_matches_its_formula(scale: float) -> None:
    torch.manual_seed(0)
    eps = 1e-6
    norm = RMSNorm(D, eps)
    assert torch.equal(norm.gain, torch.ones(D))
    with torch.no_grad():
        norm.gain.copy_(torch.randn(D))
    x = torch.randn(2, 5, D, dtype=torch.float64) * scale
    expected = x / torch.sqrt((x**2).mean(dim=-1, keepdim=True) + eps) * norm.gain.double()
    got = norm(x.float()).double()
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)


# -- M2 RoPE ------------------------------------------------------------------------------


def test_rope_rotates_each_pair_by_the_planned_angle() -> None:
    torch.manual_seed(0)
    head_dim, max_len, base = 8, 16, 10000.0
    rope = RotaryEmbedding(head_dim, max_len, base)
    x = torch.randn(1, 1, max_len, head_dim)
    out = rope(x)
    half = head_dim // 2
    for t in range(max_len):
        for i in range(half):
            theta = t * base ** (-2 * i / head_dim)
            z = complex(x[0, 0, t, i], x[0, 0, t, i + half]) * complex(
                math.cos(theta), math.sin(theta)
            )
            assert out[0, 0, t, i].item() == pytest.approx(z.real, abs=1e-5)
            assert out[0, 0, t, i + half].item() == pytest.approx(z.imag, abs=1e-5)


def test_rope_dot_products_depend_only_on_relative_position_and_norms_are_kept() -> None:
    torch.manual_seed(0)
    head_dim, max_len = 16, 64
    rope = RotaryEmbedding(head_dim, max_len, 10000.0)
    q, k = torch.randn(head_dim), torch.randn(head_dim)
    for t, s in [(5, 2), (3, 3), (0, 7), (10, 1)]:
        reference = torch.dot(rotate_at(rope, q, t), rotate_at(rope, k, s)).item()
        for c in (1, 4, 17, 40):
            shifted = torch.dot(rotate_at(rope, q, t + c), rotate_at(rope, k, s + c)).item()
            assert shifted == pytest.approx(reference, rel=1e-4, abs=1e-4)
        # Not trivially constant: another relative offset gives another product.
        other = torch.dot(rotate_at(rope, q, t), rotate_at(rope, k, s + 3)).item()
        assert abs(other - reference) > 1e-3
    for t in (0, 1, 13, 63):
        rotated = rotate_at(rope, q, t)
        assert torch.linalg.vector_norm(rotated).item() == pytest.approx(
            torch.linalg.vector_norm(q).item(), rel=1e-5
        )
    assert torch.equal(rotate_at(rope, q, 0), q)  # θ = 0 at position 0
    assert not torch.allclose(rotate_at(rope, q, 1), q)


# -- M4 attention and the causal mask ---------------------------------------------------------


def test_attention_matches_the_formula_written_out() -> None:
    torch.manual_seed(0)
    rope = RotaryEmbedding(HEAD_DIM, 16, 10000.0)
    attention = CausalSelfAttention(D, H, 0.0, rope)
    assert attention.qkv.bias is None and attention.proj.bias is None
    assert attention.qkv.weight.shape == (3 * D, D)
    x = torch.randn(B, T, D)
    q, k, v = (x @ attention.qkv.weight.T).split(D, dim=-1)
    q, k, v = (t.view(B, T, H, HEAD_DIM).transpose(1, 2) for t in (q, k, v))
    q, k = rope(q), rope(k)
    mask = torch.full((T, T), float("-inf")).triu(diagonal=1)
    weights = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(HEAD_DIM) + mask, dim=-1)
    merged = (weights @ v).transpose(1, 2).reshape(B, T, D)
    expected = merged @ attention.proj.weight.T
    torch.testing.assert_close(attention(x), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_changing_a_character_changes_no_logit_before_it(
    make_model: Callable[..., CharGPT], mode: str
) -> None:
    model = make_model(vocab_size=11, dropout=0.0)
    model.train(mode == "train")
    torch.manual_seed(1)
    ids = torch.randint(0, 11, (2, 16))
    with torch.no_grad():
        base = model(ids)
        for j in (0, 1, 7, 15):
            changed = ids.clone()
            changed[:, j] = (changed[:, j] + 1) % 11
            logits = model(changed)
            torch.testing.assert_close(logits[:, :j], base[:, :j], rtol=0, atol=1e-6)
            assert (logits[:, j] - base[:, j]).abs().max() > 1e-4


# -- M5 SwiGLU ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("d_model", "hidden"),
    # 256·ceil(8d/3/256): 8·384/3 = 1024 → 1024; 341.3 → 512; 266.7 → 512; 256 → 256; 85.3 → 256
    [(384, 1024), (128, 512), (100, 512), (96, 256), (32, 256)],
)
def test_swiglu_hidden_width(d_model: int, hidden: int) -> None:
    assert swiglu_hidden_width(d_model) == hidden
    ffn = SwiGLU(d_model, 0.0)
    assert ffn.w1.weight.shape == (hidden, d_model)
    assert ffn.w3.weight.shape == (hidden, d_model)
    assert ffn.w2.weight.shape == (d_model, hidden)
    assert ffn.w1.bias is None and ffn.w2.bias is None and ffn.w3.bias is None


def test_swiglu_matches_its_formula() -> None:
    torch.manual_seed(0)
    ffn = SwiGLU(D, 0.0)
    x = torch.randn(B, T, D)
    a, b = x @ ffn.w1.weight.T, x @ ffn.w3.weight.T
    expected = (a * torch.sigmoid(a) * b) @ ffn.w2.weight.T
    torch.testing.assert_close(ffn(x), expected, rtol=1e-5, atol=1e-6)


# -- M6 block -------------------------------------------------------------------------------


def test_block_is_pre_norm_residual() -> None:
    torch.manual_seed(0)
    rope = RotaryEmbedding(HEAD_DIM, 16, 10000.0)
    block = TransformerBlock(D, H, 0.0, 1e-6, rope)
    with torch.no_grad():
        block.attn_norm.gain.copy_(torch.rand(D) + 0.5)
        block.ffn_norm.gain.copy_(torch.rand(D) + 0.5)
    x = torch.randn(B, T, D)
    h = x + block.attn(block.attn_norm(x))
    expected = h + block.ffn(block.ffn_norm(h))
    torch.testing.assert_close(block(x), expected, rtol=0, atol=1e-6)


# -- M7 initialisation ----------------------------------------------------------------------


def test_initialisation_of_the_plan_sized_model() -> None:
    model = plan_model()
    std, scaled = 0.02, 0.02 / math.sqrt(2 * 6)
    assert residual_std(0.02, 6) == pytest.approx(scaled)

    def check(weight: torch.Tensor, expected_std: float) -> None:
        assert weight.std().item() == pytest.approx(expected_std, rel=0.05)
        assert abs(weight.mean().item()) < 0.05 * expected_std

    check(model.embedding.weight, std)
    for block in model.blocks:
        check(block.attn.qkv.weight, std)
        check(block.ffn.w1.weight, std)
        check(block.ffn.w3.weight, std)
        check(block.attn.proj.weight, scaled)
        check(block.ffn.w2.weight, scaled)
    gains = [p for name, p in model.named_parameters() if name.endswith("gain")]
    assert len(gains) == 2 * 6 + 1
    assert all(torch.equal(g, torch.ones_like(g)) for g in gains)


# -- M1/M8 tying and parameter count ---------------------------------------------------------


def test_output_head_is_the_embedding_transposed(make_model: Callable[..., CharGPT]) -> None:
    model = make_model(vocab_size=11).eval()
    ids = torch.randint(0, 11, (2, 12))
    with torch.no_grad():
        hidden = model.embedding.weight[ids]
        for block in model.blocks:
            hidden = block(hidden)
        expected = model.final_norm(hidden) @ model.embedding.weight.T
        torch.testing.assert_close(model(ids), expected, rtol=0, atol=1e-6)
        # The head really is E: changing E changes the head.
        model.embedding.weight[3] += 1.0
        hidden = model.final_norm(model.blocks[1](model.blocks[0](model.embedding.weight[ids])))
        torch.testing.assert_close(model(ids), hidden @ model.embedding.weight.T, atol=1e-6, rtol=0)
    vocab_by_d = [p for p in model.parameters() if p.shape == (11, 32)]
    assert len(vocab_by_d) == 1


def test_plan_sized_parameter_count_counts_the_tied_head_once() -> None:
    model = plan_model()
    V, d, L = 65, 384, 6
    h = 256 * math.ceil(8 * d / 3 / 256)
    per_block = 3 * d * d + d * d + 3 * d * h + 2 * d  # qkv, proj, W1/W3/W2, two gains
    expected = V * d + L * per_block + d  # embedding (= head), blocks, final gain
    assert expected == 10_646_784
    assert model.num_parameters() == expected
    assert sum(t.numel() for t in model.state_dict().values()) == expected  # no head copy


def test_plan_sized_flops_and_parameters_by_file() -> None:
    """The benchmark's FLOPs per character (6 per matrix weight, the tied head included,
    plus 12·L·d·T for attention) and train_summary.json's parameters by plan file.
    """
    model = plan_model()
    V, d, L, T, h = 65, 384, 6, 256, 1024
    assert model.flops_per_token() == 6 * (L * (4 * d * d + 3 * d * h) + V * d) + 12 * L * d * T
    assert model.parameters_by_module() == {
        "model/gpt.py": 10_646_784,
        "model/embedding.py": V * d,
        "model/block.py": L * (4 * d * d + 3 * d * h + 2 * d),
        "model/attention.py": L * 4 * d * d,
        "model/rope.py": 0,
        "model/feedforward.py": L * 3 * d * h,
        "model/norm.py": (2 * L + 1) * d,
    }


# -- M8 generate ---------------------------------------------------------------------------


def test_generate_is_deterministic_returns_n_ids_and_leaves_global_rng(
    make_model: Callable[..., CharGPT],
) -> None:
    model = make_model(vocab_size=11, dropout=0.1).train()
    prompt = [1, 2, 3]
    rng_before = torch.get_rng_state()
    first = model.generate(prompt, n=40, temperature=1.0, top_k=None, seed=7)
    assert torch.equal(torch.get_rng_state(), rng_before)
    assert model.training  # mode restored
    again = model.generate(prompt, n=40, temperature=1.0, top_k=None, seed=7)
    other = model.generate(prompt, n=40, temperature=1.0, top_k=None, seed=8)
    assert len(first) == 40 and all(0 <= i < 11 for i in first)
    assert first == again
    assert first != other


def test_generate_crops_the_context_to_block_size(make_model: Callable[..., CharGPT]) -> None:
    model = make_model(vocab_size=11)  # block_size 16
    long_prompt = torch.randint(0, 11, (40,)).tolist()
    got = model.generate(long_prompt, n=30, temperature=0.8, top_k=5, seed=3)
    cropped = model.generate(long_prompt[-16:], n=30, temperature=0.8, top_k=5, seed=3)
    assert len(got) == 30
    assert got == cropped


def test_kv_cache_gives_the_full_forward_logits_one_position_at_a_time(
    make_model: Callable[..., CharGPT],
) -> None:
    model = make_model(vocab_size=11).eval()  # block_size 16
    ids = torch.randint(0, 11, (1, 16))
    caches = [KVCache() for _ in model.blocks]
    with torch.no_grad():
        full = model(ids)
        prefix = model(ids[:, :5], caches)
        steps = [model(ids[:, t : t + 1], caches) for t in range(5, 16)]
        cached = torch.cat([prefix, *steps], dim=1)
        with pytest.raises(ValueError, match="exceeds the context T=16"):
            model(ids[:, :1], caches)
    torch.testing.assert_close(cached, full, rtol=1e-5, atol=1e-5)


def test_generate_with_top_k_1_is_greedy(make_model: Callable[..., CharGPT]) -> None:
    model = make_model(vocab_size=11).eval()
    ids = [4, 0, 9]
    expected = []
    with torch.no_grad():
        for _ in range(20):
            logits = model(torch.tensor([ids[-16:]]))[0, -1]
            ids.append(int(logits.argmax()))
            expected.append(ids[-1])
    assert model.generate([4, 0, 9], n=20, temperature=0.5, top_k=1, seed=0) == expected


def test_embedding_lookup_is_a_row_of_e() -> None:
    torch.manual_seed(0)
    embedding = TokenEmbedding(7, 5, 0.02)
    ids = torch.tensor([[6, 0, 3]])
    torch.testing.assert_close(embedding(ids)[0], embedding.weight[[6, 0, 3]])
    torch.testing.assert_close(
        embedding.logits(torch.ones(1, 5)), torch.ones(1, 5) @ embedding.weight.T
    )
