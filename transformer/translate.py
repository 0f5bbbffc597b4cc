"""Translate sentences; evaluate a model on a split: BLEU and perplexity (Section 6.1, Tables 2-3).

    translate(model, tokenizer, ["Ein Mann fährt Rad ."])  -> ["A man rides a bike ."]
    evaluate(model, dataset, "test")  -> {"sacrebleu": ..., "tokenized_bleu": ..., ...}

Sentences are sorted by length and cut into batches of at most ``max_tokens`` source tokens
(padding included), so little compute goes to padding; the output comes back in input order.
``beam_size=1`` takes the faster greedy decoder (identical output, see tests/test_beam_search.py).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from .beam_search import beam_search
from .bleu import all_bleu
from .decoding import greedy_decode
from .model import Transformer


def _device(model: Transformer, device) -> torch.device:
    """``device`` if given (the model is moved there), else where the model's weights live."""
    if device is None:
        return next(model.parameters()).device
    model.to(device)
    return torch.device(device)


def length_batches(lengths: Sequence[int], max_tokens: int) -> list[list[int]]:
    """Indices sorted by length (longest first), cut so that rows * longest <= max_tokens.

    A sentence longer than ``max_tokens`` still gets a batch of its own.
    """
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batches, current = [], []
    for i in order:
        longest = lengths[current[0]] if current else lengths[i]
        if current and (len(current) + 1) * longest > max_tokens:
            batches.append(current)
            current = []
        current.append(i)
    return batches + [current] if current else batches


@torch.no_grad()
def translate(model: Transformer, tokenizer, sentences: Sequence[str], *, beam_size: int = 4,
              alpha: float = 0.6, max_tokens: int = 4000, device=None) -> list[str]:
    """Translate raw ``sentences`` with beam search (Section 6.1 settings by default)."""
    if isinstance(sentences, str):
        raise TypeError("sentences must be a list of strings, not a single string")
    device, c = _device(model, device), model.config
    ids = [tokenizer.encode(s) + [c.eos_id] for s in sentences]  # source = tokens + EOS
    if c.positional == "learned":  # a learned table has no position beyond max_len - 1
        ids = [x[: c.max_len - 1] + [c.eos_id] if len(x) > c.max_len else x for x in ids]
    out: list[str | None] = [None] * len(ids)
    for batch in length_batches([len(x) for x in ids], max_tokens):
        src = torch.full((len(batch), len(ids[batch[0]])), c.pad_id, dtype=torch.long)
        for row, i in enumerate(batch):
            src[row, : len(ids[i])] = torch.tensor(ids[i])
        src = src.to(device)
        if beam_size == 1:  # greedy: same answer as a beam of one, without the bookkeeping
            lengths = (src != c.pad_id).sum(1)
            hyps = greedy_decode(model, src, max_len=int(lengths.max()) + 50).tolist()
            # greedy's limit is the longest source + 50: trim each row to its own + 50
            hyps = [h[: n + 50] for h, n in zip(hyps, lengths.tolist())]
        else:
            hyps = beam_search(model, src, beam_size=beam_size, alpha=alpha)
        for i, hyp in zip(batch, hyps):
            out[i] = tokenizer.decode(hyp)
    return out


@torch.no_grad()
def perplexity(model: Transformer, dataset, split: str, *, max_tokens: int = 4000, device=None,
               limit: int | None = None) -> tuple[float, int]:
    """Per-subword perplexity exp(mean cross-entropy) on ``split``: no label smoothing, padding
    ignored, EOS counted as a predicted token (Table 3's PPL).  Returns ``(ppl, n_tokens)``.

    With ``limit``, scores only the first ``limit`` sentences of ``dataset.texts(split)``,
    the ones ``evaluate(limit=...)`` translates (batches come sorted by length, so their rows
    are picked out by ``Batch.indices``).
    """
    device, pad = _device(model, device), model.config.pad_id
    was_training = model.training
    model.eval()
    total, n_tokens = 0.0, 0
    try:
        for batch in dataset.batches(split, max_tokens, shuffle=False):
            src, tgt_in, tgt_out = batch.src, batch.tgt_in, batch.tgt_out
            if limit is not None:
                rows = [r for r, i in enumerate(batch.indices) if i < limit]
                if not rows:
                    continue
                src, tgt_in, tgt_out = (t[rows] for t in (src, tgt_in, tgt_out))
            src, tgt_in, tgt_out = (t.to(device) for t in (src, tgt_in, tgt_out))
            logits = model(src, tgt_in)  # (B, T, V)
            total += F.cross_entropy(logits.float().flatten(0, 1), tgt_out.flatten(),
                                     ignore_index=pad, reduction="sum").item()
            n_tokens += int((tgt_out != pad).sum())
    finally:
        model.train(was_training)
    return math.exp(total / max(n_tokens, 1)), n_tokens


def evaluate(model: Transformer, dataset, split: str, *, beam_size: int = 4, alpha: float = 0.6,
             max_tokens: int = 4000, device=None, limit: int | None = None,
             n_samples: int = 5, score_perplexity: bool = True) -> dict:
    """Translate ``split`` of ``dataset`` and score it every way we report.

    Returns a dict: ``sacrebleu`` + ``sacrebleu_signature`` (detokenized), ``tokenized_bleu``
    (the paper's metric: compounds split for German targets), ``tokenized_bleu_lc`` (lowercased,
    as Multi30k papers quote), their signatures, ``perplexity`` per subword token,
    ``n_sentences``, ``n_ppl_tokens``, decoding settings and ``samples`` (src, ref, hyp).
    ``limit`` keeps the first ``limit`` sentences (for BLEU and perplexity alike).
    ``score_perplexity=False`` leaves perplexity out (it does not depend on the decoding).
    """
    sources, references = dataset.texts(split)
    sources, references = list(sources[:limit]), list(references[:limit])
    hyps = translate(model, dataset.tokenizer, sources, beam_size=beam_size, alpha=alpha,
                     max_tokens=max_tokens, device=device)
    result = {"dataset": getattr(dataset, "name", None), "split": split,
              "n_sentences": len(hyps), "beam_size": beam_size, "alpha": alpha}
    result.update(all_bleu(hyps, references, getattr(dataset, "tgt_lang", None)))
    if score_perplexity:
        ppl, n_tokens = perplexity(model, dataset, split, max_tokens=max_tokens, device=device,
                                   limit=limit)
        result.update(perplexity=ppl, n_ppl_tokens=n_tokens)
    result["samples"] = [{"src": s, "ref": r, "hyp": h}
                         for s, r, h in zip(sources[:n_samples], references, hyps)]
    return result
