"""The corpus registry, strict line reading, and ``download``.

``DATASETS`` names every dataset ``load_dataset`` knows: two generated tasks (no download),
Multi30k (small, real, CPU-sized) and WMT 2014, the paper's data (Section 5.1): English-German
("about 4.5 million sentence pairs") and English-French ("36M sentences", Table 2), both with
dev newstest2013 and test newstest2014.

``CHECKSUMS`` records what each downloaded file must hash to (sha256 hex, or ``"md5:<hex>"``).
It is a plain dict so tests and users can pin further files (``register_checksums``).  Files
with no entry are fetched, reported with their sha256, and checked structurally instead.
``FILE_SIZES`` says how large each file is, so a dry run can tell what a download costs.

Reading is strict: invalid UTF-8, a truncated gzip or two sides of a corpus with different line
counts raise a :class:`DataError` naming the file(s) - pairs are never silently misaligned.
"""

from __future__ import annotations

import gzip
import re
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from .fetch import DataError, fetch, source_for, verify

MULTI30K_HOME = "https://raw.githubusercontent.com/multi30k/dataset/master/data/task1/raw"
MULTI30K_SPLITS = ("train", "val", "test_2016_flickr", "test_2017_flickr", "test_2017_mscoco",
                   "test_2018_flickr")
MULTI30K_LANGS = ("de", "en", "fr")
WMT14_URLS = {  # the WMT 2014 shared task's own downloads (www.statmt.org/wmt14/translation-task)
    "training-parallel-europarl-v7.tgz":
        "https://www.statmt.org/wmt13/training-parallel-europarl-v7.tgz",
    "training-parallel-commoncrawl.tgz":
        "https://www.statmt.org/wmt13/training-parallel-commoncrawl.tgz",
    "training-parallel-nc-v9.tgz": "https://www.statmt.org/wmt14/training-parallel-nc-v9.tgz",
    "dev.tgz": "https://www.statmt.org/wmt14/dev.tgz",
    "test-full.tgz": "https://www.statmt.org/wmt14/test-full.tgz",
    # English-French only: the UN corpus and the 10^9 French-English ("giga") corpus, a plain
    # tar holding one gzip'd file per language
    "training-parallel-un.tgz": "https://www.statmt.org/wmt13/training-parallel-un.tgz",
    "training-giga-fren.tar": "https://www.statmt.org/wmt10/training-giga-fren.tar",
}

CHECKSUMS: dict[str, dict[str, str]] = {
    "multi30k": {  # sha256 of the files as raw.githubusercontent.com serves them
        "train.de.gz": "726e39b2fa9eb9ffb6dc763fb35a179f80fae06ffc5d28b6ace5faa883de28a6",
        "train.en.gz": "d79cfa999dd4c51d2cb42499b6796d5a882c3a8a961923c25a898c90f8bbd56f",
        "train.fr.gz": "622e75069e9f4c577425c4f277116ce66e63a2401c0a2312d90073cb12379a3c",
        "val.de.gz": "f0cba2f995189cf5770f29a8a9a537a3ad3f51657ad873405082ff6863a5e75a",
        "val.en.gz": "14f7d25ddd868909a9213e361768460edcacdd6ab9d1e77b92560dc10c10dc28",
        "val.fr.gz": "ca3106f1a72390591d25f6c45cb4cd39dec4cd3f123e099748a3ce5256c160e9",
        "test_2016_flickr.de.gz":
            "9204244e408ccb38d2a55cfcd344df15005fc42a07a6e55ca6c52b6ababb8cc8",
        "test_2016_flickr.en.gz":
            "611d361c6334bc7246101d48097c13cf5c4413c5befc793cc629934359d532d9",
        "test_2016_flickr.fr.gz":
            "6d326e188d259fb1d04ac19eae3af956559b3a0b93d7635e56c90987c40c8b90",
        "test_2017_flickr.de.gz":
            "a2c89666db00c495cd8513b9d708d5a3acc205d7de312ef2bf5fb7ebc1540aee",
        "test_2017_flickr.en.gz":
            "76a444ee25172e72695cddb13ae4a3bda59430617be88e0bb46b60504f054074",
        "test_2017_flickr.fr.gz":
            "3ba671ceb2299f3304ffafefea7a833d08632fbaf0ba18546f8a2ec2391af496",
        "test_2017_mscoco.de.gz":
            "799e4854c25d601cb6cb6be29eabe5667734c61ace2f495e03e429031a0bc338",
        "test_2017_mscoco.en.gz":
            "aab300bfb4427697987e02cd0aacd44bfe8aa50456231b6474c08038bbed2b58",
        "test_2017_mscoco.fr.gz":
            "754f3072ba9f124569ba5258b32730fc1d214bbf8e0c6dfb2b74401676220db0",
        "test_2018_flickr.de.gz":
            "ddd0130c7d97482dc5197a02141dae8dd79f20f03586c480d675c09a32daf608",
        "test_2018_flickr.en.gz":
            "ef4f4844037d4c5dea75c9a8ed5fd78905967a26f67c255e230cc9780032654d",
        "test_2018_flickr.fr.gz":
            "fb2b83fcceb937a4f7e3e93c1c51c22aba92f1e342391e6b5ba392b16a920501",
    },
    "wmt14": {
        # sacreBLEU's registry entry for wmt14/full
        "test-full.tgz": "md5:a8cd784e006feb32ac6f3d9ec7eb389a",
        # the English-French-only archives, as TensorFlow Datasets' checksum registry records
        # them (tensorflow_datasets/url_checksums/wmt13_translate.txt and wmt15_translate.txt:
        # URL, size in bytes, sha256).  The archives EN-DE shares are not pinned here (EN-DE
        # keeps its checks as they were); their recorded digests are listed in data/README.md.
        "training-parallel-un.tgz":
            "29141b5c1eba149a94f7a59d3b1a834b2e47fe0f8758d68dcd77a3d3f497ee47",
        "training-giga-fren.tar":
            "3ff8319f6919393520559bfbc7ad6a747ec81b3abc7be9993b338d4b017b4d9a",
    },
}


