"""What incremental decoding keeps between steps (inference only).

The decoder is auto-regressive (Section 3.1): output token t+1 depends on tokens 0..t.  Rerunning
the decoder over the whole prefix at every step costs O(t) positions per step; with a cache each
step feeds one new position per row.  Per decoder layer, ``DecoderCache`` keeps

- self-attention keys and values in buffers allocated once, ``(rows, h, capacity, d_k)``, and
  written in place at the new position: no copy of the prefix per step (beam search, which
  must move rows to follow their hypotheses, copies them once per step into a second buffer,
  packed tight: ``LayerCache.reorder``);
- encoder-decoder keys and values, projected once per source sentence and shared by the
  decoder rows of that sentence (the K beams of beam search, see
  ``MultiHeadAttention.cross_attend_step``);
- the self-attention's W^Q, W^K, W^V stacked into one matrix, so each step projects with one
  product (the model's parameters stay the paper's three matrices);
- on a CPU, the source padding mask as an additive float mask, made once per batch
  (``cross_attention_mask``).

``static=True`` gives every step the same shapes (the position lives in a tensor, attention runs
over the whole buffer with a mask of the positions written): what ``torch.compile`` without
recompilation and CUDA graphs need.  A static cache never drops rows.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


class LayerCache:
    """One decoder layer's cached tensors (see the module docstring).

    ``k`` and ``v`` are views (rows, h, capacity, d) of flat buffers, so that a reorder can lay
    the rows it keeps out afresh in a second buffer (``spare``) of the same size."""

    def __init__(self, layer, memory: torch.Tensor, rows: int, capacity: int, static: bool):
        attn = layer.self_attn
        self.qkv_weight, self.qkv_bias = attn.fused_qkv()
        self.static = static
        # zeros: a static step reads (then masks out) positions not written yet, and 0 times
        # uninitialised memory could be NaN.  A dynamic step reads only what it wrote.
        self.allocate(memory, [(rows, attn.n_heads, capacity, attn.d_k),
                               (rows, attn.n_heads, capacity, attn.d_v)])
        # (B, h, S, d), each head's keys in one block: the step's products read them as they are
        self.cross_k, self.cross_v = (t.contiguous() for t in
                                      layer.cross_attn.project_kv(memory, memory))

    def buffer(self, like: torch.Tensor, numel: int) -> torch.Tensor:
        """A flat buffer of ``numel`` elements on ``like``'s device and dtype."""
        return (like.new_zeros if self.static else like.new_empty)(numel)

    def allocate(self, like: torch.Tensor, shapes) -> None:
        """Fresh flat ``live`` buffers viewed as ``k`` and ``v`` of ``shapes``; the ``spare``
        ones, buffers like ``live``, are allocated by the next reorder."""
        self.live = tuple(self.buffer(like, math.prod(shape)) for shape in shapes)
        self.k, self.v = (b.view(shape) for b, shape in zip(self.live, shapes))
        self.spare = None

    def reorder(self, index: torch.Tensor, length: int) -> None:
        """Rows ``index`` of the first ``length`` positions, copied once into the spare buffers,
        which then become the live ones (the positions not yet written are not copied).

        A dynamic cache packs them tight, capacity ``length + 1`` (room for the next step's
        position; a later step grows it): each row's and head's keys are then one block, and
        the next step's attention reads them in one stream rather than strided by a capacity
        far larger than the prefix (on a CPU, strided rows make the copy about 1.6x and the
        attention products 1.6-3.8x as slow for the small preset).  A static cache keeps its
        shape."""
        n = index.numel()
        shapes = [(n, t.size(1), t.size(2) if self.static else length + 1, t.size(3))
                  for t in (self.k, self.v)]
        sizes = [math.prod(shape) for shape in shapes]
        if self.spare is None or any(b.numel() < m for b, m in zip(self.spare, sizes)):
            self.spare = tuple(self.buffer(b, max(b.numel(), m)) for b, m in zip(self.live, sizes))
        new_k, new_v = (b[:m].view(shape) for b, m, shape in zip(self.spare, sizes, shapes))
        torch.index_select(self.k[:, :, :length], 0, index, out=new_k[:, :, :length])
        torch.index_select(self.v[:, :, :length], 0, index, out=new_v[:, :, :length])
        self.live, self.spare = self.spare, self.live
        self.k, self.v = new_k, new_v

    @classmethod
    def merge(cls, layers: list[LayerCache], length: int, source_len: int) -> LayerCache:
        """The rows of ``layers`` (dynamic, ``length`` positions written) one after the other,
        packed like ``reorder``'s, their encoder keys and values padded with zeros to
        ``source_len`` positions (``DecoderCache.merge`` masks the padding out)."""
        merged = cls.__new__(cls)
        first = layers[0]
        merged.qkv_weight, merged.qkv_bias, merged.static = first.qkv_weight, first.qkv_bias, False
        n = sum(layer.k.size(0) for layer in layers)
        merged.allocate(first.k, [(n, t.size(1), length + 1, t.size(3))
                                  for t in (first.k, first.v)])
        row = 0
        for layer in layers:
            rows = slice(row, row + layer.k.size(0))
            merged.k[rows, :, :length] = layer.k[:, :, :length]
            merged.v[rows, :, :length] = layer.v[:, :, :length]
            row = rows.stop
        merged.cross_k, merged.cross_v = (
            torch.cat([F.pad(t, (0, 0, 0, source_len - t.size(2))) for t in tensors])
            for tensors in ([layer.cross_k for layer in layers],
                            [layer.cross_v for layer in layers]))
        return merged

    def grow(self, capacity: int) -> None:
        """A larger capacity (only a dynamic cache grows), the positions written copied once."""
        old = self.k, self.v
        self.allocate(self.k, [(*t.shape[:2], capacity, t.size(3)) for t in old])
        for new, written in zip((self.k, self.v), old):
            new[:, :, : written.size(2)] = written


