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

from .cache import DecoderCache
from .config import TransformerConfig
from .layers import DecoderLayer, EncoderLayer
from .positional import build_positional

# torch.compile's inductor modes, accepted as ``compile=`` by ``new_cache`` and greedy decoding
INDUCTOR_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


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

    def embed(self, tokens, embedding, positional, offset=0):
        x = embedding(tokens) * math.sqrt(self.config.d_model)  # (B, T, d_model)
        return self.dropout(x + positional(tokens.size(1), offset).to(x.dtype))

    def encode(self, src: torch.Tensor, need_weights: bool = False) -> torch.Tensor:
        """(B, S) source ids -> (B, S, d_model) memory for the decoder."""
        mask = self.padding_mask(src)
        x = self.embed(src, self.src_embed, self.src_pos)
        for layer in self.encoder:
            x = layer(x, mask, need_weights)
        return self.encoder_norm(x)

    def decode(self, tgt_in, memory, src_mask, need_weights: bool = False) -> torch.Tensor:
        """(B, T) target ids (starting with BOS) -> (B, T, tgt_vocab_size) logits."""
        y = self.embed(tgt_in, self.tgt_embed, self.tgt_pos)
        for layer in self.decoder:
            y = layer(y, memory, src_mask, need_weights)
        return self.project(self.decoder_norm(y))

    def project(self, y: torch.Tensor) -> torch.Tensor:
        """Decoder output (..., d_model) -> logits (..., tgt_vocab_size) (Section 3.4)."""
        if self.generator is None:
            return F.linear(y, self.tgt_embed.weight)
        return self.generator(y)

    # ---- incremental decoding: one new position per step (cache.py) ------------------------

    def new_cache(self, memory: torch.Tensor, src_mask: torch.Tensor, rows: int | None = None,
                  capacity: int = 64, static: bool = False, compile=False) -> DecoderCache:
        """A ``DecoderCache`` for decoding ``memory`` (B, S, d_model) as up to ``rows`` rows
        (default B; B * K for beam search).

        ``static`` fixes every step's shapes; ``compile`` also compiles the step (one graph,
        no breaks) and implies ``static``: True for inductor, an inductor mode
        (``"reduce-overhead"`` replays each step as a CUDA graph), or any other
        ``torch.compile`` backend, e.g. ``"aot_eager"``.
        """
        static = static or bool(compile)
        if static:
            self.tgt_pos(capacity)  # the whole table exists before any step (or raises here)
        cache = DecoderCache(self, memory, src_mask, rows, capacity, static)
        if compile:
            mode = compile if compile in INDUCTOR_MODES else None
            backend = "inductor" if compile is True or mode else compile
            cache.cudagraphs = mode in ("reduce-overhead", "max-autotune")
            for tensor in cache.tensors():  # fixed addresses: a CUDA graph reads them in place
                torch._dynamo.mark_static_address(tensor, guard=False)
            cache.step_fn = torch.compile(self._step, backend=backend, mode=mode,
                                          fullgraph=True, dynamic=False)
        return cache

    def decode_step(self, tokens: torch.Tensor, cache: DecoderCache,
                    project: bool = True) -> torch.Tensor:
        """Logits (N, tgt_vocab_size) of the next token of every decoder row, from its latest
        token ``tokens`` (N,) and the earlier ones held in ``cache``: the last position of
        ``decode`` over the whole prefix (to float tolerance), at the cost of one position.
        ``project=False`` returns the decoder's output (N, d_model) before ``project``, for a
        caller that projects it a piece at a time (beam search); not with a compiled step."""
        if not project and cache.step_fn is not None:
            raise ValueError("decode_step(project=False) needs a cache made without compile=")
        position = cache.next_position()
        if cache.cudagraphs:  # the previous step's logits are consumed: its memory may be reused
            torch.compiler.cudagraph_mark_step_begin()
        out = (cache.step_fn or self._step)(tokens, cache, position, project)
        cache.advance()
        return out

    def _step(self, tokens, cache: DecoderCache, position, project=True) -> torch.Tensor:
        y = self.embed(tokens[:, None], self.tgt_embed, self.tgt_pos, position)  # (N, 1, d)
        for layer, kv in zip(self.decoder, cache.layers):  # y: (N, 1, d_model)
            y = layer.step(y, kv, cache.cross_mask, position)
        y = self.decoder_norm(y)[:, 0]  # (N, d_model)
        return self.project(y) if project else y

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
