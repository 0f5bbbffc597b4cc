"""BLEU, three ways, all counted by sacrebleu (Section 6.1, Table 2); and, for tasks whose
outputs are a word or two, exact match and chrF (see "When BLEU says nothing" below).

The paper reports *tokenized* BLEU.  Its EN-DE numbers (27.3 / 28.4) come from tensor2tensor's
``get_ende_bleu.sh``: Moses ``replace-unicode-punctuation.perl``, Moses ``tokenizer.perl -l de``,
hyphenated compounds split ("Mann-Rennen" -> "Mann ##AT##-##AT## Rennen"), then Moses
``multi-bleu.perl``.  Today's standard is sacreBLEU on *detokenized* text with a signature saying
exactly how it was computed; the two differ by up to about a point.  Multi30k papers usually quote
*lowercased* tokenized BLEU (``multi-bleu.perl -lc``).  Every number must say which one it is:

    sacrebleu_score(hyps, refs)                      -> detokenized sacreBLEU + signature
    tokenized_bleu(hyps, refs, lang="de", split_compounds=True) -> the paper's EN-DE metric
    tokenized_bleu(hyps, refs, lang=..., lowercase=True)        -> multi-bleu.perl -lc (Multi30k:
                                                                   no compound splitting)

``tokenized_bleu`` follows ``get_ende_bleu.sh`` with ``sacremoses``, the Python port of the
Moses scripts, on both hypotheses and references:

1. ``replace_unicode_punctuation``: replace-unicode-punctuation.perl (sacremoses'
   ``MosesPunctNormalizer.replace_unicode_punct``): “ ” -> ", ’ -> ', … -> ..., full-width
   punctuation and digits -> ASCII.  It is not normalize-punctuation.perl: „ and ‚ (German
   opening quotes) are left alone and become tokens of their own.
2. ``moses_tokenize``: tokenizer.perl ``-l <lang>`` with its defaults, i.e.
   ``MosesTokenizer(lang).tokenize(escape=True, aggressive_dash_splits=False)``.  tokenizer.perl
   escapes unless given ``-no-escape``, so & | < > ' " [ ] become &amp; &#124; &lt; &gt; &apos;
   &quot; &#91; &#93;; without ``-a`` hyphens between letters or digits stay ("3-4", "Mann-Rennen").
3. ``compound_split`` (only when asked; ``all_bleu`` asks for German targets), after tokenizing.
4. Counted as multi-bleu.perl counts: whitespace tokens, clipped 1- to 4-gram matches summed over
   the corpus, brevity penalty exp(1 - r/c) when c < r, no smoothing, 0 when some n-gram order
   has no match -- sacrebleu's ``BLEU(tokenize="none", smooth_method="none")``.  ``lowercase``
   lowercases A-Z only, as ``multi-bleu.perl -lc`` does (it reads bytes, so its ``lc`` leaves
   Ä, É, ... as they are); hence ``case:lc-ascii`` in the description.

Known remaining differences from running the perl scripts:

* ``get_ende_bleu.sh`` normalizes and tokenizes only the decodes; its reference
  (``newstest201x.tok.de``) comes already tokenized from elsewhere, by steps the script does not
  show.  We put the raw references through the same steps as the hypotheses.  Some versions of
  the script have no replace-unicode-punctuation step; which one scored the paper is not known.
* sacremoses ships its own nonbreaking-prefix lists and Perl Unicode property tables
  (IsAlnum, IsLower, ...), which need not equal those of the mosesdecoder checkout used in 2017.
* tokenizer.perl changed over time.  Since Nov 2018 (moses-smt/mosesdecoder#204) it splits the
  final period even after a nonbreaking prefix ("So am I." -> "So am I ."); sacremoses keeps the
  earlier behaviour ("So am I."), which is what a 2017 checkout did.  In English, an apostrophe
  ending a line after a digit ("10'") stays attached in sacremoses ("10&apos;", sacremoses#3).
* replace-unicode-punctuation.perl maps full-width "１" to '"' (a slip in the script);
  sacremoses maps it to "1".
* Scores are not rounded (multi-bleu.perl prints two decimals); an empty hypothesis corpus
  scores 0 where multi-bleu.perl divides by zero.

The description returned with each score names every step and the versions of sacremoses and
sacrebleu, e.g.
``replace-unicode-punct+moses-tok:de+escape+compound-split|sacremoses:0.2.0|nrefs:1|case:mixed|
eff:no|tok:none|smooth:none|version:2.6.0``.

When BLEU says nothing
----------------------

Corpus BLEU-4 is the geometric mean of the 1- to 4-gram precisions, so a corpus whose hypotheses
hold no 4-grams (every one shorter than 4 tokens) scores 0 however good it is: sacrebleu stops
at the first order with no n-grams and takes log(0) for it, with or without smoothing.  Measured
with sacrebleu 2.6.0 (tests/test_metrics.py): a *perfect* output scores sacreBLEU 0.00 (and
unsmoothed tokenized BLEU 0.00) when every reference has 1, 2 or 3 words, 100.00 when they have
4.  The ``numbers`` task, whose targets are single German words ("dreihunderteinundzwanzig"),
therefore scores 0 with a model that is always right.  Between the extremes BLEU rests on the
few sentences long enough to hold 4-grams: 19 one-word references and one of four words, with
only the four-word one right (exact match 5%), score sacreBLEU 64.6.

``bleu_is_meaningful(refs)`` says whether to trust BLEU-4: it is ``False`` when the references
average fewer than 4 whitespace-separated words (or there are none).  Whitespace words are the
conservative count: sacrebleu's 13a and the Moses tokenizer only ever split them further, so
with the rule met, the tokenized references average at least 4 tokens too.  Where it is not
met, report instead

    exact_match(hyps, refs)  -> % of hypotheses equal to their reference (whitespace stripped)
    chrf_score(hyps, refs)   -> sacrebleu's chrF2 (character 6-grams, beta 2) + signature

chrF counts character n-grams, so a one-word output gets partial credit for the part it got
right and full marks when it is right.
"""

