"""Token-budget batching: layout, budget, determinism, sharding, filtering (Section 5.1)."""

import random

import numpy as np
import pytest
import torch

from transformer.data import (
    Batch,
    Ragged,
    SubwordTokenizer,
    TranslationDataset,
    filter_pairs,
    make_batches,
    padding_fraction,
)
from transformer.data.batching import collate, token_batches

PAD, BOS, EOS = 0, 1, 2


def _random_pairs(n=500, seed=0, max_len=40):
    rng = random.Random(seed)
    src = [[rng.randrange(4, 50) for _ in range(rng.randint(1, max_len))] for _ in range(n)]
    tgt = [[rng.randrange(4, 50) for _ in range(rng.randint(1, max_len))] for _ in range(n)]
    return Ragged.from_lists(src), Ragged.from_lists(tgt), src, tgt


def test_ragged_round_trip():
    seqs = [[5, 6], [], [7, 8, 9]]
    r = Ragged.from_lists(seqs)
    assert len(r) == 3 and [r[i].tolist() for i in range(3)] == seqs
    assert r.lengths().tolist() == [2, 0, 3]


def test_batch_layout():
    src, tgt = Ragged.from_lists([[5, 6, 7], [8]]), Ragged.from_lists([[9], [10, 11]])
    (batch,) = make_batches(src, tgt, 100, shuffle=False)
    assert isinstance(batch, Batch) and batch.src.dtype == torch.long
    rows = dict(zip(batch.indices, range(2)))
    assert batch.src[rows[0]].tolist() == [5, 6, 7, EOS]
    assert batch.src[rows[1]].tolist() == [8, EOS, PAD, PAD]
    assert batch.tgt_in[rows[1]].tolist() == [BOS, 10, 11]
    assert batch.tgt_out[rows[1]].tolist() == [10, 11, EOS]
    assert batch.tgt_in[rows[0]].tolist() == [BOS, 9, PAD]
    assert batch.tgt_out[rows[0]].tolist() == [9, EOS, PAD]
    assert (batch.n_src_tokens, batch.n_tgt_tokens) == (6, 5)
    assert batch.padding_fraction == pytest.approx(1 - 11 / (8 + 6))
    assert batch.to("cpu").src.equal(batch.src) and len(batch) == 2


@pytest.mark.parametrize("max_tokens", [41, 200, 1000])
def test_budget_respected_and_every_pair_once(max_tokens):
    src, tgt, src_lists, tgt_lists = _random_pairs()
    batches = make_batches(src, tgt, max_tokens, seed=1)
    seen = []
    for b in batches:
        assert b.src.numel() <= max_tokens and b.tgt_in.numel() <= max_tokens
        for row, i in enumerate(b.indices):
            n = len(src_lists[i])
            assert b.src[row, :n].tolist() == src_lists[i] and b.src[row, n] == EOS
            assert b.tgt_out[row, :len(tgt_lists[i])].tolist() == tgt_lists[i]
        seen += b.indices
    assert sorted(seen) == list(range(len(src)))


def test_length_bucketing_reduces_padding():
    rng = random.Random(0)
    src_lists = [[7] * rng.randint(1, 60) for _ in range(2000)]
    tgt_lists = [[8] * (len(s) + rng.randint(0, 3)) for s in src_lists]  # like translations
    src, tgt = Ragged.from_lists(src_lists), Ragged.from_lists(tgt_lists)
    bucketed = padding_fraction(make_batches(src, tgt, 1000))
    order = np.random.default_rng(0).permutation(len(src))
    unsorted = [collate(rows, src, tgt)
                for rows in token_batches(src.lengths() + 1, tgt.lengths() + 1, 1000, order)]
    assert bucketed < 0.1 < padding_fraction(unsorted)


def test_deterministic_in_seed_and_epoch():
    src, tgt, *_ = _random_pairs()
    ids = lambda bs: [b.indices for b in bs]
    a = make_batches(src, tgt, 300, seed=0, epoch=0)
    assert ids(a) == ids(make_batches(src, tgt, 300, seed=0, epoch=0))
    assert ids(a) != ids(make_batches(src, tgt, 300, seed=0, epoch=1))
    assert ids(a) != ids(make_batches(src, tgt, 300, seed=1, epoch=0))
    plain = make_batches(src, tgt, 300, shuffle=False)
    assert ids(plain) == ids(make_batches(src, tgt, 300, shuffle=False, epoch=5))
    widths = [b.src.shape[1] for b in plain]
    assert widths == sorted(widths)  # unshuffled: shortest first


@pytest.mark.parametrize("world_size", [2, 3, 7])
def test_sharding_equal_counts_nothing_lost(world_size):
    src, tgt, *_ = _random_pairs(300)
    full = make_batches(src, tgt, 250, seed=3, epoch=2)
    shards = [make_batches(src, tgt, 250, seed=3, epoch=2, rank=r, world_size=world_size)
              for r in range(world_size)]
    assert len({len(s) for s in shards}) == 1
    assert len(shards[0]) == -(-len(full) // world_size)
    covered = {i for s in shards for b in s for i in b.indices}
    assert covered == set(range(len(src)))
    with pytest.raises(ValueError):
        make_batches(src, tgt, 250, rank=world_size, world_size=world_size)


def test_pair_longer_than_budget_is_an_error():
    src, tgt = Ragged.from_lists([[5] * 30]), Ragged.from_lists([[6] * 3])
    with pytest.raises(ValueError, match="max_tokens"):
        make_batches(src, tgt, 20)


def test_filter_pairs_counts():
    s = np.array([0, 5, 300, 5, 2, 10])
    t = np.array([4, 0, 10, 40, 3, 12])
    kept, counts = filter_pairs(s, t, max_len=256, max_ratio=3.0)
    assert kept.tolist() == [4, 5]
    assert counts == {"total": 6, "kept": 2, "empty": 2, "too_long": 1, "ratio": 1}


def test_dataset_filters_train_only_and_keeps_references():
    train_src = ["ein Hund", "", "eine Katze", "ja " * 40, "zwei Hunde"]
    train_tgt = ["a dog", "a cat", "", "yes", "two dogs"]
    val = (["ein Hund", ""], ["a dog", "nothing"])
    tok = SubwordTokenizer.train(train_src + train_tgt, 100)
    ds = TranslationDataset.from_texts("toy", "de", "en", tok,
                                       {"train": (train_src, train_tgt), "val": val},
                                       max_ratio=3.0)
    assert ds.texts("train") == (train_src, train_tgt)  # texts are never filtered
    assert ds.kept_indices("train") == [0, 4]
    assert ds.filter_report["train"] == {"total": 5, "kept": 2, "empty": 2, "too_long": 0,
                                         "ratio": 1}
    assert ds.examples("train") == [(tok.encode(train_src[i]), tok.encode(train_tgt[i]))
                                    for i in (0, 4)]
    batches = ds.batches("train", 1000, shuffle=False)
    assert sorted(i for b in batches for i in b.indices) == [0, 4]
    assert len(ds.examples("val")) == 2 and ds.filter_report["val"]["kept"] == 2
    (vb,) = ds.batches("val", 1000, shuffle=False)
    row = vb.indices.index(1)
    assert vb.src[row, 0] == tok.eos_id  # an empty source is just EOS
    with pytest.raises(ValueError, match="no split"):
        ds.texts("test")
