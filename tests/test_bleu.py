"""BLEU (Section 6.1, Table 2): our wrappers give sacrebleu's own numbers, and the tokenized
variants prepare text as tensor2tensor's get_ende_bleu.sh does."""

import math

import pytest
import sacrebleu

from transformer.engine.bleu import (
    all_bleu,
    compound_split,
    sacrebleu_score,
    tokenize,
    tokenized_bleu,
)

REFS = ["The cat sat on the mat today.", "A well-known man rides a bike."]


def test_perfect_hypothesis_scores_100():
    score, signature = sacrebleu_score(REFS, REFS)
    assert score == pytest.approx(100.0)
    assert "tok:13a" in signature and "case:mixed" in signature and "nrefs:1" in signature
    for kw in ({}, {"split_compounds": True}, {"lowercase": True}):
        assert tokenized_bleu(REFS, REFS, **kw)[0] == pytest.approx(100.0)


def test_known_example_by_hand_and_by_sacrebleu():
    # 6 of the reference's 7 tokens, in order: every n-gram precision is 1, brevity penalty
    # exp(1 - 7/6), so BLEU = 100 * exp(-1/6)
    hyp, ref = ["the cat sat on the mat"], ["the cat sat on the mat today"]
    by_hand = 100 * math.exp(1 - 7 / 6)
    assert sacrebleu_score(hyp, ref)[0] == pytest.approx(by_hand, abs=1e-6)
    assert tokenized_bleu(hyp, ref)[0] == pytest.approx(by_hand, abs=1e-6)
    assert sacrebleu.corpus_bleu(hyp, [ref]).score == pytest.approx(by_hand, abs=1e-6)


def test_matches_sacrebleu_on_a_corpus():
    hyps = ["The cat sits on a mat today .", "A well known man rode the bike!"]
    expected = sacrebleu.corpus_bleu(hyps, [REFS]).score
    assert sacrebleu_score(hyps, REFS)[0] == pytest.approx(expected)
    upper = [h.upper() for h in hyps]
    lower = sacrebleu.corpus_bleu(upper, [REFS], lowercase=True).score
    assert sacrebleu_score(upper, REFS, lowercase=True)[0] == pytest.approx(lower)
    # 13a tokens counted as they are: tokenized BLEU without splitting is sacreBLEU again
    assert tokenized_bleu(hyps, REFS)[0] == pytest.approx(expected)


def test_compound_split_as_get_ende_bleu():
    assert compound_split("ein Mann-Rennen") == "ein Mann ##AT##-##AT## Rennen"
    assert compound_split("a - b") == "a - b"  # a free-standing dash is no compound
    # the perl one-liner's matches do not overlap, and neither do ours
    assert compound_split("a-b-c") == "a ##AT##-##AT## b-c"


def test_tokenized_bleu_is_sacrebleu_on_prepared_text():
    hyps, refs = ["Ein Mann-Rennen, gestern."], ["Ein Mann Rennen gestern."]
    prepared_h = ["Ein Mann ##AT##-##AT## Rennen , gestern ."]
    assert compound_split(tokenize(hyps[0])) == prepared_h[0]
    expected = sacrebleu.corpus_bleu(prepared_h, [["Ein Mann Rennen gestern ."]],
                                     tokenize="none").score
    score, signature = tokenized_bleu(hyps, refs, split_compounds=True)
    assert score == pytest.approx(expected)
    assert signature.startswith("pretok:13a+compound-split|") and "tok:none" in signature


def test_compound_split_credits_shared_parts():
    hyps = ["Das Auto-Rennen war gestern sehr spannend ."]
    refs = ["Das Motorrad-Rennen war gestern sehr spannend ."]
    # "Auto-Rennen" != "Motorrad-Rennen", but "##AT##-##AT## Rennen war" etc. now match
    assert tokenized_bleu(hyps, refs, split_compounds=True)[0] > tokenized_bleu(hyps, refs)[0]


def test_lowercase_tokenized_bleu():
    hyps, refs = ["A MAN RIDES A BIKE"], ["a man rides a bike"]
    assert tokenized_bleu(hyps, refs, lowercase=True)[0] == pytest.approx(100.0)
    assert tokenized_bleu(hyps, refs)[0] == 0.0


def test_all_bleu_labels_and_language():
    hyps = ["Ein Mann-Rennen war gestern sehr spannend", "Hallo Welt , wie geht es dir heute ?"]
    refs = ["Ein Frauen-Rennen war gestern sehr spannend", "hallo Welt , wie geht es dir heute ?"]
    de, en = all_bleu(hyps, refs, "de"), all_bleu(hyps, refs, "en")
    assert "compound-split" in de["tokenized_bleu_signature"]  # the paper's EN-DE metric
    assert "compound-split" not in en["tokenized_bleu_signature"]
    assert "case:lc" in de["tokenized_bleu_lc_signature"]
    assert de["tokenized_bleu"] > en["tokenized_bleu"] == pytest.approx(en["sacrebleu"])
    assert de["tokenized_bleu_lc"] == en["tokenized_bleu_lc"] > en["tokenized_bleu"]
    assert de["sacrebleu"] == en["sacrebleu"]


def test_input_checks():
    with pytest.raises(ValueError):
        sacrebleu_score(["a"], ["a", "b"])
    with pytest.raises(TypeError):
        tokenized_bleu("a b", "a b")
