"""BLEU (Section 6.1, Table 2): our wrappers give sacrebleu's own numbers, and the tokenized
variants prepare text as tensor2tensor's get_ende_bleu.sh does (Moses scripts via sacremoses)
and count as multi-bleu.perl does."""

import math
from collections import Counter

import pytest
import sacrebleu
from sacrebleu.metrics import BLEU

from transformer.engine.bleu import (
    all_bleu,
    compound_split,
    moses_tokenize,
    replace_unicode_punctuation,
    sacrebleu_score,
    tokenize,
    tokenized_bleu,
)

REFS = ["The cat sat on the mat today.", "A well-known man rides a bike."]


def moses(line, lang="en"):
    """What get_ende_bleu.sh does to a line before splitting compounds."""
    return moses_tokenize(replace_unicode_punctuation(line), lang)


def multi_bleu(hyps, refs):
    """multi-bleu.perl's definition, one reference per sentence, written out: whitespace tokens,
    clipped n-gram matches (n = 1..4) summed over the corpus, brevity penalty, no smoothing, and
    0 when some order has no match (the script's my_log(0) = -9999999999)."""
    correct, total, hyp_len, ref_len = [0] * 4, [0] * 4, 0, 0
    for hyp, ref in zip(hyps, refs, strict=True):
        h, r = hyp.split(), ref.split()
        hyp_len, ref_len = hyp_len + len(h), ref_len + len(r)
        for n in range(1, 5):
            h_ngrams = Counter(tuple(h[i:i + n]) for i in range(len(h) - n + 1))
            r_ngrams = Counter(tuple(r[i:i + n]) for i in range(len(r) - n + 1))
            total[n - 1] += sum(h_ngrams.values())
            correct[n - 1] += sum(min(c, r_ngrams[g]) for g, c in h_ngrams.items())
    if 0 in correct:
        return 0.0
    bp = math.exp(1 - ref_len / hyp_len) if hyp_len < ref_len else 1.0
    return 100 * bp * math.exp(sum(math.log(c / t) for c, t in zip(correct, total)) / 4)


def unsmoothed_sacrebleu(hyps, refs):
    return BLEU(tokenize="none", smooth_method="none", force=True).corpus_score(
        hyps, [refs]).score


# Two short English pairs whose Moses tokens differ from 13a's ("doesn't").
HAND_HYPS = ["The cat doesn't sit.", "A dog runs."]
HAND_REFS = ["The cat doesn't sit here.", "A dog runs fast."]
HAND_HYP_TOKENS = ["The cat doesn &apos;t sit .", "A dog runs ."]
HAND_REF_TOKENS = ["The cat doesn &apos;t sit here .", "A dog runs fast ."]


def hand_bleu():
    # Hypothesis n-grams found in the reference (none twice, so no clipping), pair 1 | pair 2:
    # 1-grams  all 6                                                  6/6 | all 4           4/4
    # 2-grams  The cat, cat doesn, doesn &apos;t, &apos;t sit          4/5 | A dog, dog runs 2/3
    # 3-grams  The cat doesn, cat doesn &apos;t, doesn &apos;t sit     3/4 | A dog runs      1/2
    # 4-grams  The cat doesn &apos;t, cat doesn &apos;t sit            2/3 | none            0/1
    # (missing: every n-gram ending in "sit ." or "runs .", as the references go on)
    precisions = [(6 + 4) / (6 + 4), (4 + 2) / (5 + 3), (3 + 1) / (4 + 2), (2 + 0) / (3 + 1)]
    hyp_len, ref_len = 6 + 4, 7 + 5
    brevity_penalty = math.exp(1 - ref_len / hyp_len)  # the hypotheses are shorter
    return 100 * brevity_penalty * math.exp(sum(math.log(p) for p in precisions) / 4)


def test_hand_computed_example():
    assert [moses(line) for line in HAND_HYPS] == HAND_HYP_TOKENS
    assert [moses(line) for line in HAND_REFS] == HAND_REF_TOKENS
    score, description = tokenized_bleu(HAND_HYPS, HAND_REFS)
    assert score == pytest.approx(hand_bleu(), abs=1e-9)
    assert score == pytest.approx(57.893, abs=1e-3)
    # 13a keeps "doesn't" whole (and sacreBLEU smooths): another number
    assert sacrebleu_score(HAND_HYPS, HAND_REFS)[0] != pytest.approx(score, abs=0.1)
    assert description.startswith("replace-unicode-punct+moses-tok:en+escape|sacremoses:")
    assert "|nrefs:1|case:mixed|eff:no|tok:none|smooth:none|" in description


def test_hand_computed_compound_example():
    hyp, ref = ["Ein Auto-Rennen war gestern."], ["Ein Motorrad-Rennen war gestern."]
    assert compound_split(moses(hyp[0], "de")) == "Ein Auto ##AT##-##AT## Rennen war gestern ."
    # 7 tokens each, only "Auto"/"Motorrad" differ: 1-grams 6/7; 2-grams 4/6 (not "Ein Auto",
    # "Auto ##AT##-##AT##"); 3-grams 3/5; 4-grams 2/4; same length, no brevity penalty
    by_hand = 100 * (6 / 7 * 4 / 6 * 3 / 5 * 2 / 4) ** (1 / 4)
    assert tokenized_bleu(hyp, ref, lang="de", split_compounds=True)[0] == pytest.approx(by_hand)
    # unsplit, "Auto-Rennen" is one token: 5 tokens, 4-grams 0/2, so BLEU is 0 (no smoothing)
    assert tokenized_bleu(hyp, ref, lang="de")[0] == 0.0


