"""``load_dataset``, ``TranslationDataset`` and ``download``: aligned text, subword ids, batches.

A dataset reads a split on first use: its aligned sentences (``texts``), their subword ids
(cached on disk for downloaded corpora), the training filter (``filter_report``) and batches.
Only the ``train`` split is filtered (empty, over-long and badly mismatched pairs, Section
5.1's batching needs none of them); evaluation splits keep every pair, so ``examples(split)[i]``
is ``texts(split)[i]`` there and BLEU is computed on the complete test set.

Every dataset also answers to the split names ``"val"`` and ``"test"`` (``aliases``): for
Multi30k "test" is test_2016_flickr, for WMT14 "val"/"test" are newstest2013/newstest2014.
"""

from __future__ import annotations

import functools
import hashlib
import json
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from .batching import Batch, Ragged, batch_stats, filter_pairs, make_batches
from .corpora import FILE_SIZES, ensure_files, get_info, multi30k_texts
from .fetch import atomic_output, resolve_data_dir
from .tasks import copy_task, numbers_task
from .tokenizer import SETTINGS, SubwordTokenizer, load_or_train
from .wmt14 import TRAIN, get_pair, prepare, wmt14_texts

TextPair = tuple[list[str], list[str]]


class TranslationDataset:
    """Sentence pairs of one language direction, split by split, with a shared tokenizer."""

    def __init__(self, name: str, src_lang: str, tgt_lang: str, tokenizer: SubwordTokenizer,
                 splits: tuple[str, ...], load_texts: Callable[[str], TextPair], *,
                 aliases: dict[str, str] | None = None, max_len: int = 256,
                 max_ratio: float = 3.0, filter_splits: tuple[str, ...] = ("train",),
                 cache_dir: Path | None = None, data_key: str = "",
                 pair_counts: dict[str, int] | None = None, tokenizer_path: Path | None = None):
        self.name, self.src_lang, self.tgt_lang = name, src_lang, tgt_lang
        self.tokenizer, self.splits = tokenizer, tuple(splits)
        self.aliases = dict(aliases or {})
        self.max_len, self.max_ratio, self.filter_splits = max_len, max_ratio, filter_splits
        self.cache_dir, self.data_key = cache_dir, data_key  # where and for which data to cache
        self.pair_counts = dict(pair_counts or {})  # pairs per split, known without reading
        self.tokenizer_path = tokenizer_path  # the cached vocabulary file (None: generated)
        self.filter_report: dict[str, dict[str, int]] = {}  # filled as splits are first used
        self._load_texts = load_texts
        self._texts: dict[str, TextPair] = {}
        self._ids: dict[str, tuple[Ragged, Ragged, np.ndarray]] = {}

    @classmethod
    def from_texts(cls, name: str, src_lang: str, tgt_lang: str, tokenizer: SubwordTokenizer,
                   texts: dict[str, TextPair], **kwargs) -> TranslationDataset:
        return cls(name, src_lang, tgt_lang, tokenizer, tuple(texts), texts.__getitem__,
                   **kwargs)

    def resolve(self, split: str) -> str:
        """The canonical name of ``split`` (resolving "val"/"test" aliases)."""
        split = self.aliases.get(split, split) if split not in self.splits else split
        if split not in self.splits:
            raise ValueError(f"{self.name} has no split {split!r}; splits: {self.splits}, "
                             f"aliases: {self.aliases}")
        return split

    def texts(self, split: str) -> TextPair:
        """All aligned (sources, references) of ``split``, unfiltered (do not modify)."""
        split = self.resolve(split)
        if split not in self._texts:
            src, tgt = self._load_texts(split)
            if len(src) != len(tgt):
                raise ValueError(f"{self.name}/{split}: {len(src)} sources, {len(tgt)} targets")
            self._texts[split] = (src, tgt)
        return self._texts[split]

    def _tokenized(self, split: str) -> tuple[Ragged, Ragged, np.ndarray]:
        """(source ids, target ids, kept positions) of ``split``, all pairs tokenized."""
        split = self.resolve(split)
        if split not in self._ids:
            src, tgt = self._cached_ids(split)
            if split in self.filter_splits:
                kept, report = filter_pairs(src.lengths(), tgt.lengths(), max_len=self.max_len,
                                            max_ratio=self.max_ratio)
            else:
                kept = np.arange(len(src))
                report = {"total": len(src), "kept": len(src), "empty": 0, "too_long": 0,
                          "ratio": 0}
            self.filter_report[split] = report
            self._ids[split] = (src, tgt, kept)
        return self._ids[split]

    def _cached_ids(self, split: str) -> tuple[Ragged, Ragged]:
        """Subword ids of every pair of ``split``: read from the cache file when it holds a
        sound copy, else encoded from the texts (and cached).  A cache file that is unreadable
        or does not match the corpus is rebuilt, with a warning: the corpus is the source of
        truth, so nothing is lost."""
        path = None
        if self.cache_dir is not None:
            key = _digest(self.tokenizer.to_str(), self.data_key)[:12]
            path = self.cache_dir / f"ids-{split}.{self.src_lang}-{self.tgt_lang}-{key}.npz"
            if path.exists():
                cached, problem = self._read_cache(path, split)
                if cached is not None:
                    return cached
                print(f"warning: {path}: {problem}; rebuilding it from the corpus",
                      file=sys.stderr)
        src, tgt = (self._encode(text) for text in self.texts(split))
        if path is not None:
            with atomic_output(path) as f:
                np.savez(f, src_flat=src.flat, src_offsets=src.offsets, tgt_flat=tgt.flat,
                         tgt_offsets=tgt.offsets)
        return src, tgt

    def _read_cache(self, path: Path, split: str):
        """((source ids, target ids), None) from a sound cache file, else (None, what is
        wrong with it)."""
        try:
            with np.load(path) as z:
                src = Ragged(z["src_flat"], z["src_offsets"])
                tgt = Ragged(z["tgt_flat"], z["tgt_offsets"])
        except (zipfile.BadZipFile, ValueError, EOFError, KeyError, OSError) as e:
            return None, f"unreadable ({type(e).__name__}: {e})"
        problem = (_ragged_problem(src, self.tokenizer.vocab_size, "source")
                   or _ragged_problem(tgt, self.tokenizer.vocab_size, "target"))
        if problem is None:
            expected = self._pair_count(split)
            if not len(src) == len(tgt) == expected:
                problem = (f"holds {len(src)} source and {len(tgt)} target sentences where "
                           f"the corpus has {expected} pairs")
        return (None, problem) if problem else ((src, tgt), None)

    def _pair_count(self, split: str) -> int:
        """How many pairs ``split`` has: from ``pair_counts`` if known, else from its texts."""
        if split in self.pair_counts:
            return self.pair_counts[split]
        return len(self.texts(split)[0])

    def _encode(self, texts: list[str], chunk: int = 100_000) -> Ragged:
        """Subword ids of ``texts``, encoded in chunks (millions of Encodings would not fit)."""
        return Ragged.concat([Ragged.from_lists(self.tokenizer.encode_batch(texts[i:i + chunk]))
                              for i in range(0, len(texts), chunk)])

    def kept_indices(self, split: str) -> list[int]:
        """Positions in ``texts(split)`` of the pairs that survived filtering."""
        return self._tokenized(split)[2].tolist()

    def examples(self, split: str) -> list[tuple[list[int], list[int]]]:
        """Subword ids (no specials) of the kept pairs.  Builds Python lists: fine for small
        corpora; for WMT14 prefer ``batches``."""
        src, tgt, kept = self._tokenized(split)
        return [(src[i].tolist(), tgt[i].tolist()) for i in kept.tolist()]

    def batches(self, split: str, max_tokens: int, *, shuffle: bool = True, seed: int = 0,
                epoch: int = 0, rank: int = 0, world_size: int = 1) -> list[Batch]:
        """Length-bucketed batches of at most ``max_tokens`` source and target positions each
        (padding included); see :func:`make_batches`.  ``Batch.indices`` point into
        ``texts(split)``."""
        src, tgt, kept = self._tokenized(split)
        tok = self.tokenizer
        return make_batches(src, tgt, max_tokens, subset=kept, shuffle=shuffle, seed=seed,
                            epoch=epoch, rank=rank, world_size=world_size, pad_id=tok.pad_id,
                            bos_id=tok.bos_id, eos_id=tok.eos_id)

    def batch_stats(self, split: str, max_tokens: int) -> dict:
        """Counts of the batches ``batches(split, max_tokens)`` would make (see
        :func:`batch_stats`): cheap enough to plan a step's size on millions of pairs."""
        src, tgt, kept = self._tokenized(split)
        return batch_stats(src, tgt, max_tokens, subset=kept)

    def __repr__(self) -> str:
        return (f"TranslationDataset({self.name!r}, {self.src_lang}->{self.tgt_lang}, "
                f"splits={self.splits}, vocab_size={self.tokenizer.vocab_size})")


