"""Token-budget batching (Section 5.1).

"Sentence pairs were batched together by approximate sequence length.  Each training batch
contained a set of sentence pairs containing approximately 25000 source tokens and 25000 target
tokens."  We sort pairs by length (ties broken by a seeded shuffle, so batches differ between
epochs), cut the sorted list greedily into batches whose padded size stays within a budget
(B * S <= max_tokens and B * T <= max_tokens), shuffle the batch order with (seed, epoch), and
deal the batches out to ranks so that every rank gets the same number.

Examples are stored as ragged arrays (``Ragged``: one flat int32 array plus offsets), which
keeps the 4.5 million WMT14 pairs in a few hundred MB instead of many GB of Python lists.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class Batch:
    """One batch.  ``src`` = tokens + EOS; ``tgt_in`` = BOS + tokens (decoder input);
    ``tgt_out`` = tokens + EOS (what the decoder must predict); all padded with pad_id.
    ``indices[r]`` is the position of row r's pair in ``dataset.texts(split)``."""

    src: torch.Tensor  # (B, S) long
    tgt_in: torch.Tensor  # (B, T) long
    tgt_out: torch.Tensor  # (B, T) long
    n_src_tokens: int  # non-pad tokens in src
    n_tgt_tokens: int  # non-pad tokens in tgt_out
    padding_fraction: float  # pad share of src and tgt_out together
    indices: list[int]

    def __len__(self) -> int:
        return self.src.shape[0]

    def to(self, device, non_blocking: bool = False) -> Batch:
        move = lambda t: t.to(device, non_blocking=non_blocking)
        return dataclasses.replace(self, src=move(self.src), tgt_in=move(self.tgt_in),
                                   tgt_out=move(self.tgt_out))


class Ragged:
    """A list of int sequences stored as one flat array plus offsets."""

    def __init__(self, flat: np.ndarray, offsets: np.ndarray):
        self.flat, self.offsets = flat, offsets

    @classmethod
    def from_lists(cls, seqs) -> Ragged:
        lengths = np.fromiter((len(s) for s in seqs), dtype=np.int64, count=len(seqs))
        offsets = np.zeros(len(seqs) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        flat = np.fromiter((t for s in seqs for t in s), dtype=np.int32, count=int(offsets[-1]))
        return cls(flat, offsets)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, i: int) -> np.ndarray:
        return self.flat[self.offsets[i]:self.offsets[i + 1]]

    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    @classmethod
    def concat(cls, parts: list[Ragged]) -> Ragged:
        if not parts:
            return cls.from_lists([])
        lengths = np.concatenate([p.lengths() for p in parts])
        offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        return cls(np.concatenate([p.flat for p in parts]), offsets)


def filter_pairs(src_lengths: np.ndarray, tgt_lengths: np.ndarray, *, max_len: int = 256,
                 max_ratio: float = 3.0) -> tuple[np.ndarray, dict[str, int]]:
    """Indices of the pairs to train on, and how many were dropped for which reason.

    Dropped, each counted under the first reason that applies: ``empty`` (a side has no
    tokens), ``too_long`` (a side needs more than ``max_len`` positions, EOS/BOS included) and
    ``ratio`` (one side over ``max_ratio`` times as long as the other: likely misaligned).
    """
    s, t = np.asarray(src_lengths), np.asarray(tgt_lengths)
    empty = (s == 0) | (t == 0)
    too_long = ~empty & ((s + 1 > max_len) | (t + 1 > max_len))
    ratio = ~empty & ~too_long & (np.maximum(s, t) > max_ratio * np.minimum(s, t))
    keep = ~(empty | too_long | ratio)
    counts = {"total": len(s), "kept": int(keep.sum()), "empty": int(empty.sum()),
              "too_long": int(too_long.sum()), "ratio": int(ratio.sum())}
    return np.flatnonzero(keep), counts


def token_batches(src_lengths, tgt_lengths, max_tokens: int, order) -> list[list[int]]:
    """Cut ``order`` (positions sorted by length) greedily into batches with
    B * max(src_length) <= max_tokens and B * max(tgt_length) <= max_tokens: the batching of
    training, validation and translation (``tgt_lengths`` None: sources only).  A row longer
    than ``max_tokens`` gets a batch of its own."""
    if tgt_lengths is None:
        tgt_lengths = src_lengths
    batches, current, max_s, max_t = [], [], 0, 0
    for i in np.asarray(order, dtype=np.int64).tolist():
        s, t = int(src_lengths[i]), int(tgt_lengths[i])
        n = len(current) + 1
        if current and (n * max(max_s, s) > max_tokens or n * max(max_t, t) > max_tokens):
            batches.append(current)
            current, max_s, max_t = [], 0, 0
        current.append(i)
        max_s, max_t = max(max_s, s), max(max_t, t)
    if current:
        batches.append(current)
    return batches


