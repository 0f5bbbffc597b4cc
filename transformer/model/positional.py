"""Positional encodings (Section 3.5) and the learned alternative (Table 3 row E).

    PE(pos, 2i)   = sin(pos / 10000^(2i / d_model))
    PE(pos, 2i+1) = cos(pos / 10000^(2i / d_model))

Even columns carry sines, odd columns cosines, and both members of a pair share one frequency.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def sinusoidal_table(n_positions: int, d_model: int) -> torch.Tensor:
    """The (n_positions, d_model) table of the formula above, in float32."""
    pos = torch.arange(n_positions, dtype=torch.float64).unsqueeze(1)  # (P, 1)
    two_i = torch.arange(0, d_model, 2, dtype=torch.float64)  # (d/2,)
    angle = pos * torch.exp(-math.log(10000.0) * two_i / d_model)  # pos / 10000^(2i/d)
    table = torch.zeros(n_positions, d_model, dtype=torch.float64)
    table[:, 0::2] = torch.sin(angle)
    table[:, 1::2] = torch.cos(angle)
    return table.float()


class SinusoidalPositionalEncoding(nn.Module):
    """Fixed sinusoids; no parameters, any length (the table grows on demand)."""

    def __init__(self, d_model: int, max_len: int = 1024):
        super().__init__()
        self.d_model = d_model
        self.register_buffer("table", sinusoidal_table(max_len, d_model), persistent=False)

    def forward(self, length: int, offset=0) -> torch.Tensor:
        """Encodings of positions offset .. offset+length-1: (length, d_model).  ``offset`` may
        be a one-element tensor (static-shape decoding); the table must then be long enough."""
        if isinstance(offset, torch.Tensor):
            return _rows(self.table, offset, length)
        end = offset + length
        if end > self.table.size(0):
            self.table = sinusoidal_table(max(end, 2 * self.table.size(0)), self.d_model).to(
                self.table.device)
        return self.table[offset:end]


class LearnedPositionalEmbedding(nn.Module):
    """One trained vector per position, up to ``max_len`` (Table 3 row E)."""

    def __init__(self, d_model: int, max_len: int = 1024):
        super().__init__()
        self.embedding = nn.Embedding(max_len, d_model)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """N(0, d_model^-1/2), the scale of the token embeddings before their sqrt(d_model)
        factor (as fairseq's learned positions); every row trained, none zeroed: position 0
        is the first token, not padding."""
        nn.init.normal_(self.embedding.weight, std=self.embedding.embedding_dim**-0.5)

    def forward(self, length: int, offset=0) -> torch.Tensor:
        if isinstance(offset, torch.Tensor):  # static-shape decoding: no bound check here
            return _rows(self.embedding.weight, offset, length)
        end = offset + length
        if end > self.embedding.num_embeddings:
            raise ValueError(
                f"position {end - 1} is beyond the learned table (max_len="
                f"{self.embedding.num_embeddings}); raise max_len or use positional='sinusoidal'"
            )
        return self.embedding.weight[offset:end]


def _rows(table: torch.Tensor, offset: torch.Tensor, length: int) -> torch.Tensor:
    """table[offset : offset + length] with ``offset`` a one-element tensor, without reading
    its value on the host (what a compiled, fixed-shape decoding step needs)."""
    return table.index_select(0, offset + torch.arange(length, device=offset.device))


def build_positional(kind: str, d_model: int, max_len: int) -> nn.Module:
    if kind == "sinusoidal":
        return SinusoidalPositionalEncoding(d_model, max_len)
    if kind == "learned":
        return LearnedPositionalEmbedding(d_model, max_len)
    raise ValueError(f"positional must be 'sinusoidal' or 'learned', got {kind!r}")
