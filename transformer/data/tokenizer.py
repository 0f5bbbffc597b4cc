"""A shared source-target subword vocabulary (Section 5.1).

The paper encodes WMT14 EN-DE with byte-pair encoding (Sennrich et al., 2016) into "a shared
source-target vocabulary of about 37000 tokens".  We train BPE with Hugging Face ``tokenizers``
on the training sentences of both languages.  Two pre-tokenizers cut the text before BPE sees
it: Metaspace turns each space into "▁" glued to the next word, then Punctuation splits marks
off the words ("▁Hut," -> "▁Hut" ","), so that "Hut", "Hut," and "Hut." share one token
instead of taking three vocabulary entries.  Decoding joins pieces without a "▁" to the one
before, so spaces and punctuation come back exactly (text seen in training round-trips byte
for byte, but for characters left out of the alphabet, below; characters never seen become
``<unk>`` and are dropped).

The alphabet (the single characters every word starts from) is bounded: the
``limit_alphabet`` most frequent characters of the training text, ties broken by code point.
WMT14's Common Crawl holds thousands of characters seen once or twice (CJK, emoji, stray
symbols); unbounded, each would take a vocabulary entry from the subwords.  Characters left
out encode as ``<unk>``, like characters never seen.  A small alphabet (Multi30k has about a
hundred characters) is kept whole, so its vocabulary is what it was without the limit.

Special tokens sit at fixed ids, the ones ``TransformerConfig`` expects:
``<pad>`` = 0, ``<s>`` (BOS) = 1, ``</s>`` (EOS) = 2, ``<unk>`` = 3.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from .fetch import DataError, atomic_write_text

SPECIALS = ("<pad>", "<s>", "</s>", "<unk>")
SETTINGS = {"model": "bpe", "pre_tokenizer": "metaspace+punctuation", "min_frequency": 2,
            "limit_alphabet": 1000, "version": 3}
METASPACE = "\u2581"  # "▁": what the Metaspace pre-tokenizer puts in place of each space


def character_counts(texts: Sequence[str], chunk: int = 100_000) -> dict[str, int]:
    """How often each character occurs in ``texts`` as BPE training sees it (spaces become
    "▁", and each text starts with one).  Counted on UTF-32 code points with numpy, so the
    4.5M WMT14 sentence pairs take seconds."""
    counts = np.zeros(0x110000, dtype=np.int64)
    for i in range(0, len(texts), chunk):
        joined = "".join(texts[i:i + chunk]).encode("utf-32-le", "surrogatepass")
        counts += np.bincount(np.frombuffer(joined, dtype="<u4"), minlength=0x110000)
    counts[ord(METASPACE)] += counts[ord(" ")] + len(texts)
    counts[ord(" ")] = 0
    return {chr(c): int(counts[c]) for c in np.flatnonzero(counts)}


def bounded_alphabet(texts: Sequence[str], limit: int) -> list[str] | None:
    """The ``limit`` most frequent characters of ``texts`` (ties: lower code point first), or
    None when there are no more than ``limit`` distinct ones (nothing to leave out).

    Handing exactly these to the trainer as ``initial_alphabet`` with ``limit_alphabet=limit``
    makes the cut deterministic: ``tokenizers`` alone sorts equal counts in hash-map order,
    so which of the characters seen once survive would change from run to run.
    """
    counts = character_counts(texts)
    if len(counts) <= limit:
        return None
    return sorted(sorted(counts, key=lambda c: (-counts[c], ord(c)))[:limit])


class SubwordTokenizer:
    """Text <-> subword ids.  ``encode`` adds no specials; ``decode`` drops them and stops at
    the first EOS, so it can be handed a decoder's raw output."""

    pad_id, bos_id, eos_id, unk_id = 0, 1, 2, 3

    def __init__(self, tokenizer: Tokenizer):
        for i, token in enumerate(SPECIALS):
            if tokenizer.token_to_id(token) != i:
                raise ValueError(f"tokenizer must have {token} at id {i}, "
                                 f"has it at {tokenizer.token_to_id(token)}")
        self._tok = tokenizer

    @classmethod
    def train(cls, texts: Iterable[str], vocab_size: int,
              min_frequency: int = SETTINGS["min_frequency"],
              limit_alphabet: int = SETTINGS["limit_alphabet"]) -> SubwordTokenizer:
        """Learn BPE merges on ``texts`` (source and target sentences together) until the
        vocabulary, specials included, has ``vocab_size`` tokens or no pair is left to merge.
        At most ``limit_alphabet`` single characters enter it (see the module notes)."""
        texts = texts if isinstance(texts, Sequence) else list(texts)  # read twice
        tok = Tokenizer(models.BPE(unk_token="<unk>"))
        tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Metaspace(),
                                                     pre_tokenizers.Punctuation()])
        tok.decoder = decoders.Metaspace()
        alphabet = bounded_alphabet(texts, limit_alphabet)
        bound = {} if alphabet is None else {"initial_alphabet": alphabet,
                                             "limit_alphabet": limit_alphabet}
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=min_frequency,
                                      special_tokens=list(SPECIALS), show_progress=False,
                                      **bound)
        tok.train_from_iterator(texts, trainer)
        return cls(tok)

    @property
    def vocab_size(self) -> int:
        return self._tok.get_vocab_size()

    def __len__(self) -> int:
        return self.vocab_size

    def encode(self, text: str) -> list[int]:
        return self._tok.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return [e.ids for e in self._tok.encode_batch(texts, add_special_tokens=False)]

    def tokens(self, text: str) -> list[str]:
        """The subword strings of ``text`` (for looking at attention maps)."""
        return self._tok.encode(text, add_special_tokens=False).tokens

    def id_to_token(self, i: int) -> str | None:
        return self._tok.id_to_token(int(i))

    def token_to_id(self, token: str) -> int | None:
        return self._tok.token_to_id(token)

    def decode(self, ids) -> str:
        """Text of ``ids`` (a list or 1-D tensor): cut at the first EOS, specials dropped."""
        ids = [int(i) for i in ids]
        if self.eos_id in ids:
            ids = ids[:ids.index(self.eos_id)]
        return self._tok.decode(ids, skip_special_tokens=True)

    def decode_batch(self, batch) -> list[str]:
        return [self.decode(ids) for ids in batch]

    def to_str(self) -> str:
        """The whole tokenizer as a JSON string (e.g. to store inside a checkpoint)."""
        return self._tok.to_str()

    @classmethod
    def from_str(cls, text: str) -> SubwordTokenizer:
        return cls(Tokenizer.from_str(text))

    def save(self, path: str | Path) -> None:
        """Write the tokenizer as JSON, atomically (temporary file + ``os.replace``)."""
        atomic_write_text(Path(path), self.to_str())

    @classmethod
    def load(cls, path: str | Path) -> SubwordTokenizer:
        return cls.from_str(Path(path).read_text(encoding="utf-8"))

    def __eq__(self, other) -> bool:
        return isinstance(other, SubwordTokenizer) and (
            json.loads(self.to_str()) == json.loads(other.to_str()))

    def __repr__(self) -> str:
        return f"SubwordTokenizer(vocab_size={self.vocab_size})"


