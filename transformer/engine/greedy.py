"""Greedy decoding: at each step emit the most probable next token (batched, with a cache)."""

from __future__ import annotations

import torch

from ..model import Transformer
from .onednn import packed_linears
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
                  use_cache: bool = True, compile=False, cuda_graph: bool = False,
                  sync_every: int | None = None) -> torch.Tensor:
    """Translate a batch ``src`` (B, S) and return generated ids (B, <= max_len).

    Each row holds the tokens after BOS up to and including EOS, then ``pad_id``.  Padding
    and BOS are never chosen as a next token (EOS and UNK may be).
    ``max_len`` defaults to the source length + 50 (Section 6.1); with learned positions it
    is at most ``config.max_len``, the table's size.  Rows that have emitted EOS
    leave the batch, so later steps cost only the rows still going.

    For GPUs, where a step of a small model costs more in kernel launches and host round trips
    than in arithmetic, two options fix every step's shapes instead (``DecoderCache`` static
    mode: no row leaves, ended rows write padding) and run the steps without waiting for the
    device, checking whether every row has ended only every ``sync_every`` steps (default 8 on
    a GPU, 1 on the CPU); the output is the same:
    - ``compile`` (True for inductor, an inductor mode such as ``"reduce-overhead"``, which
      replays the decoder as a CUDA graph, or a ``torch.compile`` backend) compiles the decoder
      step; the first call pays for the compilation;
    - ``cuda_graph=True`` records one whole step (the decoder, the choice of the token and the
      bookkeeping) as a CUDA graph after running the first step, then replays it: one launch
      per token.  It combines with ``compile=True`` (inductor's kernels, recorded).
    ``use_cache=False`` recomputes the whole prefix at every step (slow; kept to test and time
    the cache).
    """
    max_len = src.size(1) + 50 if max_len is None else max_len
    c = model.config
    if getattr(c, "positional", None) == "learned":  # no position beyond the table's last
        max_len = min(max_len, c.max_len)  # (as beam search caps it)
    # the reference (uncached) and compiled paths keep PyTorch's own linear layers
    with eval_mode(model), packed_linears(model, enabled=use_cache and not compile):
        memory, src_mask = model.encode(src), model.padding_mask(src)
        if not use_cache:
            return _greedy_uncached(model, memory, src_mask, max_len)
        if compile or cuda_graph:
            return _greedy_static(model, memory, src_mask, max_len, compile, cuda_graph,
                                  sync_every)
        return _greedy_dynamic(model, memory, src_mask, max_len)


def _greedy_dynamic(model, memory, src_mask, max_len) -> torch.Tensor:
    """Cached steps; rows that have emitted EOS leave the batch (and the cache)."""
    c, device = model.config, memory.device
    out = torch.full((memory.size(0), max_len), c.pad_id, dtype=torch.long, device=device)
    rows = torch.arange(memory.size(0), device=device)  # output row of each decoder row
    tokens = torch.full_like(rows, c.bos_id)
    cache = model.new_cache(memory, src_mask, capacity=max_len)
    steps = 0
    for steps in range(1, max_len + 1):
        logits = model.decode_step(tokens, cache)
        tokens = never_pad_or_bos(logits, c, inplace=True).argmax(-1)
        out[rows, steps - 1] = tokens
        going = (tokens != c.eos_id).nonzero()[:, 0]
        if going.numel() < tokens.numel():  # some rows ended: drop them from the batch
            if going.numel() == 0:
                break
            rows, tokens = rows[going], tokens[going]
            cache.reorder(going, sentences=going)
    return out[:, :steps]


def _greedy_static(model, memory, src_mask, max_len, compile, cuda_graph,
                   sync_every) -> torch.Tensor:
    """Cached steps of fixed shapes, each a function of device tensors only (``step``), so
    that the host never waits for the device between two checks, and a CUDA graph can record
    a step whole."""
    c, device = model.config, memory.device
    if cuda_graph and device.type != "cuda":
        raise ValueError(f"cuda_graph=True needs a CUDA device; the model is on {device}: "
                         "leave it False (the CPU has no launch cost to save)")
    if sync_every is None:
        sync_every = 8 if device.type == "cuda" else 1
    if sync_every < 1:
        raise ValueError(f"sync_every must be >= 1, got {sync_every}")
    n = memory.size(0)
    cache = model.new_cache(memory, src_mask, capacity=max_len, static=True, compile=compile)
    if cuda_graph and cache.cudagraphs:
        raise ValueError(f"compile={compile!r} already replays CUDA graphs; with "
                         "cuda_graph=True use compile=True or False")
    out = torch.full((n, max_len), c.pad_id, dtype=torch.long, device=device)
    tokens = torch.full((n,), c.bos_id, dtype=torch.long, device=device)
    finished = torch.zeros(n, dtype=torch.bool, device=device)

    def step():  # one token per row, in place: no new shape, no host sync
        logits = model.decode_step(tokens, cache)  # advances cache.position
        chosen = never_pad_or_bos(logits, c, inplace=True).argmax(-1)
        chosen.masked_fill_(finished, c.pad_id)
        finished.logical_or_(chosen == c.eos_id)
        out.index_copy_(1, cache.position - 1, chosen[:, None])
        tokens.copy_(chosen)

    first = 1
    if cuda_graph and max_len > 1:  # step 1 runs eagerly (warm-up, off the capture stream)
        side = torch.cuda.Stream(device)
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(side):
            step()
        torch.cuda.current_stream(device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):  # recorded, not run: cache.length counts it, so the
            step()  # host's count stays one ahead of the replays (capacity is max_len)
        step, first = graph.replay, 2
    for s in range(first, max_len + 1):
        step()
        if s % sync_every == 0 and finished.all():
            break
    used = (out != c.pad_id).any(0).nonzero()  # ended rows write padding: trim those columns
    return out[:, : int(used[-1]) + 1 if used.numel() else 0]


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
