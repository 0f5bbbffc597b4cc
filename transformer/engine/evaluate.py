"""Evaluation, the one path: loss and perplexity over a split, translation, BLEU (Section 6.1,
Tables 2-3), and exact match and chrF for tasks too short for BLEU-4 (see bleu.py).

    evaluate_loss(model, dataset, "val")   -> {"loss": ..., "nll": ..., "ppl": ..., "tokens": ...}
    translate(model, tokenizer, ["Ein Mann fährt Rad ."])  -> ["A man rides a bike ."]
    evaluate(model, dataset, "test")       -> {"sacrebleu": ..., "tokenized_bleu": ..., ...}
    evaluate_checkpoint("run/checkpoints/step_00001000.pt", "test")   (the same, from a file)

Training validates with ``evaluate_loss``; ``evaluate`` reports its perplexity.

Sentences are sorted by length and cut into batches of at most ``max_tokens`` source tokens
(padding included), so little compute goes to padding; the output comes back in input order.
Beam search lets the batches share their tails (``beam_search.beam_search_batches``): the few
sentences a batch is still searching at the end join those of other batches.
``beam_size=1`` takes the faster greedy decoder (identical output, see tests/test_beam_search.py).
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from contextlib import nullcontext
from pathlib import Path

import torch

from ..data import TranslationDataset, load_dataset
from ..data.batching import token_batches
from ..model import Transformer
from . import checkpoint as ckpt
from .beam_search import beam_search_batches
from .bleu import all_bleu, bleu_is_meaningful, chrf_score, exact_match, mean_words
from .greedy import greedy_decode
from .loss import loss_sum, nll_sum
from .onednn import packed_linears
from .runtime import (
    all_reduce,
    eval_mode,
    in_dtype,
    model_dtype,
    move_batch,
    pick_device,
    resolve_dtype,
)


def _device(model: Transformer, device) -> torch.device:
    """``device`` if given (the model is moved there), else where the model's weights live."""
    if device is None:
        return next(model.parameters()).device
    model.to(device)
    return torch.device(device)


def padded_batches(ids: Sequence[list[int]], max_tokens: int, pad_id: int, device=None):
    """Yield ``(indices, src)``: the token-id lists ``ids``, longest first, cut into batches
    of at most ``max_tokens`` positions (``data.batching.token_batches``), each as a
    right-padded (B, S) tensor on ``device``."""
    lengths = [len(x) for x in ids]
    longest_first = sorted(range(len(ids)), key=lambda i: -lengths[i])
    for batch in token_batches(lengths, None, max_tokens, longest_first):
        src = torch.full((len(batch), len(ids[batch[0]])), pad_id, dtype=torch.long)
        for row, i in enumerate(batch):
            src[row, : len(ids[i])] = torch.tensor(ids[i])
        yield batch, src.to(device)


CHARS_PER_TOKEN = 64  # no subword of a trained vocabulary is longer (in characters)
LONG_WARNINGS = 10  # over-long sentences named one by one; the rest are counted


def source_ids(tokenizer, sentences: Sequence[str], config,
               names: Sequence[str] | None = None) -> list[list[int]]:
    """The encoder input of each sentence: its token ids then EOS, ``config.max_len`` at most.

    A longer sentence (a paragraph or a file on one line) is cut to its first ``max_len - 1``
    tokens and EOS, and a warning on stderr names it and its length: the model has no
    position beyond ``max_len`` (a learned table) or never saw one (training filters long
    pairs out), and self-attention over hundreds of thousands of tokens would take minutes
    and gigabytes for an output that means nothing.  Cutting, not refusing, keeps one
    output per input (a line of ``translate``'s output per line of its input).  Only the first
    ``max_len * CHARS_PER_TOKEN`` characters of a text are encoded, so a megabyte on one line
    costs no more than a sentence at the limit.
    """
    limit = getattr(config, "max_len", None)
    ids, long = [], []
    for i, text in enumerate(sentences):
        head = text if limit is None else text[: limit * CHARS_PER_TOKEN]
        x = tokenizer.encode(head)
        if limit is not None and (len(x) >= limit or len(head) < len(text)):
            name = names[i] if names is not None else f"sentence {i + 1}"
            long.append(f"{name}: {len(text):,} characters"
                        + (f" ({len(x):,} tokens)" if len(head) == len(text) else ""))
            x = x[: limit - 1]
        ids.append(x + [config.eos_id])
    for what in long[:LONG_WARNINGS]:
        print(f"warning: {what}, longer than the model's maximum of {limit} tokens (max_len, "
              f"EOS included): only its first {limit - 1} tokens were translated; put one "
              "sentence per line", file=sys.stderr)
    if len(long) > LONG_WARNINGS:
        print(f"warning: {len(long) - LONG_WARNINGS} more sentences longer than {limit} tokens "
              "were cut the same way", file=sys.stderr)
    return ids


