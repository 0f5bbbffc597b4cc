"""Beam search (Section 6.1): agrees with greedy at beam 1, with itself with and without the cache,
never extends finished hypotheses, ranks by the GNMT length penalty, and beats greedy."""

import itertools
import math
import time
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from transformer import Transformer, TransformerConfig, greedy_decode
from transformer.engine.beam_search import (
    BeamSearch,
    beam_search,
    beam_search_batches,
    best_extensions,
    length_penalty,
)

PAD, BOS, EOS, A, B, C = range(6)


class MarkovModel(nn.Module):
    """A stand-in 'model' whose next-token distribution depends on the last token only, so the
    probability of any output is known by hand.  Records every prefix it is asked to extend."""

    def __init__(self, table: dict[int, dict[int, float]], vocab: int = 6):
        super().__init__()
        self.config = SimpleNamespace(pad_id=PAD, bos_id=BOS, eos_id=EOS, positional="sinusoidal",
                                      max_len=1024)
        probs = torch.full((vocab, vocab), 1e-12)
        for prev, row in table.items():
            for tok, p in row.items():
                probs[prev, tok] = p
        self.register_buffer("logp", probs.log())
        self.prefixes: list[list[int]] = []
        self.calls = 0

    def encode(self, src):
        return torch.zeros(src.size(0), src.size(1), 1)

    def padding_mask(self, src):
        return (src != PAD)[:, None, None, :]

    def new_cache(self, memory, src_mask, rows=None, capacity=64, compile=False):
        # nothing to keep: the next token depends on the last one only
        return SimpleNamespace(static=False, reorder=lambda index, sentences=None: None)

    def decode_step(self, tokens, cache, project=True):  # cached: the latest token of each row
        self.calls += 1
        return self.logp[tokens]  # (N, V): already the scores, so project is the identity

    def project(self, x):
        return x

    def decode(self, tgt_in, memory, src_mask):  # the uncached path: every prefix in full
        self.calls += 1
        self.prefixes += tgt_in.tolist()
        return self.logp[tgt_in]  # (B, T, V)

    def log_prob(self, tokens: list[int]) -> float:
        seq = [BOS, *tokens, EOS]
        return sum(self.logp[a, b].item() for a, b in zip(seq, seq[1:]))


# greedy takes A then C (0.5 * 0.4 = 0.20); the better answer is B (0.4 * 0.9 = 0.36)
TRAP = {BOS: {A: 0.5, B: 0.4, EOS: 0.1}, A: {C: 0.4, EOS: 0.3, A: 0.15, B: 0.15},
        B: {EOS: 0.9, A: 0.05, C: 0.05}, C: {EOS: 1.0}}
# alpha decides: [] (0.3, |Y| = 1) beats [A] (0.7 * 0.4 = 0.28, |Y| = 2) only without a penalty
SHORT_OR_LONG = {BOS: {EOS: 0.3, A: 0.7}, A: {EOS: 0.4, A: 0.3, B: 0.3}, B: {EOS: 1.0}}
SRC = torch.tensor([[A, B, EOS], [C, EOS, PAD]])


def best_by_enumeration(model: MarkovModel, alpha: float, max_tokens: int = 6):
    """Exhaustive search over every output of up to ``max_tokens`` tokens."""
    outputs = (list(y) for n in range(max_tokens) for y in itertools.product((A, B, C), repeat=n))
    return max(outputs, key=lambda y: model.log_prob(y) / length_penalty(len(y) + 1, alpha))


def test_length_penalty_formula():
    assert length_penalty(1, 0.6) == 1.0
    assert length_penalty(7, 0.6) == pytest.approx(2**0.6)
    assert length_penalty(30, 0.0) == 1.0
    assert length_penalty(10, 0.6) > length_penalty(9, 0.6)


def test_beam_escapes_the_greedy_trap():
    model = MarkovModel(TRAP)
    assert greedy_decode(model, SRC, max_len=10)[0].tolist()[:3] == [A, C, EOS]
    assert beam_search(model, SRC, beam_size=1, alpha=0.0, max_len=10)[0] == [A, C]
    assert beam_search(model, SRC, beam_size=2, alpha=0.0, max_len=10) == [[B], [B]]


