"""A shared source-target subword vocabulary (Section 5.1).

The paper encodes WMT14 EN-DE with byte-pair encoding (Sennrich et al., 2016) into "a shared
source-target vocabulary of about 37000 tokens".  We train BPE with Hugging Face ``tokenizers``
on the training sentences of both languages.  Two pre-tokenizers cut the text before BPE sees
it: Metaspace turns each space into "▁" glued to the next word, then Punctuation splits marks
off the words ("▁Hut," -> "▁Hut" ","), so that "Hut", "Hut," and "Hut." share one token
instead of taking three vocabulary entries.  Decoding joins pieces without a "▁" to the one
before, so spaces and punctuation come back exactly (text seen in training round-trips byte
for byte; characters never seen become ``<unk>`` and are dropped).

Special tokens sit at fixed ids, the ones ``TransformerConfig`` expects:
``<pad>`` = 0, ``<s>`` (BOS) = 1, ``</s>`` (EOS) = 2, ``<unk>`` = 3.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from .fetch import atomic_write_text

SPECIALS = ("<pad>", "<s>", "</s>", "<unk>")
SETTINGS = {"model": "bpe", "pre_tokenizer": "metaspace+punctuation", "min_frequency": 2,
            "version": 2}


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
              min_frequency: int = SETTINGS["min_frequency"]) -> SubwordTokenizer:
        """Learn BPE merges on ``texts`` (source and target sentences together) until the
        vocabulary, specials included, has ``vocab_size`` tokens or no pair is left to merge."""
        tok = Tokenizer(models.BPE(unk_token="<unk>"))
        tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Metaspace(),
                                                     pre_tokenizers.Punctuation()])
        tok.decoder = decoders.Metaspace()
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=min_frequency,
                                      special_tokens=list(SPECIALS), show_progress=False)
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
    """The tokenizer cached at ``path``, else one trained on ``texts()`` and saved there."""
    if path.exists():
        return SubwordTokenizer.load(path)
    if progress:
        print(f"training a {vocab_size}-token BPE vocabulary -> {path}")
    tokenizer = SubwordTokenizer.train(texts(), vocab_size)
    tokenizer.save(path)
    return tokenizer
