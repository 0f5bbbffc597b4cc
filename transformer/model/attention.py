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
        """Keys and values split into heads: what an incremental decoder caches."""
        k, v = self.w_k(key), self.w_v(value)
        return self.split_heads(k, self.d_k), self.split_heads(v, self.d_v)

    def forward(self, query, key, value, mask=None, is_causal=False, need_weights=False,
                cache=None, static_kv=False):
        """query: (B, T_q, d_model); key, value: (B, T_k, d_model); mask: broadcastable bool.

        ``cache`` (a dict, for incremental decoding) keeps keys and values between calls:
        with ``static_kv`` (encoder-decoder attention) they are projected once and reused;
        otherwise (decoder self-attention) the new positions are appended to them.
        """
        q = self.split_heads(self.w_q(query), self.d_k)  # (B, h, T_q, d_k)
        if cache is not None and static_kv and "k" in cache:
            k, v = cache["k"], cache["v"]
        else:
            k, v = self.project_kv(key, value)  # (B, h, T_k, d_k), (B, h, T_k, d_v)
            if cache is not None and not static_kv and "k" in cache:
                k = torch.cat([cache["k"], k], dim=2)
                v = torch.cat([cache["v"], v], dim=2)
        if cache is not None:
            cache["k"], cache["v"] = k, v
        if is_causal and k.size(2) != q.size(2):  # cached prefix: causal with an offset
            mask, is_causal = _and(mask, causal_mask(q.size(2), k.size(2), q.device)), False
        dropout_p = self.dropout if self.training else 0.0
        if need_weights:
            out, weights = scaled_dot_product_attention(q, k, v, mask, dropout_p, is_causal)
        else:
            if is_causal and mask is not None:  # the fused kernel takes one or the other
                mask, is_causal = mask & causal_mask(q.size(2), k.size(2), q.device), False
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p,
                                                 is_causal=is_causal)
            weights = None
        b, _, t, _ = out.shape  # (B, h, T_q, d_v) -> (B, T_q, h*d_v)
        out = out.transpose(1, 2).reshape(b, t, self.n_heads * self.d_v)
        return self.w_o(out), weights
