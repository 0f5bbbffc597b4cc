"""WMT 2014 English-German, the data of the paper (Section 5.1).

Training data: Europarl v7, Common Crawl and News Commentary v9 (about 4.5 million sentence
pairs); development set newstest2013; test set newstest2014 (the full 3003-sentence version
that sacreBLEU calls ``wmt14/full``).  ``prepare`` downloads the five archives of the WMT 2014
shared task, streams the needed members out of them (strict UTF-8, whitespace cleaned, line
counts of both sides compared), and writes one aligned text file per corpus and language under
``<data_dir>/wmt14/text/``.  A ``prepared.json`` marker, written last, records the archives'
digests and the line counts (and keys the caches derived from them); without it nothing
extracted is used, and a failed run is simply redone.
"""

from __future__ import annotations

import json
import re
import tarfile
import zlib
from pathlib import Path

from .corpora import DATASETS, clean, decode_lines, ensure_files, read_parallel
from .fetch import DataError, atomic_output, atomic_write_text

LANGS = ("en", "de")
# corpus -> (archive, member name with "{lang}" for the language)
CORPORA = {
    "europarl-v7": ("training-parallel-europarl-v7.tgz", "training/europarl-v7.de-en.{lang}"),
    "commoncrawl": ("training-parallel-commoncrawl.tgz", "commoncrawl.de-en.{lang}"),
    "news-commentary-v9": ("training-parallel-nc-v9.tgz",
                           "training/news-commentary-v9.de-en.{lang}"),
    "newstest2013": ("dev.tgz", "dev/newstest2013.{lang}"),
    "newstest2014": ("test-full.tgz", "test-full/newstest2014-deen-{role}.{lang}.sgm"),
}
TRAIN = ("europarl-v7", "commoncrawl", "news-commentary-v9")
SGM_ROLE = {"en": "src", "de": "ref"}  # English is the source side of the en-de test set


def member_name(corpus: str, lang: str) -> str:
    return CORPORA[corpus][1].format(lang=lang, role=SGM_ROLE[lang])


def text_path(data_dir: Path, corpus: str, lang: str) -> Path:
    return data_dir / "wmt14" / "text" / f"{corpus}.{lang}"


def prepare(data_dir: Path, progress: bool = True) -> Path:
    """Download, verify and unpack WMT14 EN-DE once; return the marker file."""
    marker = data_dir / "wmt14" / "prepared.json"
    texts = [text_path(data_dir, c, lang) for c in CORPORA for lang in LANGS]
    if marker.exists() and all(p.exists() for p in texts):
        return marker
    archives = sorted(DATASETS["wmt14"].files)
    digests = ensure_files("wmt14", archives, data_dir, progress)
    counts = {}
    for archive in archives:
        corpora = [c for c, (a, _) in CORPORA.items() if a == archive]
        _extract(data_dir, archive, corpora, progress)
        for corpus in corpora:
            counts[corpus] = _check_pair(data_dir, corpus)
    record = {"archives": digests, "lines": counts}  # also the cache key of what derives
    atomic_write_text(marker, json.dumps(record, indent=1, sort_keys=True) + "\n")
    if progress:
        print(f"wmt14: {sum(counts[c] for c in TRAIN)} training pairs, "
              f"{counts['newstest2013']} dev, {counts['newstest2014']} test")
    return marker


def _extract(data_dir: Path, archive: str, corpora: list[str], progress: bool) -> None:
    """One streaming pass over ``archive``, writing the members that ``corpora`` need."""
    path = data_dir / "wmt14" / archive
    wanted = {member_name(c, lang): (c, lang) for c in corpora for lang in LANGS}
    found, sgm_keys = set(), {}
    try:
        with tarfile.open(path, "r|gz") as tar:
            for member in tar:
                if member.name not in wanted or not member.isfile():
                    continue
                corpus, lang = wanted[member.name]
                stream = tar.extractfile(member)
                label = f"{archive}:{member.name}"
                if progress:
                    print(f"extracting {label}")
                if member.name.endswith(".sgm"):
                    segments = parse_sgm(stream.read(), label)
                    sgm_keys[member.name] = [s[:2] for s in segments]
                    lines = [text for _, _, text in segments]
                else:
                    lines = _decode_stream(stream, label)
                _write_lines(text_path(data_dir, corpus, lang), lines)
                found.add(member.name)
    except (tarfile.TarError, EOFError, OSError, zlib.error) as e:
        raise DataError(f"{path}: cannot unpack ({e}); the archive is truncated or corrupt - "
                        "delete it and download again") from e
    missing = sorted(set(wanted) - found)
    if missing:
        raise DataError(f"{path} lacks member(s) {missing}; is it the right archive? Delete it "
                        "and download again (or check TRANSFORMER_DATA_MIRROR).")
    if sgm_keys:
        try:
            _check_sgm_alignment(path, *sgm_keys.items())
        except DataError:
            for corpus, lang in wanted.values():
                text_path(data_dir, corpus, lang).unlink(missing_ok=True)
            raise


