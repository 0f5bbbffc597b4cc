"""WMT 2014 English-German and English-French, the data of the paper (Section 5.1, Table 2).

English-German: Europarl v7, Common Crawl and News Commentary v9 (about 4.5 million sentence
pairs).  English-French ("36M sentences"): the same three corpora in their fr-en versions plus
the UN corpus and the 10^9 French-English ("giga") corpus.  Both: development set newstest2013,
test set newstest2014 (the full 3003-sentence version that sacreBLEU calls ``wmt14/full``).

``prepare`` downloads the archives the pair needs (and only those; the five EN-DE archives are
shared with EN-FR), streams the needed members out of them (strict UTF-8, whitespace cleaned,
line counts of both sides compared), and writes one aligned text file per corpus and language:
``<data_dir>/wmt14/text/`` for EN-DE, ``<data_dir>/wmt14/text-en-fr/`` for EN-FR.  Members are
read and written line by line, never held in memory whole (the giga corpus is a gzip'd file
inside a plain tar, decompressed on the fly).  A marker, written last (``prepared.json`` for
EN-DE, ``prepared-en-fr.json`` for EN-FR), records the archives' digests and the line counts
(and keys the caches derived from them); without it nothing extracted is used, and a failed run
is simply redone.
"""

from __future__ import annotations

import gzip
import json
import re
import sys
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path

from .corpora import clean, decode_lines, ensure_files, read_parallel
from .fetch import DataError, WriteError, atomic_output, atomic_write_text


@dataclass(frozen=True)
class Pair:
    """Where one WMT14 language pair's data is: corpus -> (archive, member name template with
    ``{lang}`` and, for SGM files, ``{role}``)."""

    key: str  # the two languages, sorted: "de-en", "en-fr"
    langs: tuple[str, str]  # English first, the order of messages and checks
    corpora: dict[str, tuple[str, str]]
    train: tuple[str, ...]  # concatenated in this order
    sgm_role: dict[str, str]  # lang -> "src"/"ref": which SGM file of the test set to read
    marker: str  # file name under <data_dir>/wmt14/
    text_dir: str  # folder name under <data_dir>/wmt14/
    label: str  # how progress messages name it
    text_bytes: int  # estimate of the extracted text, for dry runs (see data/README.md)

    @property
    def archives(self) -> list[str]:
        return sorted({archive for archive, _ in self.corpora.values()})


EN_DE = Pair(
    "de-en", ("en", "de"),
    {
        "europarl-v7": ("training-parallel-europarl-v7.tgz", "training/europarl-v7.de-en.{lang}"),
        "commoncrawl": ("training-parallel-commoncrawl.tgz", "commoncrawl.de-en.{lang}"),
        "news-commentary-v9": ("training-parallel-nc-v9.tgz",
                               "training/news-commentary-v9.de-en.{lang}"),
        "newstest2013": ("dev.tgz", "dev/newstest2013.{lang}"),
        "newstest2014": ("test-full.tgz", "test-full/newstest2014-deen-{role}.{lang}.sgm"),
    },
    ("europarl-v7", "commoncrawl", "news-commentary-v9"),
    {"en": "src", "de": "ref"},  # English is the source side of the en-de test set
    "prepared.json", "text", "wmt14",
    1_330_000_000,  # estimate: Hugging Face's wmt14 de-en train split, 1,358,410,408 bytes
)
EN_FR = Pair(
    "en-fr", ("en", "fr"),
    {
        "europarl-v7": ("training-parallel-europarl-v7.tgz", "training/europarl-v7.fr-en.{lang}"),
        "commoncrawl": ("training-parallel-commoncrawl.tgz", "commoncrawl.fr-en.{lang}"),
        "un": ("training-parallel-un.tgz", "un/undoc.2000.fr-en.{lang}"),
        "news-commentary-v9": ("training-parallel-nc-v9.tgz",
                               "training/news-commentary-v9.fr-en.{lang}"),
        "giga-fren": ("training-giga-fren.tar", "giga-fren.release2.fixed.{lang}.gz"),
        "newstest2013": ("dev.tgz", "dev/newstest2013.{lang}"),
        "newstest2014": ("test-full.tgz", "test-full/newstest2014-fren-{role}.{lang}.sgm"),
    },
    ("europarl-v7", "commoncrawl", "un", "news-commentary-v9", "giga-fren"),
    {"en": "src", "fr": "ref"},  # sacreBLEU's wmt14/full en-fr: src.en and ref.fr
    "prepared-en-fr.json", "text-en-fr", "wmt14 en-fr",
    14_500_000_000,  # estimate: Hugging Face's wmt14 fr-en train split, 14,752,554,924 bytes
)
PAIRS = {p.key: p for p in (EN_DE, EN_FR)}

