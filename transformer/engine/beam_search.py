"""Beam search with the GNMT length penalty (Section 6.1).

"We used beam search with a beam size of 4 and length penalty alpha = 0.6 ... We set the maximum
output length during inference to input length + 50, but terminate early when possible."

Finished hypotheses are ranked by (Wu et al., 2016)

    score(Y) = log P(Y | X) / lp(Y),    lp(Y) = ((5 + |Y|) / 6) ** alpha

with |Y| the number of generated tokens, EOS included.  All B source rows are searched at once
as B*K decoder rows (K = beam_size) sharing one ``DecoderCache``, so a step feeds one token per
row; the K beams of a sentence share its encoder-decoder keys and values.  The first step
extends BOS alone (one row per sentence), later ones the K live hypotheses.  At every step, for
each source row:

1. every extension of the K live hypotheses is scored: (K, V) cumulative log-probabilities;
2. the 2K best candidates are kept; those ending in EOS *among the first K* finish: they are
   scored with lp and never extended again;
3. the K best candidates not ending in EOS are the new live beam (cache rows reordered).

A row stops ("terminate early when possible") as soon as

(a) K hypotheses have finished: the beam holds only finished hypotheses, the textbook end of
    beam search (as in fairseq); this also makes ``beam_size=1`` exactly greedy decoding;
(b) no live hypothesis can still beat the best finished one: log-probabilities only fall as
    tokens are added and lp only grows, so a live hypothesis can at best reach
    log P(prefix) / lp(max length), the bound tensor2tensor uses.  This rule never changes the
    answer, it only saves steps; or
(c) its maximum length (source length + 50) is reached: live hypotheses finish without EOS.

Rows that stop leave the batch, so late steps only pay for the rows still searching.  Padding
and BOS are never candidates (their log-probabilities are set to -inf after the softmax, so
scores stay the model's log P(Y | X)); EOS and UNK are.

A batch's last steps often search a handful of sentences (a hypothesis that repeats itself runs
to the length limit), and each of those steps still reads every weight of the model.  So
``beam_search_batches``, which ``translate`` uses, lets batches share their tails: once few of a
batch's sentences are still searching, they join one shared search (``BeamSearch.merge``) with
the remnants of earlier batches, and what were several tails becomes one.  Each sentence's
search is the same as in its own batch; only the company it computes in changes.
"""

from __future__ import annotations

import torch

from ..model import Transformer
from ..model.cache import DecoderCache
from .greedy import never_pad_or_bos
from .onednn import packed_linears
from .runtime import eval_mode

Hypothesis = tuple[list[int], float, float]  # (tokens without BOS/EOS, score, log-probability)


def length_penalty(length, alpha: float):
    """GNMT length penalty lp = ((5 + length) / 6) ** alpha; 1 when length = 1 or alpha = 0."""
    return ((5.0 + length) / 6.0) ** alpha


def best_extensions(project, x: torch.Tensor, config, k: int, rows: int | None = None):
    """The ``k`` most probable next tokens of each decoder row, ``(N, k)`` log-probabilities
    and ``(N, k)`` token ids, from ``x`` (N, ...) whose logits are ``project(x)`` (N, V): the
    model's own log-probabilities, then pad and BOS ruled out.  ``rows`` rows at a time
    (default 128 on a CPU, all at once elsewhere): a piece's (rows, V) logits stay in the CPU's
    cache from the product to the top-k, and are not fresh pages from the system each step."""
    rows = rows or (128 if x.device.type == "cpu" else max(x.size(0), 1))
    values, indices = [], []
    for piece in x.split(rows):
        logp = never_pad_or_bos(project(piece).float().log_softmax(-1), config, inplace=True)
        top = logp.topk(min(k, logp.size(-1)), dim=-1)
        values.append(top.values)
        indices.append(top.indices)
    return torch.cat(values), torch.cat(indices)


