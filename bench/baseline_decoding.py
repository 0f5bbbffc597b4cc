"""A straightforward cached decoder, frozen as the decoding benchmark's baseline.

``bench/bench_decode.py`` times the package's decoders against this one on the same model.  It
is written as functions over the model's modules, so any checkpoint runs through both:

- every attention projects queries, keys and values with three separate products;
- decoder self-attention appends each step's key and value with ``torch.cat`` (a copy of the
  whole cache) and builds a causal mask at every step;
- beam search repeats the encoder memory, and the cross-attention keys/values, once per beam;
  it reorders every cached tensor with ``index_select`` after each step, and takes the top 2K
  over all K x V extensions after a ``log_softmax`` and a clone of the log-probabilities.

Not used by the package; do not improve it (it is the yardstick).  New tensors are made on
``src``'s device, so that it also runs on a GPU.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from transformer.engine.beam_search import length_penalty
from transformer.engine.runtime import eval_mode
from transformer.model.attention import causal_mask


def _never_pad_or_bos(scores, c):
    scores = scores.clone()
    scores[..., [c.pad_id, c.bos_id]] = float("-inf")
    return scores


def _attention(attn, query, key, value, mask, is_causal, cache, static_kv):
    q = attn.split_heads(attn.w_q(query), attn.d_k)
    if static_kv and "k" in cache:
        k, v = cache["k"], cache["v"]
    else:
        k = attn.split_heads(attn.w_k(key), attn.d_k)
        v = attn.split_heads(attn.w_v(value), attn.d_v)
        if not static_kv and "k" in cache:
            k, v = torch.cat([cache["k"], k], dim=2), torch.cat([cache["v"], v], dim=2)
    cache["k"], cache["v"] = k, v
    if is_causal:  # one new query over t cached keys: an offset causal mask, built every step
        mask, is_causal = causal_mask(q.size(2), k.size(2), q.device), False
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    b, _, t, _ = out.shape
    return attn.w_o(out.transpose(1, 2).reshape(b, t, attn.n_heads * attn.d_v))


def _decode(model, tgt_in, memory, src_mask, cache):
    offset = cache[0]["self"]["k"].size(2) if "k" in cache[0]["self"] else 0
    y = model.tgt_embed(tgt_in) * math.sqrt(model.config.d_model)
    y = y + model.tgt_pos(tgt_in.size(1), offset)
    for layer, kv in zip(model.decoder, cache):
        y = layer.res_self(y, lambda h, a=layer.self_attn, kv=kv: _attention(
            a, h, h, h, None, True, kv["self"], False))
        y = layer.res_cross(y, lambda h, a=layer.cross_attn, kv=kv: _attention(
            a, h, memory, memory, src_mask, False, kv["cross"], True))
        y = layer.res_ffn(y, layer.ffn)
    y = model.decoder_norm(y)
    weight = model.tgt_embed.weight if model.generator is None else model.generator.weight
    return F.linear(y, weight)


def _reorder(cache, index, cross):
    for layer in cache:
        for part in ("self", "cross") if cross else ("self",):
            for name in list(layer[part]):
                layer[part][name] = layer[part][name].index_select(0, index)


@torch.no_grad()
def greedy_decode(model, src, max_len):
    c = model.config
    with eval_mode(model):
        memory, src_mask = model.encode(src), model.padding_mask(src)
        ys = torch.full((src.size(0), 1), c.bos_id, dtype=torch.long, device=src.device)
        finished = torch.zeros(src.size(0), dtype=torch.bool, device=src.device)
        cache = [{"self": {}, "cross": {}} for _ in model.decoder]
        for _ in range(max_len):
            logits = _decode(model, ys[:, -1:], memory, src_mask, cache)[:, -1]
            next_token = _never_pad_or_bos(logits, c).argmax(-1).masked_fill(finished, c.pad_id)
            ys = torch.cat([ys, next_token[:, None]], dim=1)
            finished |= next_token == c.eos_id
            if finished.all():
                break
    return ys[:, 1:]


@torch.no_grad()
def beam_search(model, src, beam_size=4, alpha=0.6, max_len_offset=50, max_len=None):
    """Best hypothesis per row, as ``transformer.engine.beam_search.beam_search`` returns."""
    c, B, K = model.config, src.size(0), beam_size
    if max_len is None:
        limits = ((src != c.pad_id).sum(1) + max_len_offset).tolist()
    else:
        limits = [max_len] * B
    if c.positional == "learned":
        limits = [min(n, c.max_len) for n in limits]
    finished = [[] for _ in range(B)]
    rows = list(range(B))
    with eval_mode(model):
        memory = model.encode(src).repeat_interleave(K, dim=0)
        src_mask = model.padding_mask(src).repeat_interleave(K, dim=0)
        cache = [{"self": {}, "cross": {}} for _ in model.decoder]
        dev = src.device
        ys = torch.full((B * K, 1), c.bos_id, dtype=torch.long, device=dev)
        scores = torch.zeros(B, K, device=dev)
        scores[:, 1:] = float("-inf")
        for step in range(1, max(limits, default=0) + 1):
            n = len(rows)
            logits = _decode(model, ys[:, -1:], memory, src_mask, cache)[:, -1]
            logp = _never_pad_or_bos(logits.float().log_softmax(-1), c)
            V = logp.size(-1)
            top, idx = (scores.view(-1, 1) + logp).view(n, K * V).topk(min(2 * K, K * V), dim=1)
            beam, token = idx // V, idx % V
            is_eos = token == c.eos_id
            keep = torch.sort(is_eos.to(torch.uint8), dim=1, stable=True).indices[:, :K]
            live_scores = top.gather(1, keep)
            origin = (torch.arange(n, device=dev)[:, None] * K + beam.gather(1, keep)).view(-1)
            new_ys = torch.cat([ys[origin], token.gather(1, keep).view(-1, 1)], dim=1)
            lp = length_penalty(step, alpha)
            ended = (is_eos[:, :K] & top[:, :K].isfinite()).nonzero().tolist()
            if ended:
                top_list, beam_list = top.tolist(), beam.tolist()
                for r, j in ended:
                    prefix = ys[r * K + beam_list[r][j], 1:].tolist()
                    finished[rows[r]].append((prefix, top_list[r][j] / lp, top_list[r][j]))
            done, best_live = [], live_scores[:, 0].tolist()
            for r, row in enumerate(rows):
                hyps = finished[row]
                if step >= limits[row]:
                    for j, logprob in enumerate(live_scores[r].tolist()):
                        if logprob > float("-inf"):
                            hyps.append((new_ys[r * K + j, 1:].tolist(), logprob / lp, logprob))
                    done.append(r)
                elif len(hyps) >= K or (hyps and max(h[1] for h in hyps) >= (
                        best_live[r] / length_penalty(limits[row], alpha))):
                    done.append(r)
            if done:
                alive = sorted(set(range(n)) - set(done))
                if not alive:
                    break
                keep_rows = torch.tensor(alive, device=dev)
                block = (keep_rows[:, None] * K + torch.arange(K, device=dev)).view(-1)
                rows = [rows[r] for r in alive]
                origin, new_ys, live_scores = origin[block], new_ys[block], live_scores[keep_rows]
                memory, src_mask = memory[block], src_mask[block]
            _reorder(cache, origin, cross=bool(done))
            ys, scores = new_ys, live_scores
    return [sorted(h, key=lambda x: -x[1])[0][0] if h else [] for h in finished]
