"""Greedy decoding: at each step emit the most probable next token (batched, with a cache)."""

from __future__ import annotations

import torch

from ..model import Transformer
from .runtime import eval_mode


def never_pad_or_bos(scores: torch.Tensor, config, inplace: bool = False) -> torch.Tensor:
    """``scores`` (..., V) (logits or log-probabilities) with the entries of ``pad_id`` and
    ``bos_id`` set to -inf: neither is ever a next token, however the model scores it.
    ``inplace=True`` overwrites ``scores`` (for a tensor nobody else holds) instead of a copy."""
    if not inplace:
        scores = scores.clone()
    scores[..., config.pad_id] = float("-inf")
    scores[..., config.bos_id] = float("-inf")
    return scores


@torch.no_grad()
def greedy_decode(model: Transformer, src: torch.Tensor, max_len: int | None = None,
                  use_cache: bool = True, compile=False) -> torch.Tensor:
    """Translate a batch ``src`` (B, S) and return generated ids (B, <= max_len).

    Each row holds the tokens after BOS up to and including EOS, then ``pad_id``.  Padding
    and BOS are never chosen as a next token (EOS and UNK may be).
    ``max_len`` defaults to the source length + 50 (Section 6.1).  Rows that have emitted EOS
    leave the batch, so later steps cost only the rows still going.
    ``compile`` (True for inductor, an inductor mode such as ``"reduce-overhead"`` for CUDA
    graphs, or a ``torch.compile`` backend) compiles the decoder step with fixed shapes
    (``DecoderCache`` static mode, no row ever leaves): for GPUs, where the first call's
    compilation pays off over many batches of one shape.
    ``use_cache=False`` recomputes the whole prefix at every step (slow; kept to test and time
    the cache).
    """
    c = model.config
    max_len = src.size(1) + 50 if max_len is None else max_len
    with eval_mode(model):
        memory, src_mask = model.encode(src), model.padding_mask(src)
        if not use_cache:
            return _greedy_uncached(model, memory, src_mask, max_len)
        out = torch.full((src.size(0), max_len), c.pad_id, dtype=torch.long, device=src.device)
        rows = torch.arange(src.size(0), device=src.device)  # output row of each decoder row
        tokens = torch.full_like(rows, c.bos_id)
        finished = torch.zeros_like(rows, dtype=torch.bool)  # only a static cache keeps them
        cache = model.new_cache(memory, src_mask, capacity=max_len, compile=compile)
        steps = 0
        for steps in range(1, max_len + 1):
            logits = model.decode_step(tokens, cache)
            tokens = never_pad_or_bos(logits, c, inplace=True).argmax(-1)
            if cache.static:
                tokens = tokens.masked_fill(finished, c.pad_id)
                finished |= tokens == c.eos_id
                out[:, steps - 1] = tokens
                if finished.all():
                    break
                continue
            out[rows, steps - 1] = tokens
            going = (tokens != c.eos_id).nonzero()[:, 0]
            if going.numel() < tokens.numel():  # some rows ended: drop them from the batch
                if going.numel() == 0:
                    break
                rows, tokens = rows[going], tokens[going]
                cache.reorder(going, sentences=going)
    return out[:, :steps]


def _greedy_uncached(model, memory, src_mask, max_len) -> torch.Tensor:
    c = model.config
    ys = torch.full((memory.size(0), 1), c.bos_id, dtype=torch.long, device=memory.device)
    finished = torch.zeros(memory.size(0), dtype=torch.bool, device=memory.device)
    for _ in range(max_len):
        logits = model.decode(ys, memory, src_mask)[:, -1]
        next_token = never_pad_or_bos(logits, c).argmax(-1).masked_fill(finished, c.pad_id)
        ys = torch.cat([ys, next_token[:, None]], dim=1)
        finished |= next_token == c.eos_id
        if finished.all():
            break
    return ys[:, 1:]