class BeamSearch:
    """Beam search over a batch of source sentences, advanced one step at a time (``advance``).

    ``sentences``: a key per row of ``src`` (default 0..B-1); ``finished`` maps each key to its
    finished hypotheses ``(tokens, score, log_prob)``; ``done`` once no sentence is searching.
    ``live`` holds the keys of the sentences still searching, in the order of their rows."""

    def __init__(self, model: Transformer, src: torch.Tensor, sentences=None, beam_size: int = 4,
                 alpha: float = 0.6, max_len_offset: int = 50, max_len: int | None = None,
                 use_cache: bool = True):
        if beam_size < 1:
            raise ValueError(f"beam_size must be >= 1, got {beam_size}")
        if alpha < 0:
            raise ValueError(f"alpha must be >= 0 (the early-stop bound assumes it), got {alpha}")
        c, B = model.config, src.size(0)
        self.model, self.K, self.alpha, self.device = model, beam_size, alpha, src.device
        sentences = list(range(B)) if sentences is None else list(sentences)
        if max_len is None:
            limits = ((src != c.pad_id).sum(1) + max_len_offset).tolist()
        else:
            limits = [max_len] * B
        if c.positional == "learned":  # a learned table has no position beyond max_len - 1
            limits = [min(n, c.max_len) for n in limits]
        self.limit = dict(zip(sentences, limits))  # most tokens a hypothesis may have, EOS too
        self.finished: dict = {key: [] for key in sentences}
        self.live = sentences  # the sentence of each row still searching
        self.step = 0  # tokens generated so far
        self.done = B == 0 or max(limits) < 1

        memory, src_mask = model.encode(src), model.padding_mask(src)  # (B, S, d), (B, 1, 1, S)
        # cached: each sentence's encoder keys/values once, shared by its beams; uncached: the
        # whole prefix every step, against the memory repeated once per hypothesis
        self.cache = model.new_cache(memory, src_mask, rows=B * beam_size,
                                     capacity=max(limits, default=0)) if use_cache else None
        self.memory, self.src_mask = (None, None) if use_cache else (memory, src_mask)
        self.ys = torch.full((B, 1), c.bos_id, dtype=torch.long, device=src.device)  # (n*k, t)
        self.scores = torch.zeros(B, 1, device=src.device)  # (n, k) log P(prefix) of the live
        # hypotheses: k = 1 (BOS alone) at the first step, K afterwards

    def advance(self) -> None:
        """One step: every live hypothesis extended by one token (see the module docstring)."""
        model, c, K, alpha, device = self.model, self.model.config, self.K, self.alpha, self.device
        ys, scores, rows, finished = self.ys, self.scores, self.live, self.finished
        self.step = step = self.step + 1  # = |Y| once this token is added
        n, k = scores.shape
        # a hypothesis's 2K best extensions hold all of its candidates for the 2K best of its
        # sentence: rank within each hypothesis first (k_row), then across its sentence's k
        if self.cache is not None:
            hidden = model.decode_step(ys[:, -1], self.cache, project=False)  # (n*k, d_model)
            top_logp, top_token = best_extensions(model.project, hidden, c, 2 * K)
        else:
            logits = model.decode(ys, self.memory.repeat_interleave(k, 0),
                                  self.src_mask.repeat_interleave(k, 0))[:, -1]  # (n*k, V)
            top_logp, top_token = best_extensions(lambda x: x, logits, c, 2 * K)
        k_row = top_logp.size(1)  # 2K, or V for a vocabulary smaller than that
        cand = (scores.view(-1, 1) + top_logp).view(n, k * k_row)
        top, idx = cand.topk(min(2 * K, k * k_row), dim=1)  # (n, <= 2K) best first
        beam, token = idx // k_row, top_token.view(n, k * k_row).gather(1, idx)
        is_eos = token == c.eos_id  # at most K of them: one EOS per hypothesis

        # live beam: the K best candidates not ending in EOS (a stable sort moves EOS back)
        keep = torch.sort(is_eos.to(torch.uint8), dim=1, stable=True).indices[:, :K]  # (n, K)
        live_scores = top.gather(1, keep)
        origin = (torch.arange(n, device=device)[:, None] * k + beam.gather(1, keep)).view(-1)
        new_ys = torch.cat([ys[origin], token.gather(1, keep).view(-1, 1)], dim=1)
        width = keep.size(1)  # K (fewer only with a vocabulary smaller than K)

        # finished: EOS candidates ranked within the K best; the prefix is ys without BOS
        lp = length_penalty(step, alpha)
        ended = (is_eos[:, :K] & top[:, :K].isfinite()).nonzero().tolist()
        if ended:
            top_list, beam_list = top.tolist(), beam.tolist()
            for r, j in ended:
                logprob = top_list[r][j]
                prefix = ys[r * k + beam_list[r][j], 1:].tolist()
                finished[rows[r]].append((prefix, logprob / lp, logprob))

        done = []
        best_live = live_scores[:, 0].tolist()
        for r, row in enumerate(rows):
            hyps, limit = finished[row], self.limit[row]
            if step >= limit:  # (c) out of length: the live hypotheses finish as they are
                for j, logprob in enumerate(live_scores[r].tolist()):
                    if logprob > float("-inf"):
                        hyps.append((new_ys[r * width + j, 1:].tolist(), logprob / lp, logprob))
                done.append(r)
            elif len(hyps) >= K:  # (a) the beam is full of finished hypotheses
                done.append(r)
            elif hyps and max(h[1] for h in hyps) >= (
                    best_live[r] / length_penalty(limit, alpha)):  # (b) nobody can win
                done.append(r)

        keep_rows = None
        if done:  # drop finished rows from the batch
            alive = sorted(set(range(n)) - set(done))
            if not alive:
                self.live, self.done = [], True
                return
            keep_rows = torch.tensor(alive, device=device)
            block = (keep_rows[:, None] * width + torch.arange(width, device=device)).view(-1)
            self.live = [rows[r] for r in alive]
            origin, new_ys, live_scores = origin[block], new_ys[block], live_scores[keep_rows]
            if self.cache is None:
                self.memory, self.src_mask = self.memory[keep_rows], self.src_mask[keep_rows]
        if self.cache is not None:  # rows follow their hypotheses; leaving sentences take memory
            self.cache.reorder(origin, sentences=keep_rows)
        self.ys, self.scores = new_ys, live_scores

    @classmethod
    def merge(cls, searches: list[BeamSearch]) -> BeamSearch:
        """One search holding the live sentences of ``searches`` (cached ones, at the same step,
        with the same settings), their rows one after the other (``DecoderCache.merge``).  The
        merged search fills the same ``finished`` lists as the searches it came from."""
        first = searches[0]
        if any(s.cache is None or s.step != first.step or s.done or s.K != first.K
               or s.alpha != first.alpha or s.scores.size(1) != first.scores.size(1)
               for s in searches):
            raise ValueError("only live cached searches at the same step and settings merge")
        merged = cls.__new__(cls)
        merged.model, merged.K, merged.alpha, merged.device = (
            first.model, first.K, first.alpha, first.device)
        merged.step, merged.done, merged.memory, merged.src_mask = first.step, False, None, None
        merged.limit, merged.finished, merged.live = {}, {}, []
        for s in searches:
            merged.limit.update(s.limit)
            merged.finished.update(s.finished)  # the same lists: their results fill in
            merged.live += s.live
        merged.ys = torch.cat([s.ys for s in searches])
        merged.scores = torch.cat([s.scores for s in searches])
        merged.cache = DecoderCache.merge([s.cache for s in searches])
        return merged


