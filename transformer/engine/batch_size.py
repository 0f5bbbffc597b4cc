"""How one optimizer step's tokens are split over ranks and micro-batches (Section 5.1).

"Each training batch contained a set of sentence pairs containing approximately 25000 source
tokens and 25000 target tokens."  That is the batch of one optimizer *step*, whatever the
number of GPUs: with W ranks, each contributes ``accum`` micro-batches of about
``25000 / (W * accum)`` target tokens.  ``choose_batch_size`` picks ``accum`` (as few as the
memory cap ``max_tokens`` allows) and the per-micro-batch token budget that gives that size,
measured on the corpus through ``mean_tokens(budget)``:

    world 1, cap 8192:  accum 5, budget ~8000  -> 5 x 5000  = 25000 target tokens per step
    world 8, cap 8192:  accum 1, budget ~5200  -> 8 x 3125  = 25000
    world 64, cap 8192: accum 1, budget ~650   -> 64 x 390  = 25000

A budget counts source and target positions each, padding included (``make_batches``), so a
micro-batch holds fewer real target tokens than its budget; the ratio is measured, not assumed.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

TOLERANCE = 0.10  # a batch size further than this from its target says so


@dataclass
class BatchSize:
    """The batch of one step: ``world_size`` ranks x ``accum`` micro-batches of at most
    ``max_tokens`` positions, about ``expected`` target tokens in all (``target``: asked for;
    None for one micro-batch of ``max_tokens`` per step and rank)."""

    target: int | None
    world_size: int
    accum: int
    max_tokens: int
    expected: float

    @property
    def off_by(self) -> float:
        """Relative distance of the expected batch from the target (0 without a target)."""
        return abs(self.expected - self.target) / self.target if self.target else 0.0

    def warning(self) -> str | None:
        if self.off_by <= TOLERANCE:
            return None
        return (f"warning: a step will hold about {self.expected:,.0f} target tokens, "
                f"{100 * self.off_by:.0f}% off the {self.target:,} asked for (--tokens-per-step)"
                f": {self.world_size} rank(s) x {self.accum} micro-batch(es) of <= "
                f"{self.max_tokens} tokens is the closest this corpus allows")

    def describe(self) -> str:
        return (f"{self.world_size} rank(s) x {self.accum} micro-batch(es) of <= "
                f"{self.max_tokens} tokens = about {self.expected:,.0f} target tokens per step"
                + (f" (asked: {self.target:,})" if self.target else ""))


def choose_batch_size(target: int | None, world_size: int, max_tokens: int,
                      mean_tokens: Callable[[int], float], min_tokens: int = 1) -> BatchSize:
    """The batch closest to ``target`` target tokens per step over ``world_size`` ranks.

    ``mean_tokens(budget)`` is the mean number of target tokens of a micro-batch built with
    that budget; ``max_tokens`` is the largest budget that fits in memory; ``min_tokens`` the
    smallest usable one (the longest pair).  Without a ``target``, each rank takes one
    micro-batch of ``max_tokens`` per step.
    """
    if not target:
        return BatchSize(None, world_size, 1, max_tokens, world_size * mean_tokens(max_tokens))
    per_rank = target / world_size
    full = mean_tokens(max_tokens)
    # as few micro-batches as the cap allows (1% slack: no extra micro-batch for rounding)
    accum = max(1, math.ceil(per_rank / full - 0.01))
    want, budget = per_rank / accum, max_tokens
    for _ in range(4):  # the fill ratio changes a little with the budget: refine it
        if abs(mean_tokens(budget) - want) <= 0.01 * want:
            break
        budget = round(budget * want / mean_tokens(budget))
        budget = min(max_tokens, max(min_tokens, budget))
    return BatchSize(target, world_size, accum, budget,
                     world_size * accum * mean_tokens(budget))


def measured_batch_size(dataset, target: int | None, world_size: int,
                        max_tokens: int) -> BatchSize:
    """``choose_batch_size`` with the fill of micro-batches measured on ``dataset``'s training
    split, and no budget below its longest pair."""
    longest = dataset.batch_stats("train", max_tokens)["longest"]
    return choose_batch_size(target, world_size, max_tokens, corpus_mean_tokens(dataset),
                             min_tokens=longest)


def corpus_mean_tokens(dataset, split: str = "train") -> Callable[[int], float]:
    """``mean_tokens(budget)`` measured on ``dataset`` (cached per budget)."""
    cache: dict[int, float] = {}

    def mean_tokens(budget: int) -> float:
        if budget not in cache:
            stats = dataset.batch_stats(split, budget)
            cache[budget] = stats["tgt_tokens"] / max(stats["batches"], 1)
        return cache[budget]

    return mean_tokens