@dataclass(frozen=True)
class FileSize:
    """How many bytes a file is, whether that is exact, and where the number comes from."""

    bytes: int
    exact: bool
    source: str


_TFDS = "TensorFlow Datasets url_checksums (size of the statmt.org file)"
_MIRROR = "the offline mirror's copy, byte-identical to the public home (sha256 in CHECKSUMS)"
_MULTI30K_BYTES = {
    "train.de.gz": 637044, "train.en.gz": 568929, "train.fr.gz": 604242,
    "val.de.gz": 24681, "val.en.gz": 21650, "val.fr.gz": 23001,
    "test_2016_flickr.de.gz": 22890, "test_2016_flickr.en.gz": 21077,
    "test_2016_flickr.fr.gz": 22310, "test_2017_flickr.de.gz": 21471,
    "test_2017_flickr.en.gz": 19138, "test_2017_flickr.fr.gz": 20434,
    "test_2017_mscoco.de.gz": 10230, "test_2017_mscoco.en.gz": 8844,
    "test_2017_mscoco.fr.gz": 9751, "test_2018_flickr.de.gz": 26461,
    "test_2018_flickr.en.gz": 23514, "test_2018_flickr.fr.gz": 25321,
}
FILE_SIZES: dict[str, dict[str, FileSize]] = {
    "multi30k": {f: FileSize(n, True, _MIRROR) for f, n in _MULTI30K_BYTES.items()},
    "wmt14": {
        "training-parallel-europarl-v7.tgz": FileSize(657_632_379, True, _TFDS),
        "training-parallel-commoncrawl.tgz": FileSize(918_311_367, True, _TFDS),
        "training-parallel-nc-v9.tgz": FileSize(80_418_416, True, _TFDS),
        "training-parallel-un.tgz": FileSize(2_365_634_246, True, _TFDS),
        "training-giga-fren.tar": FileSize(
            2_595_102_720, True, _TFDS + "; the same size is logged in tensorflow/tensorflow"
            " issue 4122 (2016)"),
        "dev.tgz": FileSize(
            18_000_000, False, "estimate: WMT15's dev-v2.tgz (newstest2008-2014) is 21,393,583"
            " bytes and WMT14's dev.tgz holds one year less"),
        "test-full.tgz": FileSize(
            4_000_000, False, "estimate: about 20 SGM files of about 3000 segments, gzip'd"),
    },
}


def register_checksums(corpus: str, checksums: dict[str, str]) -> None:
    """Pin (or re-pin) the checksums of some of ``corpus``'s files."""
    CHECKSUMS.setdefault(corpus, {}).update(checksums)


@dataclass(frozen=True)
class DatasetInfo:
    """What ``load_dataset`` needs to know about one dataset."""

    name: str
    langs: tuple[str, ...]
    splits: tuple[str, ...]
    default_pair: tuple[str, str]
    vocab_size: int  # default size of the shared subword vocabulary
    aliases: dict[str, str] = field(default_factory=dict)  # "val"/"test" -> split name
    files: dict[str, str] = field(default_factory=dict)  # file name -> public URL
    description: str = ""
    # the language pairs there is data for (either direction); empty: any two of ``langs``
    pairs: tuple[tuple[str, str], ...] = ()
    # vocabulary size of a pair whose default differs from ``vocab_size``; key "de-en" (sorted)
    pair_vocab_size: dict[str, int] = field(default_factory=dict)

    def has_pair(self, src: str, tgt: str) -> bool:
        if src == tgt or src not in self.langs or tgt not in self.langs:
            return False
        return not self.pairs or any({src, tgt} == set(p) for p in self.pairs)

    def default_vocab_size(self, src: str, tgt: str) -> int:
        """The default shared vocabulary size of the pair ``src``-``tgt``."""
        return self.pair_vocab_size.get("-".join(sorted((src, tgt))), self.vocab_size)


