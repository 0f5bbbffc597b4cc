"""Exact match, chrF and when BLEU-4 says nothing (issue #13): a perfect model on the one-word
targets of the ``numbers`` task scores BLEU 0, so the report leads with exact match and chrF and
marks BLEU as not meaningful."""

import pytest
from sacrebleu.metrics import BLEU, CHRF

import transformer.engine.evaluate as evaluate_module
from transformer.data import load_dataset
from transformer.engine.bleu import (
    all_bleu,
    bleu_is_meaningful,
    chrf_score,
    exact_match,
    mean_words,
    sacrebleu_score,
    tokenized_bleu,
)
from transformer.engine.evaluate import evaluate, format_scores

ONE_WORD = ["dreihunderteinundzwanzig", "vierzehn", "siebenhundert", "neunzehntausendelf"]
SENTENCES = ["The cat sat on the mat today .", "A well-known man rides a red bike .",
             "Two dogs play in the snow ."]
WORDS = "eins zwei drei vier fünf sechs".split()


def chrf_signature():
    """sacrebleu's own chrF signature with its defaults (known once it has scored)."""
    chrf = CHRF()
    chrf.corpus_score(["a"], [["a"]])
    return str(chrf.get_signature())


def test_perfect_one_word_corpus_scores_bleu_zero_but_exact_match_and_chrf_100():
    # measured, not assumed: sacrebleu gives a perfect one-word corpus BLEU 0, smoothed or not
    assert BLEU(force=True).corpus_score(ONE_WORD, [ONE_WORD]).score == 0.0
    assert sacrebleu_score(ONE_WORD, ONE_WORD)[0] == 0.0
    assert tokenized_bleu(ONE_WORD, ONE_WORD, lang="de", split_compounds=True)[0] == 0.0
    assert exact_match(ONE_WORD, ONE_WORD) == 100.0
    score, signature = chrf_score(ONE_WORD, ONE_WORD)
    assert score == pytest.approx(100.0)
    assert signature == chrf_signature()  # sacrebleu's defaults: chrF2
    assert signature.startswith("nrefs:1|") and "nc:6|nw:0" in signature
    assert bleu_is_meaningful(ONE_WORD) is False
    assert mean_words(ONE_WORD) == 1.0


@pytest.mark.parametrize("k", [1, 2, 3, 4, 5])
def test_the_rule_matches_where_a_perfect_output_stops_scoring_zero(k):
    """Perfect outputs for k-word references: BLEU 0 for k < 4, 100 from k = 4 on -- exactly
    where bleu_is_meaningful changes its answer."""
    refs = [" ".join(WORDS[(i + j) % 6] for j in range(k)) for i in range(12)]
    score = sacrebleu_score(refs, refs)[0]
    assert score == (pytest.approx(100.0) if k >= 4 else 0.0)
    assert tokenized_bleu(refs, refs)[0] == (pytest.approx(100.0) if k >= 4 else 0.0)
    assert bleu_is_meaningful(refs) is (k >= 4)
    assert bleu_is_meaningful(refs, n=k) is True and bleu_is_meaningful(refs, n=k + 1) is False


def test_mostly_one_word_corpus_bleu_measures_only_the_long_sentence():
    """19 one-word references and one of four words: getting only the long one right (exact
    match 5%) scores sacreBLEU 64.6 -- BLEU is not to be read here, and the rule says so."""
    refs = ["eins"] * 19 + ["eins zwei drei vier"]
    hyps = ["zwei"] * 19 + ["eins zwei drei vier"]
    assert sacrebleu_score(hyps, refs)[0] == pytest.approx(64.58, abs=0.01)
    assert exact_match(hyps, refs) == 5.0
    assert bleu_is_meaningful(refs) is False


def test_normal_sentences_bleu_is_meaningful():
    assert mean_words(SENTENCES) >= 4
    assert bleu_is_meaningful(SENTENCES) is True
    assert sacrebleu_score(SENTENCES, SENTENCES)[0] == pytest.approx(100.0)
    assert chrf_score(SENTENCES, SENTENCES)[0] == pytest.approx(100.0)