def test_sacrebleu_unsmoothed_count_is_multi_bleu():
    # on the hand example's tokens: sacrebleu, our written-out multi-bleu.perl, and the hand sum
    assert unsmoothed_sacrebleu(HAND_HYP_TOKENS, HAND_REF_TOKENS) == pytest.approx(hand_bleu())
    assert multi_bleu(HAND_HYP_TOKENS, HAND_REF_TOKENS) == pytest.approx(hand_bleu())
    # clipping by hand: "the" 3 times against 2 in the reference counts 2; "the the" 0 of 2
    # bigrams, so some precision is 0 and BLEU is 0 -- where sacreBLEU's default smoothing is not
    hyp, ref = ["the the the cat"], ["the cat on the mat"]
    assert multi_bleu(hyp, ref) == unsmoothed_sacrebleu(hyp, ref) == 0.0
    assert sacrebleu.corpus_bleu(hyp, [ref], tokenize="none").score > 0
    # more small corpora: clipping, length ratios either way, a sentence shorter than 4 tokens
    corpora = [
        (["a b c d e f", "g h"], ["a b c d x f g", "g h i"]),
        (["a a a b b c d e", "x y z w v"], ["a b a c d e a b", "x y z w"]),
        (["das ist ein Haus .", "es regnet heute sehr stark ."],
         ["das ist ein Haus .", "heute regnet es sehr stark ."]),
        (["one two three four five six seven"], ["one two three four five"]),
    ]
    for hyps, refs in corpora:
        assert unsmoothed_sacrebleu(hyps, refs) == pytest.approx(multi_bleu(hyps, refs))
        assert tokenized_bleu(hyps, refs)[0] == pytest.approx(multi_bleu(hyps, refs))


@pytest.mark.parametrize(("lang", "line", "moses_tokens", "tokens_13a"), [
    ("en", "The score was 3-4.", "The score was 3-4 .", "The score was 3 - 4 ."),
    ("en", "I don't know.", "I don &apos;t know .", "I don't know ."),
    ("de", "Ich glaub's nicht.", "Ich glaub &apos; s nicht .", "Ich glaub's nicht ."),
    ("en", "Tom & Jerry", "Tom &amp; Jerry", "Tom & Jerry"),
    ("en", 'He said "no" [sic] <b>|',  # tokenizer.perl escapes all eight unless -no-escape
     "He said &quot; no &quot; &#91; sic &#93; &lt; b &gt; &#124;",
     'He said " no " [ sic ] < b > |'),
    ("en", "Dr. Smith arrived.", "Dr. Smith arrived .", "Dr . Smith arrived ."),
    ("de", "Das gilt z.B. heute.", "Das gilt z.B. heute .", "Das gilt z . B . heute ."),
    ("de", "Er kam am 3. Mai.", "Er kam am 3. Mai .", "Er kam am 3 . Mai ."),
    # replace-unicode-punctuation: “ -> " (escaped), … -> ...; „ is not in its table
    ("de", "„Hallo“, sagte er…", "„ Hallo &quot; , sagte er ...", "„Hallo“ , sagte er…"),
    ("en", "It’s “fine”.", "It &apos;s &quot; fine &quot; .", "It’s “fine” ."),
])
def test_moses_tokens_where_13a_differs(lang, line, moses_tokens, tokens_13a):
    assert moses(line, lang) == moses_tokens
    assert tokenize(line) == tokens_13a


def test_moses_details():
    assert replace_unicode_punctuation("„Ja“ – ’s…") == '„Ja" – \'s...'
    assert moses_tokenize("It's", "en") == "It &apos;s"  # English: contraction split right
    assert moses_tokenize("It's", "de") == "It &apos; s"  # other languages: ' on its own
    # a nonbreaking prefix ending the line keeps its period, as tokenizer.perl did before
    # moses-smt/mosesdecoder#204 (Nov 2018); an ordinary last word loses it
    assert moses_tokenize("So am I.") == "So am I."
    assert moses_tokenize("Er kam usw.", "de") == "Er kam usw."
    assert moses_tokenize("Er kam gestern.", "de") == "Er kam gestern ."


def test_perfect_hypothesis_scores_100():
    score, signature = sacrebleu_score(REFS, REFS)
    assert score == pytest.approx(100.0)
    assert "tok:13a" in signature and "case:mixed" in signature and "nrefs:1" in signature
    for kw in ({}, {"split_compounds": True}, {"lowercase": True}, {"lang": "de"}):
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
    # tokenized BLEU is sacrebleu's unsmoothed count on Moses tokens
    moses_expected = unsmoothed_sacrebleu([moses(h) for h in hyps], [moses(r) for r in REFS])
    assert tokenized_bleu(hyps, REFS)[0] == pytest.approx(moses_expected)