DATASETS: dict[str, DatasetInfo] = {
    "copy": DatasetInfo("copy", ("src", "tgt"), ("train", "val", "test"), ("src", "tgt"), 64,
                        description="copy random symbol sequences (generated)"),
    "numbers": DatasetInfo("numbers", ("en", "de"), ("train", "val", "test"), ("en", "de"), 256,
                           description="English number words to German ones (generated)"),
    "multi30k": DatasetInfo(
        "multi30k", MULTI30K_LANGS, MULTI30K_SPLITS, ("de", "en"), 8000,
        aliases={"test": "test_2016_flickr"},
        files={f"{s}.{lang}.gz": f"{MULTI30K_HOME}/{s}.{lang}.gz"
               for s in MULTI30K_SPLITS for lang in MULTI30K_LANGS},
        description="Multi30k task 1 image captions, de/en/fr (Elliott et al., 2016)"),
    "wmt14": DatasetInfo(
        "wmt14", ("en", "de", "fr"), ("train", "newstest2013", "newstest2014"), ("en", "de"),
        37000,  # EN-DE: "a shared source-target vocabulary of about 37000 tokens" (5.1)
        aliases={"val": "newstest2013", "test": "newstest2014"}, files=dict(WMT14_URLS),
        description="WMT 2014 English-German and English-French, the paper's data (Section 5.1)",
        pairs=(("en", "de"), ("en", "fr")),
        pair_vocab_size={"en-fr": 32000}),  # EN-FR: "a 32000 word-piece vocabulary" (5.1)
}


def get_info(name: str) -> DatasetInfo:
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}")
    return DATASETS[name]


# ---------------------------------------------------------------------------------- reading

_SPACES = re.compile(r"\s+")


def clean(line: str) -> str:
    """Strip and collapse whitespace (as sacreBLEU does to references); BLEU is unaffected."""
    return _SPACES.sub(" ", line.strip())


def decode_lines(data: bytes, name: str) -> list[str]:
    """Strict UTF-8 text split on ``\\n`` only: ``str.splitlines`` would also split on U+2028,
    form feeds etc. that occur inside sentences, and shift every later pair."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise DataError(f"{name}: invalid UTF-8 on line {line} ({e.reason} at byte {e.start}); "
                        "the file is corrupt or not UTF-8 - delete it and download again") from e
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [clean(line) for line in lines]


def read_lines(path: Path) -> list[str]:
    """The cleaned lines of a text file, gzip'd (``.gz``) or not."""
    try:
        data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (EOFError, OSError, zlib.error) as e:
        raise DataError(f"{path}: cannot read ({e}); the file is truncated or corrupt - delete "
                        "it and download again") from e
    return decode_lines(data, str(path))


def check_aligned(src: list[str], tgt: list[str], src_name: str, tgt_name: str) -> None:
    if len(src) != len(tgt):
        raise DataError(f"{src_name} has {len(src)} lines but {tgt_name} has {len(tgt)}: the "
                        "two sides are not aligned line by line. Delete both and download again.")


def read_parallel(src_path: Path, tgt_path: Path) -> tuple[list[str], list[str]]:
    """Aligned lines of two files; different line counts raise :class:`DataError`."""
    src, tgt = read_lines(src_path), read_lines(tgt_path)
    check_aligned(src, tgt, str(src_path), str(tgt_path))
    return src, tgt


# -------------------------------------------------------------------------------- download

def ensure_files(name: str, filenames, data_dir: Path, progress: bool = True) -> dict[str, str]:
    """Fetch the missing ``filenames`` of corpus ``name`` into ``data_dir/name``, verify the
    ones already cached; return each file's digest."""
    info, known = get_info(name), CHECKSUMS.get(name, {})
    digests = {}
    for filename in filenames:
        dest = data_dir / name / filename
        if dest.exists():
            digests[filename] = verify(dest, known.get(filename))
        else:
            source = source_for(name, filename, info.files[filename])
            digests[filename] = fetch(source, dest, known.get(filename), progress=progress)
            if filename not in known and progress:
                print(f"{filename}: no published checksum; sha256 {digests[filename]}")
    return digests


def multi30k_texts(data_dir: Path, split: str, src: str, tgt: str, progress: bool = True):
    """Aligned, cleaned (source, target) sentences of one Multi30k split."""
    names = [f"{split}.{src}.gz", f"{split}.{tgt}.gz"]
    ensure_files("multi30k", names, data_dir, progress)
    return read_parallel(*(data_dir / "multi30k" / n for n in names))