@pytest.mark.parametrize("alpha,expected", [(0.0, []), (1.0, [A])])
def test_length_penalty_decides_as_the_formula_says(alpha, expected):
    model = MarkovModel(SHORT_OR_LONG)
    assert best_by_enumeration(model, alpha) == expected
    assert beam_search(model, SRC, beam_size=4, alpha=alpha)[0] == expected


@pytest.mark.parametrize("table", [TRAP, SHORT_OR_LONG])
def test_scores_and_no_extension_of_finished_hypotheses(table):
    model = MarkovModel(table)
    nbest = beam_search(model, SRC, beam_size=3, alpha=0.6, max_len=8, return_scores=True,
                        use_cache=False)  # uncached: the model sees every full prefix
    assert all(EOS not in prefix for prefix in model.prefixes), "a finished one was extended"
    for hyps in nbest:
        assert 1 <= len(hyps) <= 3
        assert [h[1] for h in hyps] == sorted((h[1] for h in hyps), reverse=True)
        for tokens, score, logprob in hyps:
            assert EOS not in tokens and BOS not in tokens
            assert logprob == pytest.approx(model.log_prob(tokens), abs=1e-4)
            assert score == pytest.approx(logprob / length_penalty(len(tokens) + 1, 0.6))


def test_max_length_and_early_stop():
    never_ends = MarkovModel({BOS: {A: 1.0}, A: {A: 0.9, B: 0.1}, B: {A: 1.0}})
    src = torch.tensor([[A, B, C, EOS], [A, EOS, PAD, PAD]])
    out = beam_search(never_ends, src, beam_size=2, max_len_offset=5)
    assert [len(y) for y in out] == [4 + 5, 2 + 5]  # non-pad source length + offset
    quick = MarkovModel(TRAP)
    beam_search(quick, src, beam_size=4, max_len_offset=50)
    assert quick.calls <= 4  # every row stopped long before 54 steps


def test_restores_training_mode():
    model = MarkovModel(TRAP).train()
    beam_search(model, SRC, beam_size=2)
    assert model.training


def random_model(seed=0, **kw):
    torch.manual_seed(seed)
    config = TransformerConfig.from_preset("tiny", src_vocab_size=24, tgt_vocab_size=24, **kw)
    return Transformer(config).eval()


def random_src(n=5, s=7, seed=0):
    g = torch.Generator().manual_seed(seed)
    src = torch.randint(4, 24, (n, s), generator=g)
    lengths = torch.randint(2, s + 1, (n,), generator=g)
    src[torch.arange(s) >= lengths[:, None]] = PAD
    src[torch.arange(n), lengths - 1] = EOS
    return src


def strip(row: list[int]) -> list[int]:
    return row[: row.index(EOS)] if EOS in row else row


@pytest.mark.parametrize("kw,boost", [({}, 8), ({"positional": "learned", "norm_first": True}, 16)])
def test_beam_one_is_greedy(kw, boost):
    model = random_model(**kw)
    with torch.no_grad():  # make EOS likely, so some rows end early and some do not
        model.tgt_embed.weight[EOS] *= boost
    src = random_src()
    greedy = [strip(r) for r in greedy_decode(model, src, max_len=12).tolist()]
    assert any(len(g) < 12 for g in greedy) and any(len(g) == 12 for g in greedy)
    assert beam_search(model, src, beam_size=1, max_len=12) == greedy


def test_cached_equals_uncached():
    model, src = random_model(1), random_src(seed=1)
    with torch.no_grad():
            model.tgt_embed.weight[EOS] *= 3  # a mix of early ends and full-length outputs
    cached = beam_search(model, src, beam_size=4, max_len=10, return_scores=True)
    uncached = beam_search(model, src, beam_size=4, max_len=10, return_scores=True,
                           use_cache=False)
    assert [[h[0] for h in hyps] for hyps in cached] == [[h[0] for h in hyps] for hyps in uncached]
    for hc, hu in zip(cached, uncached):
        assert [h[1] for h in hc] == pytest.approx([h[1] for h in hu], abs=1e-4)