@torch.no_grad()
def beam_search(model: Transformer, src: torch.Tensor, beam_size: int = 4, alpha: float = 0.6,
                max_len_offset: int = 50, max_len: int | None = None, *,
                return_scores: bool = False, use_cache: bool = True):
    """Translate a batch ``src`` (B, S) (tokens + EOS, right-padded) with beam search.

    Returns the best hypothesis per row, ``list[list[int]]`` without BOS/EOS.  A row may
    generate (EOS included) at most its non-pad source length (its EOS included) +
    ``max_len_offset`` tokens, or ``max_len`` tokens when given.  ``return_scores=True``
    returns instead, per row, up to ``beam_size`` finished hypotheses ``(tokens, score,
    log_prob)``, best first (an n-best list; rule (b) may stop a row before K have finished).
    ``use_cache=False`` feeds the whole prefix every step (slow; a reference for tests).
    """
    with eval_mode(model), packed_linears(model, enabled=use_cache):  # uncached: the reference
        search = BeamSearch(model, src, None, beam_size, alpha, max_len_offset, max_len,
                            use_cache)
        _run(search)
    nbest = [ranked(search.finished[row], beam_size) for row in range(src.size(0))]
    if return_scores:
        return nbest
    return [hyps[0][0] if hyps else [] for hyps in nbest]


@torch.no_grad()
def beam_search_batches(model: Transformer, batches, beam_size: int = 4, alpha: float = 0.6,
                        tail: float = 0.25) -> dict:
    """Beam search over ``batches``, ``(keys, src)`` pairs (``evaluate.padded_batches``), the
    batches' tails shared (see the module docstring): once at most ``tail`` of a batch's
    sentences are still searching, they join the shared search.  ``tail=0`` searches each
    batch alone, as ``beam_search`` does.  The shared search never holds more rows than the
    widest batch did; one that would is finished first.  Returns {key: best hypothesis}."""
    finished, shared, widest = {}, None, 0
    with eval_mode(model), packed_linears(model):
        for keys, src in batches:
            search = BeamSearch(model, src, keys, beam_size, alpha)
            finished.update(search.finished)  # the lists every later step fills in
            widest = max(widest, src.size(0) * beam_size)
            share = tail if isinstance(search.cache, DecoderCache) else 0  # others cannot merge
            while not search.done and (search.step == 0 or len(search.live) > share * len(keys)):
                search.advance()
            if (shared is not None and not search.done
                    and shared.ys.size(0) + search.ys.size(0) > widest):
                _run(shared)  # too wide to take more rows: finished first
            shared = _join(shared, search)
        if shared is not None:
            _run(shared)
    return {key: ranked(hyps, beam_size)[0][0] if hyps else [] for key, hyps in finished.items()}


def ranked(hyps: list[Hypothesis], k: int) -> list[Hypothesis]:
    """The ``k`` best of a sentence's finished hypotheses, best first."""
    return sorted(hyps, key=lambda h: -h[1])[:k]


def _run(search: BeamSearch) -> None:
    while not search.done:
        search.advance()


def _join(a: BeamSearch | None, b: BeamSearch) -> BeamSearch | None:
    """The sentences ``a`` and ``b`` are still searching, as one search (None if none): the one
    behind steps alone until both are at the same step, then they merge."""
    while True:
        if a is None or a.done:
            return None if b.done else b
        if b.done:
            return a
        if a.step == b.step:
            return BeamSearch.merge([a, b])
        behind = a if a.step < b.step else b
        behind.advance()