from __future__ import annotations

import functools
import re
import string
from collections.abc import Sequence
from importlib.metadata import version

from sacrebleu.metrics import BLEU, CHRF
from sacremoses import MosesPunctNormalizer, MosesTokenizer

# get_ende_bleu.sh: perl -ple 's{(\S)-(\S)}{$1 ##AT##-##AT## $2}g' (same non-overlapping matches:
# "a-b-c" -> "a ##AT##-##AT## b-c", exactly as the perl one-liner does)
_COMPOUND = re.compile(r"(\S)-(\S)")
# multi-bleu.perl -lc: perl's lc on bytes, i.e. A-Z only
_ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)


def compound_split(line: str) -> str:
    """Split hyphenated compounds the tensor2tensor way: "a-b" -> "a ##AT##-##AT## b"."""
    return _COMPOUND.sub(r"\1 ##AT##-##AT## \2", line)


@functools.cache
def _tokenizer(name: str):
    return BLEU(tokenize=name).tokenizer


def tokenize(line: str, tokenizer: str = "13a") -> str:
    """Tokenize one line with one of sacrebleu's tokenizers (``"13a"``, ``"intl"``, ...)."""
    return _tokenizer(tokenizer)(line)


@functools.cache
def _punct_normalizer() -> MosesPunctNormalizer:
    return MosesPunctNormalizer()


@functools.cache
def _moses_tokenizer(lang: str) -> MosesTokenizer:
    return MosesTokenizer(lang=lang)


def replace_unicode_punctuation(line: str) -> str:
    """Moses ``replace-unicode-punctuation.perl``: “ ” -> ", ’ -> ', … -> ..., ， -> , etc."""
    return _punct_normalizer().replace_unicode_punct(line)


def moses_tokenize(line: str, lang: str = "en") -> str:
    """Moses ``tokenizer.perl -l lang`` with its defaults (escaping on, no ``-a``), as a string."""
    return _moses_tokenizer(lang).tokenize(line, aggressive_dash_splits=False, escape=True,
                                           return_str=True)


def _check(hyps: Sequence[str], refs: Sequence[str]) -> None:
    if isinstance(hyps, str) or isinstance(refs, str):
        raise TypeError("hyps and refs must be lists of sentences, not a single string")
    if len(hyps) != len(refs):
        raise ValueError(f"{len(hyps)} hypotheses but {len(refs)} references")


def sacrebleu_score(hyps: Sequence[str], refs: Sequence[str], *, tokenize: str = "13a",
              lowercase: bool = False) -> tuple[float, str]:
    """Corpus sacreBLEU of detokenized ``hyps`` against one reference each.

    Returns ``(score, signature)``, e.g. ``"nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|..."``.
    """
    _check(hyps, refs)
    # force: Multi30k's raw references already end in " .", which would trip sacrebleu's
    # "forgot to detokenize" warning on every evaluation; the signature does not change
    bleu = BLEU(tokenize=tokenize, lowercase=lowercase, force=True)
    score = bleu.corpus_score(list(hyps), [list(refs)]).score
    return score, str(bleu.get_signature())