# EN-DE, the default pair, under module-level names
LANGS, CORPORA, TRAIN, SGM_ROLE = EN_DE.langs, EN_DE.corpora, EN_DE.train, EN_DE.sgm_role


def get_pair(src: str, tgt: str) -> Pair:
    """The WMT14 pair of languages ``src`` and ``tgt`` (either direction)."""
    key = "-".join(sorted((src, tgt)))
    if key not in PAIRS:
        known = ", ".join("-".join(p.langs) for p in PAIRS.values())
        raise ValueError(f"wmt14 has {known} (either direction); got src={src!r}, tgt={tgt!r}")
    return PAIRS[key]


def _as_pair(pair: Pair | str | None) -> Pair:
    if pair is None:
        return EN_DE
    return pair if isinstance(pair, Pair) else get_pair(*pair.split("-"))


def member_name(corpus: str, lang: str, pair: Pair | str | None = None) -> str:
    pair = _as_pair(pair)
    return pair.corpora[corpus][1].format(lang=lang, role=pair.sgm_role[lang])


def text_path(data_dir: Path, corpus: str, lang: str, pair: Pair | str | None = None) -> Path:
    return data_dir / "wmt14" / _as_pair(pair).text_dir / f"{corpus}.{lang}"


def prepare(data_dir: Path, progress: bool = True, pair: Pair | str | None = None) -> Path:
    """Download, verify and unpack one WMT14 pair (default EN-DE) once; return its marker."""
    pair = _as_pair(pair)
    marker = data_dir / "wmt14" / pair.marker
    texts = [text_path(data_dir, c, lang, pair) for c in pair.corpora for lang in pair.langs]
    if marker.exists() and all(p.exists() for p in texts):
        problem = marker_problem(marker, pair)
        if problem is None:
            return marker
        print(f"warning: {marker}: {problem}; unpacking {pair.label} again from its verified "
              "archives", file=sys.stderr)
    archives = pair.archives
    digests = ensure_files("wmt14", archives, data_dir, progress)
    counts = {}
    for archive in archives:
        corpora = [c for c, (a, _) in pair.corpora.items() if a == archive]
        _extract(data_dir, archive, corpora, pair, progress)
        for corpus in corpora:
            counts[corpus] = _check_pair(data_dir, corpus, pair)
    record = {"archives": digests, "lines": counts}  # also the cache key of what derives
    atomic_write_text(marker, json.dumps(record, indent=1, sort_keys=True) + "\n")
    if progress:
        print(f"{pair.label}: {sum(counts[c] for c in pair.train)} training pairs, "
              f"{counts['newstest2013']} dev, {counts['newstest2014']} test")
    return marker