def test_compound_split_as_get_ende_bleu():
    assert compound_split("ein Mann-Rennen") == "ein Mann ##AT##-##AT## Rennen"
    assert compound_split("a - b") == "a - b"  # a free-standing dash is no compound
    # the perl one-liner's matches do not overlap, and neither do ours
    assert compound_split("a-b-c") == "a ##AT##-##AT## b-c"
    assert compound_split(moses("a-b-c")) == "a ##AT##-##AT## b-c"  # Moses keeps "a-b-c"


def test_tokenized_bleu_is_sacrebleu_on_prepared_text():
    hyps, refs = ["Ein Mann-Rennen, gestern."], ["Ein Mann Rennen gestern."]
    prepared_h = ["Ein Mann ##AT##-##AT## Rennen , gestern ."]
    assert compound_split(moses(hyps[0], "de")) == prepared_h[0]
    expected = unsmoothed_sacrebleu(prepared_h, ["Ein Mann Rennen gestern ."])
    score, signature = tokenized_bleu(hyps, refs, split_compounds=True, lang="de")
    assert score == pytest.approx(expected)
    assert signature.startswith("replace-unicode-punct+moses-tok:de+escape+compound-split|")
    assert "tok:none" in signature and "smooth:none" in signature


def test_compound_split_credits_shared_parts():
    hyps = ["Das Auto-Rennen war gestern sehr spannend ."]
    refs = ["Das Motorrad-Rennen war gestern sehr spannend ."]
    # "Auto-Rennen" != "Motorrad-Rennen", but "##AT##-##AT## Rennen war" etc. now match
    assert tokenized_bleu(hyps, refs, split_compounds=True)[0] > tokenized_bleu(hyps, refs)[0]


def test_lowercase_tokenized_bleu():
    hyps, refs = ["A MAN RIDES A BIKE"], ["a man rides a bike"]
    score, description = tokenized_bleu(hyps, refs, lowercase=True)
    assert score == pytest.approx(100.0)
    assert "case:lc-ascii" in description
    assert tokenized_bleu(hyps, refs)[0] == 0.0
    # multi-bleu.perl -lc reads bytes: its lc lowers A-Z only, so "ÜBER" is not "über"
    hyps, refs = ["ÜBER DIE BRÜCKE GEHT ER"], ["über die brücke geht er"]
    # matched by hand: die, geht, er, "geht er"; 3-grams 0 of 3, so BLEU 0
    assert tokenized_bleu(hyps, refs, lowercase=True, lang="de")[0] == 0.0
    assert sacrebleu_score(hyps, refs, lowercase=True)[0] == pytest.approx(100.0)  # unicode lc


def test_all_bleu_labels_and_language():
    hyps = ["Ein Mann-Rennen war gestern sehr spannend", "Hallo Welt , wie geht es dir heute ?"]
    refs = ["Ein Frauen-Rennen war gestern sehr spannend", "hallo Welt , wie geht es dir heute ?"]
    de, en = all_bleu(hyps, refs, "de"), all_bleu(hyps, refs, "en")
    assert "compound-split" in de["tokenized_bleu_signature"]  # the paper's EN-DE metric
    assert "compound-split" not in en["tokenized_bleu_signature"]
    assert "moses-tok:de" in de["tokenized_bleu_signature"]
    assert "moses-tok:de" in de["tokenized_bleu_lc_signature"]
    assert "moses-tok:en" in en["tokenized_bleu_signature"]
    assert "case:lc" in de["tokenized_bleu_lc_signature"]
    # Moses and 13a tokenize these alike and no n-gram order is without matches, so unsmoothed
    # tokenized BLEU without splitting equals sacreBLEU here
    assert de["tokenized_bleu"] > en["tokenized_bleu"] == pytest.approx(en["sacrebleu"])
    assert de["tokenized_bleu_lc"] == en["tokenized_bleu_lc"] > en["tokenized_bleu"]
    assert de["sacrebleu"] == en["sacrebleu"]
    assert "moses-tok:en" in all_bleu(hyps, refs)["tokenized_bleu_signature"]  # unknown: English


def test_all_bleu_tokenizes_for_the_target_language():
    # English splits "it's" as "it 's", German as "it ' s": different tokens, different scores
    hyps, refs = ["so it's true , they say"], ["so it's true , they said"]
    de, en = all_bleu(hyps, refs, "de"), all_bleu(hyps, refs, "en")
    assert en["tokenized_bleu"] == pytest.approx(tokenized_bleu(hyps, refs, lang="en")[0])
    assert de["tokenized_bleu"] == pytest.approx(
        tokenized_bleu(hyps, refs, lang="de", split_compounds=True)[0])
    assert de["tokenized_bleu"] != pytest.approx(en["tokenized_bleu"])


def test_input_checks():
    with pytest.raises(ValueError):
        sacrebleu_score(["a"], ["a", "b"])
    with pytest.raises(TypeError):
        tokenized_bleu("a b", "a b")