def tokenized_bleu(hyps: Sequence[str], refs: Sequence[str], *, split_compounds: bool = False,
                   lowercase: bool = False, lang: str = "en") -> tuple[float, str]:
    """Tokenized BLEU as get_ende_bleu.sh and multi-bleu.perl compute it (see the module doc).

    Both sides: replace-unicode-punctuation, Moses tokenization for ``lang`` (the target
    language), compound splitting if ``split_compounds``, A-Z lowercased if ``lowercase``; then
    unsmoothed corpus BLEU on whitespace tokens.  ``lang="de", split_compounds=True`` gives the
    paper's EN-DE metric (Table 2); ``lowercase=True`` the Multi30k one (``multi-bleu.perl
    -lc``).  Returns ``(score, description)``; the description names every step.
    """
    _check(hyps, refs)

    def prepare(lines):
        out = []
        for line in lines:
            line = moses_tokenize(replace_unicode_punctuation(line), lang)
            if split_compounds:
                line = compound_split(line)
            out.append(line.translate(_ASCII_LOWER) if lowercase else line)
        return out

    # the text is tokenized on purpose (force: no "forgot to detokenize" warning); no smoothing
    bleu = BLEU(tokenize="none", smooth_method="none", force=True)
    score = bleu.corpus_score(prepare(hyps), [prepare(refs)]).score
    signature = str(bleu.get_signature())
    if lowercase:  # we lowercased, sacrebleu did not (it would lowercase beyond ASCII)
        signature = signature.replace("case:mixed", "case:lc-ascii")
    steps = f"replace-unicode-punct+moses-tok:{lang}+escape"
    steps += "+compound-split" if split_compounds else ""
    return score, f"{steps}|sacremoses:{version('sacremoses')}|{signature}"


def exact_match(hyps: Sequence[str], refs: Sequence[str]) -> float:
    """Percentage of hypotheses identical to their reference after stripping surrounding
    whitespace (0.0 for an empty corpus)."""
    _check(hyps, refs)
    if not hyps:
        return 0.0
    return 100.0 * sum(h.strip() == r.strip() for h, r in zip(hyps, refs)) / len(hyps)


def chrf_score(hyps: Sequence[str], refs: Sequence[str]) -> tuple[float, str]:
    """Corpus chrF of ``hyps`` against one reference each, sacrebleu's defaults (chrF2:
    character 6-grams, no word n-grams, beta 2).  Returns ``(score, signature)``, e.g.
    ``"nrefs:1|case:mixed|eff:yes|nc:6|nw:0|space:no|version:2.6.0"``; an empty corpus
    scores 0."""
    _check(hyps, refs)
    chrf = CHRF()
    if not hyps:  # sacrebleu refuses an empty corpus; score one empty line for the signature
        chrf.corpus_score([""], [[""]])
        return 0.0, str(chrf.get_signature())
    score = chrf.corpus_score(list(hyps), [list(refs)]).score
    return score, str(chrf.get_signature())


def mean_words(lines: Sequence[str]) -> float:
    """Average number of whitespace-separated words per line (0.0 for no lines)."""
    if isinstance(lines, str):
        raise TypeError("lines must be a list of sentences, not a single string")
    return sum(len(line.split()) for line in lines) / len(lines) if lines else 0.0


def bleu_is_meaningful(refs: Sequence[str], n: int = 4) -> bool:
    """Whether corpus BLEU-``n`` can say anything about outputs for ``refs``: ``False`` when
    the references average fewer than ``n`` whitespace-separated words, or there are none.

    BLEU-n multiplies in the n-gram precision, and hypotheses shorter than n tokens hold no
    n-grams, so right answers as short as their references score 0 (a perfect output for
    references of 1-3 words scores 0.00, for 4 words 100.00; see the module doc).  When the
    references average fewer than n words, most sentences (all, for single words) cannot
    contribute an n-gram and the score measures the few long ones.
    """
    return bool(refs) and mean_words(refs) >= n


def all_bleu(hyps: Sequence[str], refs: Sequence[str], tgt_lang: str | None = None) -> dict:
    """The three numbers, labelled, each with its signature; Moses tokenization for
    ``tgt_lang`` (English if unknown):

    * ``sacrebleu``: detokenized sacreBLEU (13a, cased);
    * ``tokenized_bleu``: cased Moses-tokenized BLEU, compounds split for German targets (the
      paper's EN-DE metric, Table 2), not for others;
    * ``tokenized_bleu_lc``: Moses-tokenized BLEU lowercased (A-Z), compounds never split:
      ``multi-bleu.perl -lc``, the metric of the published Multi30k results in both
      directions.
    """
    score, signature = sacrebleu_score(hyps, refs)
    lang = tgt_lang or "en"
    tok, tok_desc = tokenized_bleu(hyps, refs, split_compounds=lang == "de", lang=lang)
    tok_lc, tok_lc_desc = tokenized_bleu(hyps, refs, lowercase=True, lang=lang)
    return {
        "sacrebleu": score, "sacrebleu_signature": signature,
        "tokenized_bleu": tok, "tokenized_bleu_signature": tok_desc,
        "tokenized_bleu_lc": tok_lc, "tokenized_bleu_lc_signature": tok_lc_desc,
    }