def cross_attention_mask(src_mask: torch.Tensor, dtype=torch.float32) -> torch.Tensor:
    """The source padding mask as the steps' cross-attention takes it: on a CPU, when every
    sentence has a key to see, an additive float mask (0, or -inf at padding) made once per
    batch, which a step adds to its scores in place (``attention.step_attention``) instead of
    building and applying the boolean mask's complement each step; otherwise ``src_mask``."""
    if src_mask.device.type != "cpu" or not src_mask.any(-1).all():
        return src_mask
    return torch.zeros(src_mask.shape, dtype=dtype).masked_fill_(~src_mask, float("-inf"))


class DecoderCache:
    """The decoder's state between steps of ``Transformer.decode_step``.

    Made by ``model.new_cache(memory, src_mask, rows, capacity)``: ``memory`` (B, S, d_model)
    and ``src_mask`` (B, 1, 1, S) are the encoder's output for B sentences.  A step may feed
    any multiple N = B * g of B rows, up to ``rows`` (default B): row r belongs to sentence
    r // g (g = K for the beams of beam search).  ``length`` counts the positions fed so far.
    ``capacity`` is the number of positions allocated; a dynamic cache grows past it (by
    copying once), a static one cannot.
    """

    def __init__(self, model, memory, src_mask, rows: int | None = None, capacity: int = 64,
                 static: bool = False):
        self.static, self.length = static, 0
        # the source padding mask as a step's cross-attention takes it (a static step, made
        # for compiling and graphing, keeps the boolean mask: no host check of its contents)
        self.cross_mask = src_mask if static else cross_attention_mask(src_mask, memory.dtype)
        rows = memory.size(0) if rows is None else rows
        self.layers = [LayerCache(layer, memory, rows, capacity, static)
                       for layer in model.decoder]
        # static mode: the position as a tensor, advanced in place (no Python int in the step)
        self.position = torch.zeros(1, dtype=torch.long, device=memory.device) if static else None
        self.step_fn = None  # set by Transformer.new_cache(compile=...)
        self.cudagraphs = False  # whether step_fn replays CUDA graphs (compile="reduce-overhead")

    def tensors(self) -> list[torch.Tensor]:
        """Every tensor a step reads from the cache (what a CUDA graph must find in place)."""
        per_layer = [t for kv in self.layers
                     for t in (kv.k, kv.v, kv.cross_k, kv.cross_v, kv.qkv_weight, kv.qkv_bias)]
        extra = [self.cross_mask] + ([self.position] if self.static else [])
        return [t for t in per_layer + extra if t is not None]

    @property
    def capacity(self) -> int:
        return self.layers[0].k.size(2) if self.layers else 0

    def next_position(self):
        """Where the next step writes: an int (dynamic) or the position tensor (static)."""
        if self.static:
            if self.length >= self.capacity:
                raise ValueError(f"static decoder cache is full ({self.capacity} positions); "
                                 "allocate a larger capacity")
            return self.position
        if self.length >= self.capacity:
            for layer in self.layers:
                layer.grow(max(2 * self.capacity, 1))
        return self.length

    def advance(self) -> None:
        self.length += 1
        if self.static:
            self.position += 1

    @classmethod
    def merge(cls, caches: list[DecoderCache]) -> DecoderCache:
        """One cache holding the rows of ``caches`` one after the other, in order (dynamic caches
        at the same length, each row a sentence's or a beam's: ``beam_search_batches``).  Their
        sources may differ in length: the encoder keys and values are padded to the longest,
        and the padding is masked out like a source's own."""
        first = caches[0]
        if any(c.static or c.length != first.length for c in caches):
            raise ValueError("only dynamic decoder caches at the same length can merge")
        merged = cls.__new__(cls)
        merged.static, merged.length, merged.position = False, first.length, None
        merged.step_fn, merged.cudagraphs = None, False
        masks = [c.cross_mask for c in caches]
        if len({m.dtype for m in masks}) > 1:  # an additive mask (0 or -inf) as a boolean one
            masks = [m if m.dtype == torch.bool else m == 0 for m in masks]
        source_len = max(m.size(-1) for m in masks)
        hidden = False if masks[0].dtype == torch.bool else float("-inf")  # what padding gets
        merged.cross_mask = torch.cat([F.pad(m, (0, source_len - m.size(-1)), value=hidden)
                                       for m in masks])
        merged.layers = [LayerCache.merge(list(layers), first.length, source_len)
                         for layers in zip(*(c.layers for c in caches))]
        return merged

    def reorder(self, index: torch.Tensor, sentences: torch.Tensor | None = None) -> None:
        """Keep decoder rows ``index`` (in that order), e.g. the origins of beam search's new
        hypotheses; ``sentences`` (indices of source sentences, when some leave the batch)
        keeps only those sentences' encoder-decoder keys/values and mask."""
        if self.static and index.numel() != self.layers[0].k.size(0):
            raise ValueError("a static decoder cache keeps all its rows")
        for layer in self.layers:
            layer.reorder(index, self.length)
            if sentences is not None:
                layer.cross_k = layer.cross_k.index_select(0, sentences)
                layer.cross_v = layer.cross_v.index_select(0, sentences)
        if sentences is not None:
            self.cross_mask = self.cross_mask.index_select(0, sentences)
