"""The explicit attention (for teaching) and the fused path (for training) agree."""

import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from transformer import MultiHeadAttention, causal_mask, scaled_dot_product_attention


def make_qkv(b=2, h=3, t_q=5, t_k=7, d_k=8, d_v=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(b, h, t_q, d_k, generator=g), torch.randn(b, h, t_k, d_k, generator=g),
            torch.randn(b, h, t_k, d_v, generator=g))


def test_matches_formula_by_hand():
    q, k, v = make_qkv(b=1, h=1)
    out, w = scaled_dot_product_attention(q, k, v)
    by_hand = torch.softmax(q[0, 0] @ k[0, 0].T / math.sqrt(8), dim=-1)
    torch.testing.assert_close(w[0, 0], by_hand)
    torch.testing.assert_close(out[0, 0], by_hand @ v[0, 0])
    torch.testing.assert_close(w.sum(-1), torch.ones(1, 1, 5))


@pytest.mark.parametrize("kind", ["none", "padding", "causal", "padding+causal", "all-masked"])
def test_explicit_equals_fused(kind):
    q, k, v = make_qkv(t_q=7, t_k=7)
    mask, is_causal = None, False
    if "padding" in kind:
        keep = torch.ones(2, 7, dtype=torch.bool)
        keep[0, 4:] = False
        mask = keep[:, None, None, :]
    if "causal" in kind:
        mask = causal_mask(7) if mask is None else mask & causal_mask(7)
    if kind == "all-masked":  # every key of batch row 1 masked, e.g. an all-padding source
        keep = torch.ones(2, 7, dtype=torch.bool)
        keep[1] = False
        mask = keep[:, None, None, :]
    ours, weights = scaled_dot_product_attention(q, k, v, mask, is_causal=is_causal)
    fused = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=is_causal)
    assert not ours.isnan().any() and not weights.isnan().any()
    torch.testing.assert_close(ours, fused, atol=1e-5, rtol=1e-5)
    if mask is not None:
        assert (weights.masked_select(~mask.expand_as(weights)) == 0).all()
    if kind == "all-masked":
        assert (ours[1] == 0).all() and (weights[1] == 0).all()


def lower_triangle(t: int) -> torch.Tensor:
    """The causal mask built independently of the package: query i sees keys 0..i."""
    by_hand = torch.tensor([[j <= i for j in range(t)] for i in range(t)])
    from_torch = torch.nn.Transformer.generate_square_subsequent_mask(t) == 0  # -inf above
    assert torch.equal(by_hand, from_torch) and torch.equal(by_hand, torch.ones(t, t).tril() > 0)
    return by_hand


