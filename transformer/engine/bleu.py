"""BLEU, three ways, all counted by sacrebleu (Section 6.1, Table 2).

The paper reports *tokenized* BLEU: translations and references are tokenized, and for EN-DE
hyphenated compounds are split ("Mann-Rennen" -> "Mann ##AT##-##AT## Rennen") as the
tensor2tensor script ``get_ende_bleu.sh`` does, then BLEU is counted on those tokens.  Today's
standard is sacreBLEU on *detokenized* text with a signature saying exactly how it was computed;
the two differ by up to about a point.  Multi30k papers usually quote *lowercased* tokenized
BLEU (``multi-bleu.perl -lc``).  Every number must say which one it is:

    sacrebleu_score(hyps, refs)                      -> detokenized sacreBLEU + signature
    tokenized_bleu(hyps, refs, split_compounds=True) -> the paper's EN-DE metric
    tokenized_bleu(hyps, refs, lowercase=True)       -> lowercased tokenized BLEU (Multi30k)

``get_ende_bleu.sh`` tokenizes with Moses ``tokenizer.perl``; we use sacrebleu's ``13a``
tokenizer (mteval-v13a, the closest tokenizer at hand), then count with ``tokenize="none"``.
Known differences from Moses: 13a splits a hyphen after a digit ("3-4" -> "3 - 4") and leaves
apostrophes attached, so scores can differ slightly from multi-bleu.perl on Moses tokens.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence

from sacrebleu.metrics import BLEU

# get_ende_bleu.sh: perl -ple 's{(\S)-(\S)}{$1 ##AT##-##AT## $2}g' (same non-overlapping matches:
# "a-b-c" -> "a ##AT##-##AT## b-c", exactly as the perl one-liner does)
_COMPOUND = re.compile(r"(\S)-(\S)")


def compound_split(line: str) -> str:
    """Split hyphenated compounds the tensor2tensor way: "a-b" -> "a ##AT##-##AT## b"."""
    return _COMPOUND.sub(r"\1 ##AT##-##AT## \2", line)


@functools.cache
def _tokenizer(name: str):
    return BLEU(tokenize=name).tokenizer


def tokenize(line: str, tokenizer: str = "13a") -> str:
    """Tokenize one line with one of sacrebleu's tokenizers (``"13a"``, ``"intl"``, ...)."""
    return _tokenizer(tokenizer)(line)


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
                   lowercase: bool = False, tokenizer: str = "13a") -> tuple[float, str]:
    """Tokenized BLEU: tokenize both sides, optionally split compounds, then count as is.

    ``split_compounds=True`` gives the paper's EN-DE metric (Table 2); ``lowercase=True`` the
    Multi30k one.  Returns ``(score, description)``; the description names every step.
    """
    _check(hyps, refs)

    def prepare(lines):
        lines = [tokenize(line, tokenizer) for line in lines]
        return [compound_split(line) for line in lines] if split_compounds else lines

    bleu = BLEU(tokenize="none", lowercase=lowercase, force=True)  # tokenized on purpose
    score = bleu.corpus_score(prepare(hyps), [prepare(refs)]).score
    steps = f"pretok:{tokenizer}" + ("+compound-split" if split_compounds else "")
    return score, f"{steps}|{bleu.get_signature()}"


def all_bleu(hyps: Sequence[str], refs: Sequence[str], tgt_lang: str | None = None) -> dict:
    """The three numbers, labelled.  Compounds are split only for German targets (EN-DE)."""
    score, signature = sacrebleu_score(hyps, refs)
    split = tgt_lang == "de"
    tok, tok_desc = tokenized_bleu(hyps, refs, split_compounds=split)
    tok_lc, tok_lc_desc = tokenized_bleu(hyps, refs, lowercase=True)
    return {
        "sacrebleu": score, "sacrebleu_signature": signature,
        "tokenized_bleu": tok, "tokenized_bleu_signature": tok_desc,
        "tokenized_bleu_lc": tok_lc, "tokenized_bleu_lc_signature": tok_lc_desc,
    }
