"""The Transformer: embeddings, encoder stack, decoder stack, output projection (Section 3).

    logits = Decoder(Embed(tgt_in), Encoder(Embed(src))) W_emb^T

Embeddings are multiplied by sqrt(d_model) and summed with positional encodings, then dropped
out (Sections 3.4, 3.5, 5.4).  With ``share_embeddings`` one matrix serves as source embedding,
target embedding and pre-softmax projection (Section 3.4).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .config import TransformerConfig
from .layers import DecoderLayer, EncoderLayer
from .positional import build_positional


class DecoderCache:
    """Keys and values of earlier positions, so each decoding step costs one position.

    ``layers[i]`` holds decoder layer i's self-attention keys/values (grown every step) and its
    encoder-decoder keys/values (projected once).  ``offset`` is the number of positions seen.
    """

    def __init__(self, n_layers: int):
        self.layers = [{"self": {}, "cross": {}} for _ in range(n_layers)]

    @property
    def offset(self) -> int:
        first = self.layers[0]["self"]
        return first["k"].size(2) if "k" in first else 0

    def reorder(self, index: torch.Tensor, cross: bool = True) -> None:
        """Keep batch rows ``index`` (in that order): what beam search does after each step.

        ``cross=False`` leaves the encoder-decoder keys/values alone: right when ``index`` only
        permutes rows that share one source sentence (the beams of one hypothesis set).
        """
        for layer in self.layers:
            for part in ("self", "cross") if cross else ("self",):
                kv = layer[part]
                for name in list(kv):
                    kv[name] = kv[name].index_select(0, index)


class Transformer(nn.Module):
    """Encoder-decoder Transformer of "Attention Is All You Need".

    ``model(src, tgt_in)`` maps token ids ``(B, S)`` and ``(B, T)`` to logits
    ``(B, T, tgt_vocab_size)``.  Source padding (``config.pad_id``) is masked out of every
    attention over the source; the decoder sees only earlier target positions.
    """

    def __init__(self, config: TransformerConfig):
        super().__init__()
        c = self.config = config
        self.src_embed = nn.Embedding(c.src_vocab_size, c.d_model, padding_idx=c.pad_id)
        self.tgt_embed = (self.src_embed if c.share_embeddings else
                          nn.Embedding(c.tgt_vocab_size, c.d_model, padding_idx=c.pad_id))
        self.src_pos = build_positional(c.positional, c.d_model, c.max_len)
        self.tgt_pos = build_positional(c.positional, c.d_model, c.max_len)
        self.dropout = nn.Dropout(c.dropout)
        self.encoder = nn.ModuleList(EncoderLayer(c) for _ in range(c.n_layers))
        self.decoder = nn.ModuleList(DecoderLayer(c) for _ in range(c.n_layers))
        # pre-norm leaves the last residual sum un-normalised: one LayerNorm closes each stack
        self.encoder_norm = nn.LayerNorm(c.d_model) if c.norm_first else nn.Identity()
        self.decoder_norm = nn.LayerNorm(c.d_model) if c.norm_first else nn.Identity()
        self.generator = (None if c.share_embeddings else
                          nn.Linear(c.d_model, c.tgt_vocab_size, bias=False))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Xavier-uniform matrices, zero biases, token embeddings N(0, d_model^-1/2) as in
        fairseq: after the sqrt(d_model) scaling, embedding entries have unit variance; the
        padding token's row is zero.  A learned positional table (Table 3 row E) keeps its own
        initialisation (``LearnedPositionalEmbedding.reset_parameters``): position 0 is no
        padding token, so no row of it is zeroed."""
        tokens = {id(self.src_embed.weight), id(self.tgt_embed.weight)}
        positions = {id(p): m for m in (self.src_pos, self.tgt_pos) for p in m.parameters()}
        for name, p in self.named_parameters():
            if id(p) in positions:  # its one table, in parameter order
                positions[id(p)].reset_parameters()
            elif id(p) in tokens:
                nn.init.normal_(p, std=self.config.d_model**-0.5)
                with torch.no_grad():
                    p[self.config.pad_id].zero_()
            elif p.dim() > 1:
                nn.init.xavier_uniform_(p)
            elif name.endswith("bias") and "norm" not in name:
                nn.init.zeros_(p)

    def padding_mask(self, src: torch.Tensor) -> torch.Tensor:
        """(B, S) ids -> (B, 1, 1, S) boolean mask, True where a key is a real token."""
        return (src != self.config.pad_id)[:, None, None, :]

    def embed(self, tokens, embedding, positional, offset: int = 0):
        x = embedding(tokens) * math.sqrt(self.config.d_model)  # (B, T, d_model)
        return self.dropout(x + positional(tokens.size(1), offset).to(x.dtype))

    def encode(self, src: torch.Tensor, need_weights: bool = False) -> torch.Tensor:
        """(B, S) source ids -> (B, S, d_model) memory for the decoder."""
        mask = self.padding_mask(src)
        x = self.embed(src, self.src_embed, self.src_pos)
        for layer in self.encoder:
            x = layer(x, mask, need_weights)
        return self.encoder_norm(x)

    def decode(self, tgt_in, memory, src_mask, cache: DecoderCache | None = None,
               need_weights: bool = False) -> torch.Tensor:
        """(B, T) target ids (starting with BOS) -> (B, T, tgt_vocab_size) logits.

        With a ``cache``, ``tgt_in`` holds only the new positions and earlier ones are reused.
        """
        offset = 0 if cache is None else cache.offset
        y = self.embed(tgt_in, self.tgt_embed, self.tgt_pos, offset)
        for i, layer in enumerate(self.decoder):
            y = layer(y, memory, src_mask, need_weights,
                      cache=None if cache is None else cache.layers[i])
        y = self.decoder_norm(y)
        if self.generator is None:
            return F.linear(y, self.tgt_embed.weight)
        return self.generator(y)

    def new_cache(self) -> DecoderCache:
        return DecoderCache(self.config.n_layers)

    def forward(self, src: torch.Tensor, tgt_in: torch.Tensor) -> torch.Tensor:
        memory = self.encode(src)
        return self.decode(tgt_in, memory, self.padding_mask(src))

    def attention_maps(self, src: torch.Tensor, tgt_in: torch.Tensor) -> dict[str, torch.Tensor]:
        """Every layer's and head's attention weights, for pictures (Figures 3-5).

        Returns {"encoder": (L, B, h, S, S), "decoder_self": (L, B, h, T, T),
        "cross": (L, B, h, T, S)}; row q of a map is query q's distribution over keys.
        Runs the explicit attention path; call under ``torch.no_grad()`` in eval mode.
        """
        memory = self.encode(src, need_weights=True)
        self.decode(tgt_in, memory, self.padding_mask(src), need_weights=True)
        return {
            "encoder": torch.stack([layer.attn_weights for layer in self.encoder]),
            "decoder_self": torch.stack([layer.self_weights for layer in self.decoder]),
            "cross": torch.stack([layer.cross_weights for layer in self.decoder]),
        }

    def num_parameters(self) -> int:
        """Trainable parameters, each shared matrix counted once."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)