def test_exact_match_and_chrf_details():
    refs = ["eins", "zwei", "drei", "vier"]
    assert exact_match([" eins ", "zwei\n", "drei", "fünf"], refs) == 75.0  # whitespace stripped
    assert exact_match(["Eins", "zwei", "drei", "vier"], refs) == 75.0  # case counts
    assert exact_match([], []) == 0.0
    assert chrf_score([], []) == (0.0, chrf_signature())
    partial = chrf_score(["dreihundertzwanzig"], ["dreihunderteinundzwanzig"])[0]
    assert 0 < partial < 100  # a near miss gets partial credit, unlike exact match
    assert bleu_is_meaningful([]) is False
    for bad in (lambda: exact_match("eins", "eins"), lambda: chrf_score(["a"], ["a", "b"]),
                lambda: bleu_is_meaningful("eins zwei drei vier")):
        with pytest.raises((TypeError, ValueError)):
            bad()


@pytest.fixture
def perfect_translate(monkeypatch):
    """``evaluate``'s translate replaced by one that answers every source with its reference."""
    def translate(model, tokenizer, sentences, **kwargs):
        return [translate.answers[s] for s in sentences]

    monkeypatch.setattr(evaluate_module, "translate", translate)
    return translate


def test_evaluate_perfect_model_on_numbers_task(perfect_translate):
    dataset = load_dataset("numbers", n_train=300, n_val=20, n_test=20)
    sources, references = dataset.texts("test")
    perfect_translate.answers = dict(zip(sources, references))
    result = evaluate(None, dataset, "test", score_perplexity=False)
    assert result["n_sentences"] == 20
    assert result["sacrebleu"] == 0.0 and result["tokenized_bleu"] == 0.0  # issue #13
    assert result["exact_match"] == 100.0
    assert result["chrf"] == pytest.approx(100.0)
    assert result["chrf_signature"] == chrf_signature()
    assert result["bleu_meaningful"] is False and result["ref_mean_words"] == 1.0
    for key in ("sacrebleu_signature", "tokenized_bleu_signature", "tokenized_bleu_lc",
                "tokenized_bleu_lc_signature", "samples"):
        assert key in result  # every earlier key kept

    report = format_scores(dict(result, perplexity=1.01))
    lines = report.splitlines()
    assert lines[0] == "numbers test: 20 sentences, beam 4, alpha 0.6"
    assert lines[1].startswith("  exact match    100.00")
    assert lines[2].startswith("  chrF2          100.00  nrefs:1|")
    assert lines[3].startswith("  sacreBLEU        0.00  (not meaningful: references average "
                               "1.0 words, BLEU-4 needs 4-grams)  nrefs:1|")
    assert lines[4].startswith("  tokenized BLEU   0.00  (not meaningful")
    assert lines[5] == "  perplexity       1.01  (per subword token)"
    assert "perplexity" not in format_scores(result)  # none scored, none printed


def test_evaluate_and_format_scores_where_bleu_is_meaningful(perfect_translate):
    class Sentences:
        name, tgt_lang, tokenizer = "sentences", "en", None

        def texts(self, split):
            return [f"src {i}" for i in range(3)], SENTENCES

    perfect_translate.answers = {f"src {i}": s for i, s in enumerate(SENTENCES)}
    result = evaluate(None, Sentences(), "test", score_perplexity=False)
    assert result["bleu_meaningful"] is True
    assert result["sacrebleu"] == pytest.approx(100.0) and result["exact_match"] == 100.0
    lines = format_scores(dict(result, perplexity=2.5)).splitlines()
    assert lines[1].startswith("  sacreBLEU      100.00  nrefs:1|")
    assert lines[2].startswith("  tokenized BLEU 100.00  replace-unicode-punct")
    assert lines[3].startswith("  chrF2          100.00  nrefs:1|")
    assert lines[4] == "  perplexity       2.50  (per subword token)"
    assert "not meaningful" not in "\n".join(lines) and "exact match" not in "\n".join(lines)


def test_format_scores_of_an_older_result():
    """A result without the new keys (e.g. from a saved JSON) prints as before."""
    old = {"dataset": "multi30k", "split": "test", "n_sentences": 2, "beam_size": 4,
           "alpha": 0.6, **all_bleu(SENTENCES[:2], SENTENCES[:2], "en"), "perplexity": 3.0}
    lines = format_scores(old).splitlines()
    assert [line.split()[0] for line in lines[1:]] == ["sacreBLEU", "tokenized", "perplexity"]