def _ragged_problem(r: Ragged, vocab_size: int, side: str) -> str | None:
    """What makes ``r`` unusable as token ids (None if nothing): offsets that do not start at
    0, go backwards or miss the end of the flat array, or ids outside the vocabulary."""
    flat, offsets = r.flat, r.offsets
    if (flat.ndim != 1 or offsets.ndim != 1 or len(offsets) == 0
            or flat.dtype.kind not in "iu" or offsets.dtype.kind not in "iu"):
        return f"{side} arrays of the wrong shape or type"
    if offsets[0] != 0 or offsets[-1] != len(flat) or np.any(np.diff(offsets) < 0):
        return f"{side} offsets inconsistent with its {len(flat)} token ids"
    if len(flat) and (flat.min() < 0 or flat.max() >= vocab_size):
        return f"{side} token ids outside the vocabulary of {vocab_size}"
    return None


def _wmt14_pair_counts(marker: str, splits, train: tuple[str, ...] = TRAIN) -> dict[str, int]:
    """Pairs per WMT14 split from the line counts ``prepare`` recorded (so that checking a
    cache file of the 4.5M (EN-DE) or 36M (EN-FR) training pairs does not read their text);
    ``train`` names the corpora of the training split."""
    lines = json.loads(marker).get("lines", {})
    corpora = {s: train if s == "train" else (s,) for s in splits}
    return {s: sum(lines[c] for c in cs) for s, cs in corpora.items()
            if all(c in lines for c in cs)}