@pytest.mark.parametrize("tail,merges", [(0.0, False), (0.5, True), (1.0, False)])
def test_batches_sharing_their_tails_find_what_each_batch_finds_alone(tail, merges, monkeypatch):
    """``beam_search_batches`` (what ``translate`` runs): every sentence gets what
    ``beam_search`` gives it in its own batch.  With ``tail=0.5`` the batches' remnants merge,
    sources of different lengths among them; with 0 no batch shares; with 1 every batch hands
    over whole after one step, and two would hold more rows than the widest batch (5 sentences
    x 4 beams), so none merge."""
    model = random_model(1)
    with torch.no_grad():
        model.tgt_embed.weight[EOS] *= 3  # a mix of early ends and full-length outputs
    batches = [(list(range(5 * i, 5 * i + 5)), random_src(n=5, s=s, seed=i))
               for i, s in enumerate((9, 7, 5, 7))]
    alone = {}
    for keys, src in batches:
        alone.update(zip(keys, beam_search(model, src, beam_size=4)))
    merged_rows, merge = [], BeamSearch.merge
    monkeypatch.setattr(BeamSearch, "merge", classmethod(
        lambda cls, searches: merged_rows.append(sum(s.ys.size(0) for s in searches))
        or merge(searches)))
    assert beam_search_batches(model, iter(batches), beam_size=4, tail=tail) == alone
    assert (len(merged_rows) > 0) == merges and max(merged_rows, default=0) <= 20


def test_only_live_cached_searches_at_one_step_merge():
    model, src = random_model(), random_src()
    with torch.no_grad():
        a, b = BeamSearch(model, src), BeamSearch(model, src[:2], sentences=[10, 11])
        a.advance()
        with pytest.raises(ValueError, match="same step"):
            BeamSearch.merge([a, b])
        b.advance()
        merged = BeamSearch.merge([a, b])
        assert merged.live == [*range(5), 10, 11] and merged.ys.size(0) == 7 * 4
        uncached = BeamSearch(model, src, use_cache=False)
        uncached.advance()
        with pytest.raises(ValueError, match="cached"):
            BeamSearch.merge([a, uncached])


def sequence_score(model, src, outputs, alpha):
    """Length-normalised log P(y + EOS | x) of each output, by one teacher-forced pass."""
    scores = []
    for i, y in enumerate(outputs):
        tgt = torch.tensor([[BOS, *y, EOS]])
        logp = model(src[i : i + 1], tgt[:, :-1]).log_softmax(-1)
        logprob = logp.gather(-1, tgt[:, 1:, None]).sum().item()
        scores.append(logprob / length_penalty(len(y) + 1, alpha))
    return scores


@pytest.fixture(scope="module")
def half_trained_copy_model():
    """A tiny copy-task model, trained briefly so that it is good but not sure of itself."""
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    config = TransformerConfig(src_vocab_size=14, tgt_vocab_size=14, n_layers=2, d_model=32,
                               d_ff=64, n_heads=4, dropout=0.0, max_len=64)
    model = Transformer(config)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3, betas=(0.9, 0.98), eps=1e-9)
    start = time.perf_counter()
    for _ in range(120):
        src = torch.randint(4, 14, (64, 8), generator=g)
        src[:, -1] = EOS
        tgt = torch.cat([torch.full((64, 1), BOS), src], dim=1)
        loss = F.cross_entropy(model(src, tgt[:, :-1]).flatten(0, 1), tgt[:, 1:].flatten())
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert time.perf_counter() - start < 30
    return model.eval()


def test_beam_scores_at_least_greedy_on_trained_model(half_trained_copy_model):
    model = half_trained_copy_model
    src = torch.randint(4, 14, (32, 8), generator=torch.Generator().manual_seed(7))
    src[:, -1] = EOS
    with torch.no_grad():
        greedy = [strip(r) for r in greedy_decode(model, src, max_len=20).tolist()]
        beam = beam_search(model, src, beam_size=4, alpha=0.6, max_len=20)
        g_scores = sequence_score(model, src, greedy, 0.6)
        b_scores = sequence_score(model, src, beam, 0.6)
    assert greedy != beam, "the model is too sure of itself to test anything"
    assert all(b >= g - 1e-4 for b, g in zip(b_scores, g_scores))
    copied = sum(y == src[i, :-1].tolist() for i, y in enumerate(beam))
    assert copied >= sum(y == src[i, :-1].tolist() for i, y in enumerate(greedy))
    assert math.fsum(b_scores) >= math.fsum(g_scores)


# ---- pad and BOS are never next tokens ---------------------------------------------------------