def _decode_stream(stream, label: str):
    """Yield cleaned lines of a binary stream, raising on invalid UTF-8 with the line number."""
    for number, raw in enumerate(stream, 1):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise DataError(f"{label}: invalid UTF-8 on line {number} ({e.reason}); the archive "
                            "is corrupt - delete it and download again") from e
        yield clean(line)


def _write_lines(path: Path, lines) -> None:
    with atomic_output(path, "w") as f:
        for line in lines:
            f.write(line + "\n")


def _check_pair(data_dir: Path, corpus: str) -> int:
    """Line counts of both sides must agree; on mismatch the extracted files are removed."""
    paths = [text_path(data_dir, corpus, lang) for lang in LANGS]
    counts = []
    for p in paths:
        with open(p, "rb") as f:
            counts.append(sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b"")))
    if counts[0] != counts[1]:
        archive = data_dir / "wmt14" / CORPORA[corpus][0]
        for p in paths:
            p.unlink()
        raise DataError(f"{archive.name}: {member_name(corpus, 'en')} has {counts[0]} lines but "
                        f"{member_name(corpus, 'de')} has {counts[1]}: not aligned. Delete "
                        f"{archive} and download again.")
    return counts[0]


_DOC = re.compile(r'<doc\b[^>]*\bdocid="([^"]*)"')
_SEG = re.compile(r'<seg\b[^>]*?\bid="?([^"\s>]*)"?[^>]*>(.*)</seg>')


def parse_sgm(data: bytes, name: str) -> list[tuple[str, str, str]]:
    """(document id, segment id, text) of every ``<seg>`` of a WMT "SGML" file.

    Like sacreBLEU, the text is taken verbatim between the tags (no entity unescaping) and
    whitespace is cleaned, so references match the ones sacreBLEU scores against.
    """
    segments, docid = [], ""
    for number, line in enumerate(decode_lines(data, name), 1):
        if line.startswith("<doc"):
            match = _DOC.search(line)
            docid = match.group(1) if match else ""
        elif line.startswith("<seg"):
            match = _SEG.match(line)
            if match is None:
                raise DataError(f"{name}: malformed <seg> on line {number}: {line[:80]!r}")
            segments.append((docid, match.group(1), clean(match.group(2))))
    return segments


def _check_sgm_alignment(path: Path, *members: tuple[str, list]) -> None:
    """Source and reference SGM files must list the same documents and segments in order."""
    (name_a, a), (name_b, b) = members
    if a != b:
        i = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
        raise DataError(
            f"{path}: {name_a} ({len(a)} segments) and {name_b} ({len(b)} segments) are not "
            f"aligned; first difference at segment {i} (doc, id): "
            f"{a[i] if i < len(a) else None} vs {b[i] if i < len(b) else None}"
        )


def wmt14_texts(data_dir: Path, split: str, src: str, tgt: str, progress: bool = True):
    """Aligned (source, target) sentences of ``train``, ``newstest2013`` or ``newstest2014``."""
    if {src, tgt} != set(LANGS):
        raise ValueError(f"wmt14 is English-German; got src={src!r}, tgt={tgt!r}")
    prepare(data_dir, progress)
    corpora = TRAIN if split == "train" else (split,)
    sources, targets = [], []
    for corpus in corpora:
        s, t = read_parallel(text_path(data_dir, corpus, src), text_path(data_dir, corpus, tgt))
        sources += s
        targets += t
    return sources, targets