def _digest(*parts: str) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()


def _pair(name: str, src: str | None, tgt: str | None) -> tuple[str, str]:
    info = get_info(name)
    if src is None and tgt is None:
        return info.default_pair
    if src is None or tgt is None:  # one given: the other is the dataset's other language
        given = src or tgt
        others = [lang for lang in info.default_pair if lang != given]
        src, tgt = (src, others[0]) if src else (others[0], tgt)
    if src == tgt or src not in info.langs or tgt not in info.langs:
        raise ValueError(f"{name}: languages must be two of {info.langs}, got {src}->{tgt}")
    if not info.has_pair(src, tgt):
        known = ", ".join("-".join(p) for p in info.pairs)
        raise ValueError(f"{name} has the pairs {known} (either direction), got {src}->{tgt}")
    return src, tgt


def load_dataset(name: str, src: str | None = None, tgt: str | None = None, *,
                 vocab_size: int | None = None, data_dir=None, seed: int = 0,
                 max_len: int = 256, max_ratio: float = 3.0, progress: bool = True,
                 **task_kwargs) -> TranslationDataset:
    """A dataset by name: ``"copy"``, ``"numbers"`` (generated, offline), ``"multi30k"``
    (de/en/fr) or ``"wmt14"`` (en-de, the default, or en-fr, either direction).  Downloads what
    is missing (see ``download``); trains the shared BPE vocabulary once per corpus, language
    pair and size, and caches it.  ``vocab_size`` defaults to the pair's (WMT14: 37000 for
    EN-DE, 32000 for EN-FR, as in Section 5.1).

    ``seed`` and ``task_kwargs`` shape the generated tasks (see ``tasks.py``); ``max_len`` and
    ``max_ratio`` configure the training-split filter.
    """
    info = get_info(name)
    src, tgt = _pair(name, src, tgt)
    vocab_size = vocab_size or info.default_vocab_size(src, tgt)
    options = dict(aliases=info.aliases, max_len=max_len, max_ratio=max_ratio)
    if name in ("copy", "numbers"):
        splits = (copy_task if name == "copy" else numbers_task)(seed, **task_kwargs)
        if (src, tgt) != info.default_pair:
            splits = {s: (b, a) for s, (a, b) in splits.items()}
        train_src, train_tgt = splits["train"]  # BPE needs only a sample of these tasks
        tokenizer = SubwordTokenizer.train(train_src[:4000] + train_tgt[:4000], vocab_size)
        return TranslationDataset.from_texts(name, src, tgt, tokenizer, splits, **options)
    if task_kwargs:
        raise TypeError(f"{name} takes no task options, got {sorted(task_kwargs)}")
    data_dir = resolve_data_dir(data_dir)
    if name == "multi30k":  # small: fetch, verify and read every split up front
        texts = {s: multi30k_texts(data_dir, s, src, tgt, progress) for s in info.splits}
        load_texts = texts.__getitem__
        sides = (0, 1) if src < tgt else (1, 0)  # the same key for de-en and en-de
        data_key = _digest(*("\n".join(texts[s][i]) for s in info.splits for i in sides))
    else:
        pair = get_pair(src, tgt)
        data_key = prepare(data_dir, progress, pair).read_text()  # digests, line counts
        options["pair_counts"] = _wmt14_pair_counts(data_key, info.splits, pair.train)

        @functools.cache  # read the 4.5M (36M) training pairs only once
        def load_texts(split):
            return wmt14_texts(data_dir, split, src, tgt, progress)
    langs = "-".join(sorted((src, tgt)))
    key = _digest(json.dumps(SETTINGS, sort_keys=True), langs, data_key)[:8]
    path = data_dir / name / f"tokenizer-{langs}-bpe{vocab_size}-{key}.json"

    def training_text():
        a, b = load_texts("train")
        return a + b

    tokenizer = load_or_train(path, training_text, vocab_size, progress)
    return TranslationDataset(name, src, tgt, tokenizer, info.splits, load_texts,
                              cache_dir=data_dir / name, data_key=data_key,
                              tokenizer_path=path, **options)