def test_is_causal_equals_an_independent_causal_mask():
    q, k, v = make_qkv(t_q=6, t_k=6)
    allowed = lower_triangle(6)
    assert torch.equal(causal_mask(6), allowed)
    scores = (q @ k.transpose(-2, -1) / math.sqrt(8)).masked_fill(~allowed, float("-inf"))
    expected = torch.softmax(scores, dim=-1) @ v  # by hand, no function of the package
    explicit, weights = scaled_dot_product_attention(q, k, v, is_causal=True)
    torch.testing.assert_close(explicit, expected)
    assert (weights.masked_select(~allowed.expand_as(weights)) == 0).all()
    torch.testing.assert_close(F.scaled_dot_product_attention(q, k, v, is_causal=True), expected,
                               atol=1e-5, rtol=1e-5)
    torch.manual_seed(0)  # the multi-head layer's causal path, fused and explicit
    mha = MultiHeadAttention(d_model=16, n_heads=2, d_k=8, d_v=8).eval()
    x = torch.randn(2, 6, 16)
    reference = mha(x, x, x, mask=allowed)[0]
    torch.testing.assert_close(mha(x, x, x, is_causal=True)[0], reference, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(mha(x, x, x, is_causal=True, need_weights=True)[0], reference,
                               atol=1e-5, rtol=1e-5)


def test_causal_mask_with_cached_prefix():
    m = causal_mask(2, 5)  # two new queries after three cached positions
    assert m.tolist() == [[True, True, True, True, False], [True, True, True, True, True]]
    assert torch.equal(causal_mask(3, 7), lower_triangle(7)[-3:])  # the last rows of the full one


def test_multi_head_paths_agree_and_unequal_lengths_work():
    torch.manual_seed(0)
    mha = MultiHeadAttention(d_model=16, n_heads=4, d_k=3, d_v=5).eval()  # d_k != d_v
    x, memory = torch.randn(2, 4, 16), torch.randn(2, 9, 16)  # cross-attention: T_q != T_k
    keep = torch.ones(2, 9, dtype=torch.bool)
    keep[1, 6:] = False
    fast, none = mha(x, memory, memory, keep[:, None, None, :])
    slow, w = mha(x, memory, memory, keep[:, None, None, :], need_weights=True)
    assert none is None and w.shape == (2, 4, 4, 9)
    torch.testing.assert_close(fast, slow, atol=1e-5, rtol=1e-5)


def test_multi_head_matches_torch_multihead_attention():
    torch.manual_seed(0)
    ours = MultiHeadAttention(d_model=16, n_heads=4, d_k=4, d_v=4).eval()
    ref = torch.nn.MultiheadAttention(16, 4, batch_first=True).eval()
    with torch.no_grad():
        ref.in_proj_weight.copy_(torch.cat([ours.w_q.weight, ours.w_k.weight, ours.w_v.weight]))
        ref.in_proj_bias.copy_(torch.cat([ours.w_q.bias, ours.w_k.bias, ours.w_v.bias]))
        ref.out_proj.weight.copy_(ours.w_o.weight)
        ref.out_proj.bias.copy_(ours.w_o.bias)
    x, memory = torch.randn(3, 5, 16), torch.randn(3, 8, 16)
    pad = torch.zeros(3, 8, dtype=torch.bool)
    pad[2, 5:] = True
    expected, _ = ref(x, memory, memory, key_padding_mask=pad)
    got, _ = ours(x, memory, memory, (~pad)[:, None, None, :])
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_one_position_at_a_time_equals_causal_attention():
    """self_attend_step (one query, its key and value written into a buffer in place, the
    stacked W^Q W^K W^V) gives the rows of full causal self-attention."""
    torch.manual_seed(0)
    mha = MultiHeadAttention(d_model=16, n_heads=2, d_k=8, d_v=4).eval()
    x = torch.randn(3, 6, 16)
    full, _ = mha(x, x, x, is_causal=True)
    weight, bias = mha.fused_qkv()
    kv = SimpleNamespace(qkv_weight=weight, qkv_bias=bias, k=torch.empty(3, 2, 6, 8),
                         v=torch.empty(3, 2, 6, 4))
    steps = [mha.self_attend_step(x[:, t:t + 1], kv, t) for t in range(6)]
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-5, rtol=1e-5)


def test_inference_projection_in_one_product_changes_nothing():
    """In eval mode self-attention projects Q, K, V with one stacked matrix; training keeps the
    three parameters and three products.  Same numbers either way (no dropout here)."""
    torch.manual_seed(0)
    mha = MultiHeadAttention(d_model=16, n_heads=4, d_k=4, d_v=6, dropout=0.0)
    x = torch.randn(2, 5, 16)
    with torch.no_grad():
        separate, _ = mha.train()(x, x, x, is_causal=True)
        fused, _ = mha.eval()(x, x, x, is_causal=True)
    torch.testing.assert_close(fused, separate, atol=1e-6, rtol=1e-6)
    assert {n for n, _ in mha.named_parameters()} == {
        f"{w}.{p}" for w in ("w_q", "w_k", "w_v", "w_o") for p in ("weight", "bias")}