def load_or_train(path: Path, texts: Callable[[], Iterable[str]], vocab_size: int,
                  progress: bool = False) -> SubwordTokenizer:
    """The tokenizer cached at ``path``, else one trained on ``texts()`` and saved there.

    The cache is verified when read (``read_cached``): a file that is truncated, garbled, not
    a tokenizer of this project or larger than ``vocab_size`` is trained again from the
    corpus, with a one-line warning naming it (the corpus is the source of truth, so nothing
    is lost; a checkpoint trained with the old vocabulary is then refused by
    ``checkpoint.check_tokenizer``, never used with another one).
    """
    if path.exists():
        tokenizer, problem = read_cached(path, vocab_size)
        if tokenizer is not None:
            return tokenizer
        print(f"warning: {path}: {problem}; training the vocabulary again from the corpus",
              file=sys.stderr)
    elif progress:
        print(f"training a {vocab_size}-token BPE vocabulary -> {path}")
    tokenizer = SubwordTokenizer.train(texts(), vocab_size)
    tokenizer.save(path)
    return tokenizer


def read_cached(path: Path, vocab_size: int | None = None):
    """``(tokenizer, None)`` from a sound cached tokenizer file, else ``(None, what is wrong)``.

    Sound: UTF-8 that ``tokenizers`` parses, with the specials at their ids, and no more than
    ``vocab_size`` tokens.  A file that cannot be read at all (permissions, a failing disk)
    raises ``DataError`` naming it, since training again would not help.
    """
    try:
        data = path.read_bytes()
    except OSError as e:
        raise DataError(f"{path}: cannot read the cached vocabulary ({e.strerror or e}); "
                        "check the file's permissions and the disk, or delete it to train "
                        "the vocabulary again") from e
    try:
        tokenizer = SubwordTokenizer.from_str(data.decode("utf-8"))
    except Exception as e:  # tokenizers reports a bad file as a bare Exception
        reason = (str(e).splitlines() or [type(e).__name__])[0]
        return None, f"not a readable tokenizer file ({len(data)} bytes: {reason})"
    if vocab_size is not None and tokenizer.vocab_size > vocab_size:
        return None, f"holds {tokenizer.vocab_size} tokens, more than the {vocab_size} asked for"
    return tokenizer, None
