"""Scaled dot-product attention and multi-head attention (Sections 3.2.1 and 3.2.2).

    Attention(Q, K, V) = softmax(Q K^T / sqrt(d_k)) V
    MultiHead(Q, K, V) = Concat(head_1, ..., head_h) W^O
    head_i = Attention(Q W_i^Q, K W_i^K, V W_i^V)

Two implementations of the first formula agree (``tests/test_attention.py`` holds them equal):
``scaled_dot_product_attention`` spells it out and returns the weights, for teaching and for
pictures; training goes through ``torch.nn.functional.scaled_dot_product_attention``, which
dispatches to fused kernels (FlashAttention and friends) on a GPU.

Masks are boolean and broadcast to ``(B, h, T_q, T_k)``: ``True`` means "may attend".  A query
whose every key is masked gets an all-zero output, never NaN.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def scaled_dot_product_attention(q, k, v, mask=None, dropout_p=0.0, is_causal=False):
    """Explicit attention. q: (..., T_q, d_k), k: (..., T_k, d_k), v: (..., T_k, d_v).

    Returns ``(output (..., T_q, d_v), weights (..., T_q, T_k))``.
    """
    d_k = q.size(-1)
    scores = q @ k.transpose(-2, -1) / math.sqrt(d_k)  # (..., T_q, T_k)
    if is_causal:
        mask = _and(mask, causal_mask(q.size(-2), k.size(-2), device=q.device))
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = torch.softmax(scores, dim=-1)
    if mask is not None:  # rows with no visible key: softmax gave NaN, we define zeros
        weights = weights.masked_fill(~mask.any(dim=-1, keepdim=True), 0.0)
    if dropout_p > 0.0:
        weights = F.dropout(weights, p=dropout_p)
    return weights @ v, weights


def step_attention(q, k, v, mask=None):
    """Attention for a decoding step, a few queries per row (``decode_step``).  On a CPU the
    explicit products, 1.3-3x as fast per call on the decoder's shapes as the fused kernel,
    which is built for many queries; elsewhere the fused kernel.  ``mask`` is boolean, or on a
    CPU also an additive float mask (0 or -inf, ``cache.cross_attention_mask``, which leaves
    every query a key to see): the scores are then scaled and masked in place."""
    if q.device.type != "cpu":
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    if mask is not None and mask.dtype == torch.bool:
        return scaled_dot_product_attention(q, k, v, mask)[0]
    scores = (q @ k.transpose(-2, -1)).div_(math.sqrt(q.size(-1)))  # as the explicit path
    if mask is not None:
        scores.add_(mask)
    return torch.softmax(scores, dim=-1) @ v


def causal_mask(t_q: int, t_k: int | None = None, device=None) -> torch.Tensor:
    """(T_q, T_k) boolean mask letting query i see keys 0..i (+ any earlier cached keys).

    With a cache of ``t_k - t_q`` earlier positions, query i sits at position ``t_k - t_q + i``.
    """
    t_k = t_q if t_k is None else t_k
    return torch.ones(t_q, t_k, dtype=torch.bool, device=device).tril(diagonal=t_k - t_q)


def _and(a, b):
    return b if a is None else a & b


class MultiHeadAttention(nn.Module):
    """h parallel attention heads with their own projections (Section 3.2.2).

    ``d_k`` (queries and keys) and ``d_v`` (values) are independent, as in Table 3 rows A-C.
    ``forward`` takes ``need_weights=True`` to use the explicit path and return the weights
    ``(B, h, T_q, T_k)``; otherwise it calls the fused kernel and returns ``None`` for them.
    """

    def __init__(self, d_model: int, n_heads: int, d_k: int, d_v: int, dropout: float = 0.0):
        super().__init__()
        self.n_heads, self.d_k, self.d_v, self.dropout = n_heads, d_k, d_v, dropout
        self.w_q = nn.Linear(d_model, n_heads * d_k)
        self.w_k = nn.Linear(d_model, n_heads * d_k)
        self.w_v = nn.Linear(d_model, n_heads * d_v)
        self.w_o = nn.Linear(n_heads * d_v, d_model)

    def split_heads(self, x: torch.Tensor, d_head: int) -> torch.Tensor:
        b, t, _ = x.shape  # (B, T, h*d_head) -> (B, h, T, d_head)
        return x.view(b, t, self.n_heads, d_head).transpose(1, 2)

    def project_kv(self, key: torch.Tensor, value: torch.Tensor):
        """Keys and values split into heads: (B, h, T_k, d_k), (B, h, T_k, d_v)."""
        k, v = self.w_k(key), self.w_v(value)
        return self.split_heads(k, self.d_k), self.split_heads(v, self.d_v)

    def forward(self, query, key, value, mask=None, is_causal=False, need_weights=False):
        """query: (B, T_q, d_model); key, value: (B, T_k, d_model); mask: broadcastable bool."""
        if query is key is value and not self.training:  # inference: one product, not three
            q, k, v = self.project_qkv(query)
            q, k = self.split_heads(q, self.d_k), self.split_heads(k, self.d_k)
            v = self.split_heads(v, self.d_v)
        else:
            q = self.split_heads(self.w_q(query), self.d_k)  # (B, h, T_q, d_k)
            k, v = self.project_kv(key, value)  # (B, h, T_k, d_k), (B, h, T_k, d_v)
        dropout_p = self.dropout if self.training else 0.0
        if need_weights:
            out, weights = scaled_dot_product_attention(q, k, v, mask, dropout_p, is_causal)
        else:
            if is_causal and mask is not None:  # the fused kernel takes one or the other
                mask, is_causal = mask & causal_mask(q.size(2), k.size(2), q.device), False
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p,
                                                 is_causal=is_causal)
            weights = None
        return self.merge_heads(out), weights

    def merge_heads(self, out: torch.Tensor) -> torch.Tensor:
        """(B, h, T, d_v) head outputs -> (B, T, d_model): concatenate, then W^O."""
        b, _, t, _ = out.shape
        return self.w_o(out.transpose(1, 2).reshape(b, t, self.n_heads * self.d_v))

    # ---- inference: incremental decoding (its cache is transformer/model/cache.py) ----------

    def fused_qkv(self) -> tuple[torch.Tensor, torch.Tensor]:
        """W^Q, W^K, W^V stacked into one matrix (and their biases): one product instead of
        three at inference.  A copy (a decoder cache makes it once per decoded batch); the
        parameters stay the paper's three matrices, which training uses."""
        return (torch.cat([self.w_q.weight, self.w_k.weight, self.w_v.weight]).detach(),
                torch.cat([self.w_q.bias, self.w_k.bias, self.w_v.bias]).detach())

    def project_qkv(self, x: torch.Tensor, weight: torch.Tensor | None = None,
                    bias: torch.Tensor | None = None):
        """Self-attention's queries, keys and values (B, T, h*d_k), (B, T, h*d_k), (B, T, h*d_v)
        from one product with the stacked matrix of ``fused_qkv``: the same numbers as three.
        ``weight``, ``bias``: a copy of ``fused_qkv()`` made earlier (a decoder cache's), else
        one is made now."""
        if weight is None:
            weight, bias = self.fused_qkv()
        return self.split_qkv(F.linear(x, weight, bias))

    def split_qkv(self, qkv: torch.Tensor):
        """The stacked product (..., h*(2 d_k + d_v)) cut into queries, keys and values."""
        hk = self.n_heads * self.d_k
        return qkv.split([hk, hk, self.n_heads * self.d_v], -1)

    def self_attend_step(self, x: torch.Tensor, kv, position) -> torch.Tensor:
        """Self-attention of the newest position x (N, 1, d_model) over itself and the earlier
        positions in ``kv`` (a ``cache.LayerCache``): its key and value are written into the
        cache in place at ``position``, then its query attends to positions 0..position.

        ``position`` is an int, or a one-element tensor (the cache's static mode: the keys are
        the whole preallocated buffer, with the positions not yet written masked out, so every
        step has the same shapes).
        """
        n, h = x.size(0), self.n_heads
        q, k, v = self.project_qkv(x, kv.qkv_weight, kv.qkv_bias)  # (N, 1, h*d) each
        q = q.view(n, h, 1, self.d_k)  # (N, 1, h*d_k) -> (N, h, 1, d_k): T = 1 makes it a view
        if isinstance(position, int):
            kv.k[:n, :, position] = k.view(n, h, self.d_k)
            kv.v[:n, :, position] = v.view(n, h, self.d_v)
            keys, values = kv.k[:n, :, : position + 1], kv.v[:n, :, : position + 1]
            mask = None  # one query that may see every key written so far: nothing to mask
        else:
            kv.k.index_copy_(2, position, k.view(n, h, 1, self.d_k))
            kv.v.index_copy_(2, position, v.view(n, h, 1, self.d_v))
            keys, values = kv.k, kv.v
            mask = (torch.arange(kv.k.size(2), device=x.device) <= position)[None]  # (1, cap)
        out = step_attention(q, keys, values, mask)  # (N, h, 1, d_v)
        return self.w_o(out.view(n, 1, h * self.d_v))

    def cross_attend_step(self, x: torch.Tensor, kv, src_mask: torch.Tensor) -> torch.Tensor:
        """Encoder-decoder attention of x (N, 1, d_model) over the source keys/values projected
        once per sentence (``kv.cross_k``: (B, h, S, d_k)), N = B * g rows: the g rows of one
        sentence (its beams) are that sentence's g queries, so the source keys are neither
        repeated nor copied per beam.  ``src_mask``: the cache's ``cross_mask``."""
        n, b, h = x.size(0), kv.cross_k.size(0), self.n_heads
        q = self.w_q(x).view(b, n // b, h, self.d_k).transpose(1, 2)  # (B, h, g, d_k)
        out = step_attention(q, kv.cross_k, kv.cross_v, src_mask)
        return self.w_o(out.transpose(1, 2).reshape(n, 1, h * self.d_v))  # back to one row each