def _pad(seqs: Ragged, rows: np.ndarray, pad_id: int, first: int | None = None,
         last: int | None = None) -> np.ndarray:
    """Rows ``rows`` of ``seqs`` as one (B, longest + 1) array: each sequence preceded by
    ``first`` or followed by ``last`` (one of the two), then right-padded with ``pad_id``."""
    start = seqs.offsets[rows]
    lengths = seqs.offsets[rows + 1] - start
    longest = int(lengths.max())
    out = np.full((len(rows), longest + 1), pad_id, dtype=np.int64)
    cols = np.arange(longest)
    real = cols < lengths[:, None]  # (B, longest): where the tokens go
    shift = 0 if first is None else 1
    out[:, shift:shift + longest][real] = seqs.flat[(start[:, None] + cols)[real]]
    if first is not None:
        out[:, 0] = first
    if last is not None:
        out[np.arange(len(rows)), lengths] = last
    return out


def collate(rows, src: Ragged, tgt: Ragged, pad_id: int = 0, bos_id: int = 1,
            eos_id: int = 2) -> Batch:
    """Pad pairs ``rows`` of (src, tgt) into a :class:`Batch`."""
    rows = np.asarray(rows, dtype=np.int64)
    src_arr = _pad(src, rows, pad_id, last=eos_id)  # tokens + EOS
    tgt_in = _pad(tgt, rows, pad_id, first=bos_id)  # BOS + tokens
    tgt_out = _pad(tgt, rows, pad_id, last=eos_id)  # tokens + EOS
    n_src = int((src_arr != pad_id).sum())
    n_tgt = int((tgt_out != pad_id).sum())
    return Batch(torch.from_numpy(src_arr), torch.from_numpy(tgt_in), torch.from_numpy(tgt_out),
                 n_src, n_tgt, 1.0 - (n_src + n_tgt) / (src_arr.size + tgt_out.size),
                 rows.tolist())


def make_batches(src: Ragged, tgt: Ragged, max_tokens: int, *, subset=None,
                 shuffle: bool = True, seed: int = 0, epoch: int = 0, rank: int = 0,
                 world_size: int = 1, pad_id: int = 0, bos_id: int = 1,
                 eos_id: int = 2) -> list[Batch]:
    """This rank's batches of the pairs (src[i], tgt[i]) for i in ``subset`` (default: all);
    ``Batch.indices`` holds these i.  Deterministic in all arguments.

    Every rank gets ``ceil(n_batches / world_size)`` batches: if the count does not divide,
    the first few batches are dealt out twice (as ``DistributedSampler`` does) - nothing is lost.
    With ``shuffle=False`` batches come in order of length, with no randomness.
    """
    if not 0 <= rank < world_size:
        raise ValueError(f"rank must be in [0, world_size={world_size}), got {rank}")
    if len(src) != len(tgt):
        raise ValueError(f"{len(src)} sources but {len(tgt)} targets")
    rows = np.arange(len(src)) if subset is None else np.asarray(subset, dtype=np.int64)
    if len(rows) == 0:
        return []
    src_len, tgt_len = src.lengths() + 1, tgt.lengths() + 1  # + EOS (src) / BOS or EOS (tgt)
    longest = int(max(src_len[rows].max(), tgt_len[rows].max()))
    if longest > max_tokens:
        raise ValueError(f"a pair needs {longest} positions, more than max_tokens={max_tokens}; "
                         "raise max_tokens or lower max_len")
    rng = np.random.default_rng([seed, epoch])
    order = rows[rng.permutation(len(rows))] if shuffle else rows
    order = order[np.lexsort((tgt_len[order], src_len[order]))]  # stable: ties keep the shuffle
    chunks = token_batches(src_len, tgt_len, max_tokens, order)
    if shuffle:
        chunks = [chunks[i] for i in rng.permutation(len(chunks))]
    if world_size > 1:
        per_rank = -(-len(chunks) // world_size)
        chunks = (chunks * world_size)[:per_rank * world_size][rank::world_size]
    return [collate(rows, src, tgt, pad_id, bos_id, eos_id) for rows in chunks]


def batch_stats(src: Ragged, tgt: Ragged, max_tokens: int, subset=None) -> dict:
    """What ``make_batches(src, tgt, max_tokens, subset=subset)`` would make, without making
    it: ``{"batches", "src_tokens", "tgt_tokens", "longest"}`` (real tokens, EOS included;
    ``longest``: the most positions one pair needs, the smallest usable ``max_tokens``).
    The same with or without shuffling: batches are cut from pairs sorted by length."""
    rows = np.arange(len(src)) if subset is None else np.asarray(subset, dtype=np.int64)
    src_len, tgt_len = src.lengths() + 1, tgt.lengths() + 1
    order = rows[np.lexsort((tgt_len[rows], src_len[rows]))]
    longest = int(max(src_len[rows].max(), tgt_len[rows].max())) if len(rows) else 0
    n = len(token_batches(src_len, tgt_len, max_tokens, order)) if longest <= max_tokens else 0
    return {"batches": n, "src_tokens": int(src_len[rows].sum()),
            "tgt_tokens": int(tgt_len[rows].sum()), "longest": longest}


def padding_fraction(batches: list[Batch]) -> float:
    """Share of pad positions over all ``batches`` (sources and targets together)."""
    real = sum(b.n_src_tokens + b.n_tgt_tokens for b in batches)
    total = sum(b.src.numel() + b.tgt_out.numel() for b in batches)
    return 1.0 - real / total if total else 0.0
