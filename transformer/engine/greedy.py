"""Greedy decoding: at each step emit the most probable next token (batched, with a cache)."""

from __future__ import annotations

import torch

from ..model import Transformer
from .runtime import eval_mode


def never_pad_or_bos(scores: torch.Tensor, config) -> torch.Tensor:
    """``scores`` (..., V) (logits or log-probabilities) with the entries of ``pad_id`` and
    ``bos_id`` set to -inf: neither is ever a next token, however the model scores it."""
    scores = scores.clone()
    scores[..., [config.pad_id, config.bos_id]] = float("-inf")
    return scores


@torch.no_grad()
def greedy_decode(model: Transformer, src: torch.Tensor, max_len: int | None = None,
                  use_cache: bool = True) -> torch.Tensor:
    """Translate a batch ``src`` (B, S) and return generated ids (B, <= max_len).

    Each row holds the tokens after BOS up to and including EOS, then ``pad_id``.  Padding
    and BOS are never chosen as a next token (EOS and UNK may be).
    ``max_len`` defaults to the source length + 50 (Section 6.1).  ``use_cache=False``
    recomputes the whole prefix at every step (slow; kept to test and time the cache).
    """
    c = model.config
    max_len = src.size(1) + 50 if max_len is None else max_len
    with eval_mode(model):
        memory, src_mask = model.encode(src), model.padding_mask(src)
        ys = torch.full((src.size(0), 1), c.bos_id, dtype=torch.long, device=src.device)
        finished = torch.zeros(src.size(0), dtype=torch.bool, device=src.device)
        cache = model.new_cache() if use_cache else None
        for _ in range(max_len):
            step_in = ys[:, -1:] if use_cache else ys
            logits = model.decode(step_in, memory, src_mask, cache)[:, -1]
            next_token = never_pad_or_bos(logits, c).argmax(-1)
            next_token = next_token.masked_fill(finished, c.pad_id)
            ys = torch.cat([ys, next_token[:, None]], dim=1)
            finished |= next_token == c.eos_id
            if finished.all():
                break
    return ys[:, 1:]