# the model prefers pad, then BOS, at every step; among the rest greedy takes A every time
LOVES_PAD = {BOS: {PAD: 0.5, BOS: 0.3, A: 0.15, EOS: 0.05},
             A: {PAD: 0.4, BOS: 0.3, A: 0.2, EOS: 0.1}, PAD: {PAD: 0.9, EOS: 0.1}}


def test_markov_model_that_prefers_pad_and_bos_gets_neither():
    model = MarkovModel(LOVES_PAD)
    greedy = greedy_decode(model, SRC, max_len=3)
    assert greedy.tolist() == [[A, A, A]] * 2  # the best token that is neither pad nor BOS
    assert beam_search(model, SRC, beam_size=1, alpha=0.0, max_len=3) == [[A, A, A]] * 2
    nbest = beam_search(model, SRC, beam_size=4, alpha=0.0, max_len=3, return_scores=True)
    for hyps in nbest:
        assert hyps and all(PAD not in t and BOS not in t for t, _, _ in hyps)
        for tokens, _, logprob in hyps:  # scores stay the model's own log-probabilities
            seq = [BOS, *tokens] + ([EOS] if len(tokens) < 3 else [])
            expected = sum(model.logp[a, b].item() for a, b in zip(seq, seq[1:]))
            assert logprob == pytest.approx(expected, abs=1e-4)


def biased_model(seed=0):
    """A random untied model whose output layer gets a bias making pad (then BOS) the argmax at
    every position, and EOS likelier, so that some outputs end early."""
    model = random_model(seed, share_embeddings=False)
    old = model.generator
    model.generator = nn.Linear(old.in_features, old.out_features, bias=True)
    with torch.no_grad():
        model.generator.weight.copy_(old.weight)
        model.generator.weight[EOS] *= 8
        model.generator.bias.zero_()
        model.generator.bias[PAD], model.generator.bias[BOS] = 60.0, 50.0
    return model.eval()


def assert_no_pad_or_bos_before_eos(rows):
    for row in rows:
        generated = strip(row)
        assert PAD not in generated and BOS not in generated, row
        if EOS in row:
            assert all(t == PAD for t in row[row.index(EOS) + 1:])  # greedy pads after EOS


@pytest.mark.parametrize("use_cache", [True, False])
def test_decoders_never_emit_pad_or_bos(use_cache):
    model, src = biased_model(), random_src()
    with torch.no_grad():
        logits = model(src, torch.full((src.size(0), 1), BOS))
    assert (logits.argmax(-1) == PAD).all()  # unmasked, pad would win every step
    greedy = greedy_decode(model, src, max_len=12, use_cache=use_cache).tolist()
    assert_no_pad_or_bos_before_eos(greedy)
    assert any(len(strip(g)) < 12 for g in greedy) and any(EOS not in g for g in greedy)
    beam1 = beam_search(model, src, beam_size=1, max_len=12, use_cache=use_cache)
    assert beam1 == [strip(g) for g in greedy]  # beam 1 is still greedy
    nbest = beam_search(model, src, beam_size=4, max_len=12, return_scores=True,
                        use_cache=use_cache)
    for hyps in nbest:
        assert hyps
        assert_no_pad_or_bos_before_eos([tokens for tokens, _, _ in hyps])
        assert all(math.isfinite(score) for _, score, _ in hyps)


@pytest.mark.parametrize("rows", [1, 3, 128])
def test_best_extensions_in_pieces_equal_all_rows_at_once(rows):
    """Beam search scores the extensions of its rows ``rows`` at a time on a CPU: the same
    top tokens and log-probabilities as one (N, V) softmax, pad and BOS never among them."""
    torch.manual_seed(0)
    config = TransformerConfig.from_preset("tiny", src_vocab_size=50, tgt_vocab_size=50)
    model = Transformer(config).eval()
    hidden = torch.randn(10, config.d_model)
    with torch.no_grad():
        logp = model.project(hidden).log_softmax(-1)
        logp[:, [config.pad_id, config.bos_id]] = float("-inf")
        expected = logp.topk(8, dim=-1)
        values, tokens = best_extensions(model.project, hidden, config, 8, rows=rows)
    torch.testing.assert_close(values, expected.values)
    assert torch.equal(tokens, expected.indices)
    assert not torch.isin(tokens, torch.tensor([config.pad_id, config.bos_id])).any()