@torch.no_grad()
def translate(model: Transformer, tokenizer, sentences: Sequence[str], *, beam_size: int = 4,
              alpha: float = 0.6, max_tokens: int = 4000, device=None, dtype=None,
              cuda_graph: bool = False, names: Sequence[str] | None = None) -> list[str]:
    """Translate raw ``sentences`` with beam search (Section 6.1 settings by default).

    A sentence longer than the model's maximum (``config.max_len`` tokens, EOS included) is
    cut to it, with a warning on stderr naming it (``names[i]``, default "sentence i+1") and
    its length: see ``source_ids``.  Every sentence still gives one translation.

    ``dtype`` ("bfloat16", "float32" or a ``torch.dtype``; default: the model's own) decodes
    with a copy of the model in that dtype (``runtime.in_dtype``); ``model`` is left as it is.
    ``cuda_graph=True`` (greedy decoding, ``beam_size=1``, on a CUDA device) records each
    batch's decoding step as a CUDA graph and replays it once per token (``greedy_decode``):
    the same outputs, with one launch per token instead of one per kernel (about 1.85x as fast
    for the small model; results/bench/decode_cuda.json).
    """
    if isinstance(sentences, str):
        raise TypeError("sentences must be a list of strings, not a single string")
    device, c = _device(model, device), model.config
    if cuda_graph and beam_size != 1:
        raise ValueError(f"cuda_graph=True records greedy decoding's step; beam search (beam "
                         f"size {beam_size}) is not graphed: use beam size 1 or leave it out")
    if cuda_graph and device.type != "cuda":
        raise ValueError(f"cuda_graph=True needs a CUDA device; decoding runs on {device}: "
                         "leave it out there")
    model = in_dtype(model, dtype)
    ids = source_ids(tokenizer, sentences, c, names)  # tokens + EOS, at most max_len
    batches = padded_batches(ids, max_tokens, c.pad_id, device)
    if beam_size != 1:  # the batches' tails shared (beam_search.py)
        best = beam_search_batches(model, batches, beam_size=beam_size, alpha=alpha)
        return [tokenizer.decode(best[i]) for i in range(len(ids))]
    out: list[str | None] = [None] * len(ids)
    for batch, src in batches:  # greedy: same answer as a beam of one, without the bookkeeping
        lengths = (src != c.pad_id).sum(1)
        hyps = greedy_decode(model, src, max_len=int(lengths.max()) + 50,
                             cuda_graph=cuda_graph).tolist()
        # greedy's limit is the longest source + 50: trim each row to its own + 50
        for i, hyp, n in zip(batch, hyps, lengths.tolist()):
            out[i] = tokenizer.decode(hyp[: n + 50])
    return out