def marker_problem(marker: Path, pair: Pair) -> str | None:
    """What is wrong with a pair's marker (None if nothing): it must be the JSON ``prepare``
    writes, with a digest for each archive and a line count for each corpus of the pair."""
    try:
        record = json.loads(marker.read_bytes().decode("utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as e:
        return f"unreadable ({type(e).__name__}: {e})"
    lines = record.get("lines") if isinstance(record, dict) else None
    archives = record.get("archives") if isinstance(record, dict) else None
    if not isinstance(lines, dict) or not isinstance(archives, dict):
        return "not the record prepare writes (no 'lines' and 'archives')"
    missing = sorted(set(pair.corpora) - {c for c, n in lines.items()
                                          if isinstance(n, int) and n >= 0})
    missing += sorted(set(pair.archives) - set(archives))
    return f"lacks the line count or digest of {', '.join(missing)}" if missing else None


def _tar_mode(archive: str) -> str:
    """Stream mode of ``tarfile``: gzip'd for .tgz/.tar.gz, plain for .tar."""
    return "r|" if archive.endswith(".tar") else "r|gz"


def _extract(data_dir: Path, archive: str, corpora: list[str], pair: Pair,
             progress: bool) -> None:
    """One streaming pass over ``archive``, writing the members that ``corpora`` need."""
    path = data_dir / "wmt14" / archive
    wanted = {member_name(c, lang, pair): (c, lang) for c in corpora for lang in pair.langs}
    found, sgm_keys = set(), {}
    try:
        with tarfile.open(path, _tar_mode(archive)) as tar:
            for member in tar:
                name = member.name.removeprefix("./")  # "./x" if the tar was made of "."
                if name not in wanted or not member.isfile():
                    continue
                corpus, lang = wanted[name]
                label = f"{archive}:{name}"
                if progress:
                    print(f"extracting {label}")
                try:
                    stream = tar.extractfile(member)
                    if name.endswith(".sgm"):  # a few hundred kB: parsed whole
                        segments = parse_sgm(stream.read(), label)
                        sgm_keys[name] = [s[:2] for s in segments]
                        lines = [text for _, _, text in segments]
                    else:
                        if name.endswith(".gz"):  # giga-fren: gzip inside the tar
                            stream = gzip.GzipFile(fileobj=stream, mode="rb")
                        lines = _decode_stream(stream, label)
                    _write_lines(text_path(data_dir, corpus, lang, pair), lines)
                except WriteError:
                    raise  # a full disk, not a damaged archive
                except (tarfile.TarError, EOFError, OSError, zlib.error) as e:
                    raise DataError(f"{path}: cannot unpack {name} ({e}); the archive is "
                                    "truncated or corrupt - delete it and download again") from e
                found.add(name)
    except WriteError:
        raise
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
                text_path(data_dir, corpus, lang, pair).unlink(missing_ok=True)
            raise


def _decode_stream(stream, label: str):
    """Yield cleaned lines of a binary stream, raising on invalid UTF-8 with the line number.
    Lines end at ``\\n`` only (iterating a binary stream), as ``decode_lines`` splits them."""
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


def _check_pair(data_dir: Path, corpus: str, pair: Pair | str | None = None) -> int:
    """Line counts of both sides must agree; on mismatch the extracted files are removed."""
    pair = _as_pair(pair)
    paths = [text_path(data_dir, corpus, lang, pair) for lang in pair.langs]
    counts = []
    for p in paths:
        with open(p, "rb") as f:
            counts.append(sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b"")))
    if counts[0] != counts[1]:
        archive = data_dir / "wmt14" / pair.corpora[corpus][0]
        for p in paths:
            p.unlink()
        a, b = (member_name(corpus, lang, pair) for lang in pair.langs)
        raise DataError(f"{archive.name}: {a} has {counts[0]} lines but {b} has {counts[1]}: "
                        f"not aligned. Delete {archive} and download again.")
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
    """Aligned (source, target) sentences of ``train``, ``newstest2013`` or ``newstest2014``.

    The extracted text files are verified as they are read: strict UTF-8, both sides with
    the line count the marker recorded when they were unpacked.  A damaged one (cut short,
    changed) is unpacked again from the verified archives, with a one-line warning naming
    it; if that does not help, ``DataError`` names the file.
    """
    pair = get_pair(src, tgt)
    corpora = pair.train if split == "train" else (split,)
    marker = prepare(data_dir, progress, pair)
    try:
        return _read_texts(data_dir, corpora, src, tgt, pair, marker)
    except DataError as e:
        print(f"warning: {_one_line(e)}; unpacking {pair.label} again from its verified "
              "archives", file=sys.stderr)
        marker.unlink(missing_ok=True)
    marker = prepare(data_dir, progress, pair)
    try:
        return _read_texts(data_dir, corpora, src, tgt, pair, marker)
    except DataError as e:
        raise DataError(f"{_one_line(e)}, even unpacked again from the verified archives: "
                        f"check the disk that holds {marker.parent}") from e


def _read_texts(data_dir: Path, corpora, src: str, tgt: str, pair: Pair, marker: Path):
    """The aligned lines of ``corpora``, each side checked against the marker's count."""
    lines = json.loads(marker.read_text(encoding="utf-8"))["lines"]
    sources, targets = [], []
    for corpus in corpora:
        paths = [text_path(data_dir, corpus, lang, pair) for lang in (src, tgt)]
        s, t = read_parallel(*paths)
        if len(s) != lines[corpus]:
            raise DataError(f"{paths[0]} has {len(s)} lines where {marker.name} records "
                            f"{lines[corpus]}")
        sources += s
        targets += t
    return sources, targets


def _one_line(e: Exception) -> str:
    return " ".join(str(e).split())


def archives_for(src: str, tgt: str) -> list[str]:
    """The archives ``prepare`` fetches for the pair ``src``-``tgt``."""
    return get_pair(src, tgt).archives
