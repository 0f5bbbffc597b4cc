"""Encoder and decoder layers (Section 3.1) with their residual connections.

Each sub-layer is wrapped as the paper says, ``LayerNorm(x + Dropout(Sublayer(x)))``
(post-norm).  ``norm_first=True`` gives the pre-norm variant of later work,
``x + Dropout(Sublayer(LayerNorm(x)))``, which then needs one final LayerNorm per stack.
"""

from __future__ import annotations

from torch import nn

from .attention import MultiHeadAttention
from .config import TransformerConfig
from .feedforward import FeedForward


class Residual(nn.Module):
    """A sub-layer with dropout, a residual connection and layer normalisation (Section 3.1)."""

    def __init__(self, d_model: int, dropout: float, norm_first: bool):
        super().__init__()
        self.norm = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)
        self.norm_first = norm_first

    def forward(self, x, sublayer):
        if self.norm_first:
            return x + self.dropout(sublayer(self.norm(x)))
        return self.norm(x + self.dropout(sublayer(x)))


def _attention(c: TransformerConfig) -> MultiHeadAttention:
    return MultiHeadAttention(c.d_model, c.n_heads, c.d_k, c.d_v, c.attn_dropout)


class EncoderLayer(nn.Module):
    """Self-attention, then the feed-forward network."""

    def __init__(self, c: TransformerConfig):
        super().__init__()
        self.self_attn, self.ffn = _attention(c), FeedForward(c.d_model, c.d_ff)
        self.res_attn, self.res_ffn = (Residual(c.d_model, c.dropout, c.norm_first)
                                       for _ in range(2))
        self.attn_weights = None  # filled when called with need_weights=True

    def forward(self, x, src_mask, need_weights=False):
        def attend(h):
            out, self.attn_weights = self.self_attn(h, h, h, src_mask, need_weights=need_weights)
            return out

        x = self.res_attn(x, attend)
        return self.res_ffn(x, self.ffn)


class DecoderLayer(nn.Module):
    """Masked self-attention, encoder-decoder attention, then the feed-forward network.

    Self-attention needs only the causal mask: target padding sits after the last real token,
    so no real query ever sees it (queries at padded positions are ignored by the loss).
    """

    def __init__(self, c: TransformerConfig):
        super().__init__()
        self.self_attn, self.cross_attn = _attention(c), _attention(c)
        self.ffn = FeedForward(c.d_model, c.d_ff)
        self.res_self, self.res_cross, self.res_ffn = (
            Residual(c.d_model, c.dropout, c.norm_first) for _ in range(3))
        self.self_weights = self.cross_weights = None

    def forward(self, y, memory, src_mask, need_weights=False):
        def self_attend(h):
            out, self.self_weights = self.self_attn(h, h, h, is_causal=True,
                                                    need_weights=need_weights)
            return out

        def cross_attend(h):
            out, self.cross_weights = self.cross_attn(h, memory, memory, src_mask,
                                                      need_weights=need_weights)
            return out

        y = self.res_self(y, self_attend)
        y = self.res_cross(y, cross_attend)
        return self.res_ffn(y, self.ffn)

    def step(self, y, kv, src_mask, position):
        """The same layer for one new position per row, y (N, 1, d_model), at ``position``; the
        keys and values of the earlier positions are in ``kv`` (this layer's ``LayerCache``,
        see cache.py)."""
        y = self.res_self(y, lambda h: self.self_attn.self_attend_step(h, kv, position))
        y = self.res_cross(y, lambda h: self.cross_attn.cross_attend_step(h, kv, src_mask))
        return self.res_ffn(y, self.ffn)