@torch.no_grad()
def evaluate_loss(model: Transformer, dataset, split: str, *, max_tokens: int = 4000,
                  limit: int | None = None, device=None, amp=nullcontext, rank: int = 0,
                  world_size: int = 1) -> dict:
    """Mean label-smoothed loss, NLL and perplexity per target token on ``split``.

    Perplexity is exp(mean cross-entropy) per subword token: no label smoothing, padding
    ignored, EOS counted as a predicted token (Table 3's PPL).  Returns ``{"loss", "nll",
    "ppl", "tokens"}``.  With ``limit``, only the first ``limit`` sentences of
    ``dataset.texts(split)`` count, the ones ``evaluate(limit=...)`` translates (batches come
    sorted by length, so their rows are picked out by ``Batch.indices``).  With several ranks
    each scores its share of the batches (each batch once) and the sums are all-reduced.
    """
    device = _device(model, device)
    sums = torch.zeros(3, dtype=torch.float64, device=device)  # loss, nll, tokens
    # oneDNN's float32 products, unless ``amp`` asks for autocast's lower precision
    with eval_mode(model), packed_linears(model, enabled=amp is nullcontext):
        # every rank scores every world_size-th batch: each batch once, none repeated
        for batch in dataset.batches(split, max_tokens, shuffle=False)[rank::world_size]:
            src, tgt_in, tgt_out = move_batch(batch, device)
            if limit is not None:
                rows = [r for r, i in enumerate(batch.indices) if i < limit]
                if not rows:
                    continue
                src, tgt_in, tgt_out = (t[rows] for t in (src, tgt_in, tgt_out))
            with amp():
                logits = model(src, tgt_in)
                loss = loss_sum(logits, tgt_out, model.config)
                nll = nll_sum(logits.float(), tgt_out, model.config.pad_id)
            n_tokens = (tgt_out != model.config.pad_id).sum()
            sums += torch.stack([loss.double(), nll.double(), n_tokens.double()])
    loss, nll, tokens = all_reduce(sums).tolist()
    tokens = max(tokens, 1.0)
    return {"loss": loss / tokens, "nll": nll / tokens, "ppl": math.exp(min(nll / tokens, 50.0)),
            "tokens": int(tokens)}


def evaluate(model: Transformer, dataset, split: str, *, beam_size: int = 4, alpha: float = 0.6,
             max_tokens: int = 4000, device=None, limit: int | None = None,
             n_samples: int = 5, score_perplexity: bool = True, dtype=None,
             cuda_graph: bool = False) -> dict:
    """Translate ``split`` of ``dataset`` and score it every way we report.

    Returns a dict: ``sacrebleu`` + ``sacrebleu_signature`` (detokenized), ``tokenized_bleu``
    (the paper's metric: compounds split for German targets), ``tokenized_bleu_lc`` (lowercased,
    as Multi30k papers quote), their signatures, ``perplexity`` per subword token,
    ``n_sentences``, ``n_ppl_tokens``, decoding settings and ``samples`` (src, ref, hyp).
    Always also ``exact_match`` (% of outputs equal to the reference), ``chrf`` +
    ``chrf_signature`` (sacrebleu's chrF2), ``ref_mean_words`` (average reference length in
    whitespace words) and ``bleu_meaningful`` (``bleu_is_meaningful``: ``False`` when the
    references average fewer than 4 words, as in the ``numbers`` task, where BLEU-4 is 0 even
    for a perfect model and exact match and chrF are the numbers to read).
    ``limit`` keeps the first ``limit`` sentences (for BLEU and perplexity alike).
    ``score_perplexity=False`` leaves perplexity out (it does not depend on the decoding).
    ``dtype`` is the decoding's (see ``translate``; recorded as ``dtype``); perplexity is
    computed with ``model`` as it is.  ``cuda_graph``: see ``translate``.
    """
    sources, references = dataset.texts(split)
    sources, references = list(sources[:limit]), list(references[:limit])
    hyps = translate(model, dataset.tokenizer, sources, beam_size=beam_size, alpha=alpha,
                     max_tokens=max_tokens, device=device, dtype=dtype, cuda_graph=cuda_graph)
    decoded_in = resolve_dtype(dtype) or model_dtype(model)
    result = {"dataset": getattr(dataset, "name", None), "split": split,
              "n_sentences": len(hyps), "beam_size": beam_size, "alpha": alpha,
              "dtype": str(decoded_in).removeprefix("torch.")}
    result.update(all_bleu(hyps, references, getattr(dataset, "tgt_lang", None)))
    chrf, chrf_signature = chrf_score(hyps, references)
    result.update(exact_match=exact_match(hyps, references), chrf=chrf,
                  chrf_signature=chrf_signature, ref_mean_words=mean_words(references),
                  bleu_meaningful=bleu_is_meaningful(references))
    if score_perplexity:
        scores = evaluate_loss(model, dataset, split, max_tokens=max_tokens, device=device,
                               limit=limit)
        result.update(perplexity=scores["ppl"], n_ppl_tokens=scores["tokens"])
    result["samples"] = [{"src": s, "ref": r, "hyp": h}
                         for s, r, h in zip(sources[:n_samples], references, hyps)]
    return result