def _files_for(name: str, src: str | None, tgt: str | None) -> list[str]:
    """The files ``download`` fetches for dataset ``name`` and the given languages: WMT14's
    archives of one pair (default EN-DE); Multi30k's files of the pair, or all when no
    language is given."""
    info = get_info(name)
    if name == "wmt14":
        return get_pair(*_pair(name, src, tgt)).archives
    if name == "multi30k" and (src or tgt):
        langs = _pair(name, src, tgt)
        return sorted(f for f in info.files if f.split(".")[-2] in langs)
    return sorted(info.files)


def available_offline(name: str, src: str | None = None, tgt: str | None = None,
                      data_dir=None) -> bool:
    """Whether ``load_dataset(name, src, tgt)`` would download nothing: a generated task, or
    every file of the pair in the cache (WMT14: the pair prepared, its marker written last)."""
    if not get_info(name).files:
        return True
    folder = resolve_data_dir(data_dir) / name
    if name == "wmt14":
        return (folder / get_pair(*_pair(name, src, tgt)).marker).is_file()
    return all((folder / f).is_file() for f in _files_for(name, src, tgt))


def download(name: str, data_dir=None, progress: bool = True, *, src: str | None = None,
             tgt: str | None = None) -> Path:
    """Fetch and verify the files of dataset ``name`` into the cache; return its folder.

    This is what ``python -m transformer download NAME [--src L --tgt L] [--data-dir DIR]``
    calls.  Generated tasks need nothing.  For WMT14 the pair decides which archives are
    fetched (none given: English-German, as ``load_dataset`` defaults to; ``src="en",
    tgt="fr"``: English-French), and they are also unpacked into aligned text files.  For
    Multi30k a pair fetches only its two languages' files, none fetches all.
    """
    info = get_info(name)
    folder = resolve_data_dir(data_dir) / name
    if not info.files:
        print(f"{name}: generated on the fly, nothing to download")
        return folder
    files = _files_for(name, src, tgt)
    if name == "wmt14":
        prepare(folder.parent, progress=progress, pair=get_pair(*_pair(name, src, tgt)))
    else:
        ensure_files(name, files, folder.parent, progress)
    print(f"{name}: {len(files)} files verified in {folder}")
    return folder


def _human(n: int) -> str:
    for unit, size in (("GB", 10**9), ("MB", 10**6), ("kB", 10**3)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} bytes"


def download_size(name: str, src: str | None = None, tgt: str | None = None) -> dict:
    """What ``download(name, src=src, tgt=tgt)`` would fetch and keep, without fetching
    anything (for a dry run):

    ``files``: file name -> ``{"bytes", "exact", "source"}`` (where the number comes from);
    ``download_bytes``: their sum; ``text_bytes``: the extracted text (WMT14; an estimate);
    ``stored_bytes``: what the cache holds afterwards (the archives are kept, verified, next
    to the text; the tokenizer and its id caches come on top); ``exact``: whether every
    number is exact; ``summary``: one line, e.g. "wmt14 en-fr: about 6.6 GB to download ...".
    """
    info = get_info(name)
    if not info.files:
        return {"dataset": name, "pair": None, "files": {}, "download_bytes": 0,
                "text_bytes": 0, "stored_bytes": 0, "exact": True,
                "summary": f"{name}: generated on the fly, nothing to download"}
    files = _files_for(name, src, tgt)
    sizes = {f: FILE_SIZES[name][f] for f in files}
    label, pair, text_bytes = name, None, 0
    if name == "wmt14":
        spec = get_pair(*_pair(name, src, tgt))
        pair, text_bytes = "-".join(spec.langs), spec.text_bytes
        label = f"{name} {pair}"
    elif src or tgt:
        pair = "-".join(_pair(name, src, tgt))
        label = f"{name} {pair}"
    total = sum(s.bytes for s in sizes.values())
    exact = all(s.exact for s in sizes.values()) and not text_bytes
    about = "" if exact else "about "
    stored = total + text_bytes
    kept = f"{about}{_human(stored)} stored" + (" (archives + extracted text)" if text_bytes
                                                 else "")
    summary = (f"{label}: {about}{_human(total)} to download ({len(files)} files), {kept}"
               + ("" if exact else "; estimates included, see data/README.md"))
    return {"dataset": name, "pair": pair,
            "files": {f: {"bytes": s.bytes, "exact": s.exact, "source": s.source}
                      for f, s in sizes.items()},
            "download_bytes": total, "text_bytes": text_bytes, "stored_bytes": stored,
            "exact": exact, "summary": summary}