# ---------------------------------------------------------------------------------------------
# from a checkpoint file

def checkpoint_and_data(path, *, data_dir=None, device=None,
                        dataset: TranslationDataset | None = None):
    """``(model, dataset)``: a checkpoint's model and the dataset it learnt, rebuilt (or the
    ``dataset`` given) and checked to have the tokenizer the model was trained with."""
    model, tokenizer, state = ckpt.load_model(path, pick_device(device or "auto"))
    info = state.get("data") or {}
    if dataset is None:
        if not info.get("dataset"):
            raise ckpt.CheckpointError(f"checkpoint {path} does not say which dataset it learnt")
        dataset = load_dataset(info["dataset"], info.get("src"), info.get("tgt"),
                               vocab_size=info.get("vocab_size"),
                               data_dir=data_dir or info.get("data_dir"),
                               seed=info.get("seed", 0))
    where = getattr(dataset, "tokenizer_path", None) or f"{dataset.name}'s vocabulary here"
    ckpt.check_tokenizer(state, dataset.tokenizer, where, path, fix=(
        "Pass --data-dir pointing at the data cache the model was trained with (a different "
        "data dir or vocabulary size?)"))
    return model, dataset


def evaluate_checkpoint(path, split=None, *, beam_size=4, alpha=0.6, max_tokens=4000,
                        limit=None, data_dir=None, device=None, dataset=None, dtype=None,
                        cuda_graph=False) -> dict:
    """Load a checkpoint and its dataset and ``evaluate`` it on ``split`` (default: test)."""
    model, dataset = checkpoint_and_data(path, data_dir=data_dir, device=device, dataset=dataset)
    split = dataset.resolve(split or "test")  # the split's own name ("test" may be an alias)
    result = evaluate(model, dataset, split, beam_size=beam_size, alpha=alpha,
                      max_tokens=max_tokens, limit=limit, dtype=dtype, cuda_graph=cuda_graph)
    result["checkpoint"] = str(Path(path))
    return result


def format_scores(result: dict) -> str:
    """The lines the command line prints for an ``evaluate`` result.

    Where BLEU-4 is meaningful: the header, sacreBLEU, tokenized BLEU, chrF2 (when the result
    has it) and perplexity.  Where it is not (``result["bleu_meaningful"]`` is False, e.g. the
    one-word targets of the ``numbers`` task): exact match and chrF2 first, then the BLEU lines
    marked "not meaningful".  Perplexity is left out when the result has none.
    """
    header = (f"{result['dataset']} {result['split']}: {result['n_sentences']} sentences, "
              f"beam {result['beam_size']}, alpha {result['alpha']}"
              + (f", decoded in {result['dtype']}" if result.get("dtype", "float32") != "float32"
                 else ""))
    meaningful = result.get("bleu_meaningful", True)
    note = ""
    if not meaningful:
        words = result.get("ref_mean_words")
        average = f"references average {words:.1f} words" if words is not None else \
            "references too short"
        note = f"(not meaningful: {average}, BLEU-4 needs 4-grams)  "
    bleu = [f"  sacreBLEU      {result['sacrebleu']:6.2f}  {note}{result['sacrebleu_signature']}",
            f"  tokenized BLEU {result['tokenized_bleu']:6.2f}  "
            f"{'(not meaningful, as above)  ' if note else ''}"
            f"{result.get('tokenized_bleu_signature', '')}"]
    other = []
    if not meaningful and "exact_match" in result:
        other.append(f"  exact match    {result['exact_match']:6.2f}  "
                     "(% of outputs identical to the reference)")
    if "chrf" in result:
        other.append(f"  chrF2          {result['chrf']:6.2f}  {result.get('chrf_signature', '')}")
    lines = [header] + (other + bleu if not meaningful else bleu + other)
    if result.get("perplexity") is not None:
        lines.append(f"  perplexity     {result['perplexity']:6.2f}  (per subword token)")
    return "\n".join(lines)
