"""Downloading and reading corpora: mirror, cache, checksums, and bad input that must never be
used (interrupted or corrupt downloads, truncated gzip, misaligned or non-UTF-8 files)."""

import contextlib
import functools
import gzip
import hashlib
import http.server
import os
import threading
import time
from pathlib import Path

import pytest

from transformer.data import (
    CHECKSUMS,
    ChecksumError,
    DataError,
    DownloadError,
    download,
    load_dataset,
    resolve_data_dir,
)
from transformer.data import fetch as fetch_module
from transformer.data.corpora import MULTI30K_LANGS, MULTI30K_SPLITS, read_lines
from transformer.data.fetch import source_for

# the offline mirror that .ci/run names (a local folder), if there is one
REAL_MIRROR = Path(os.environ.get("TRANSFORMER_DATA_MIRROR") or "../shared/data")
WORDS = {"de": "Ein Mädchen läuft über die Straße", "en": "A girl runs across the street",
         "fr": "Une fille traverse la rue à pied"}


def _sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _write_gz(path, lines, raw=None):
    data = raw if raw is not None else "".join(line + "\n" for line in lines).encode()
    path.write_bytes(gzip.compress(data, mtime=0))


@pytest.fixture
def mirror(tmp_path, monkeypatch):
    """A Multi30k-shaped mirror folder with tiny files, its checksums registered."""
    root = tmp_path / "mirror" / "multi30k"
    root.mkdir(parents=True)
    sums = {}
    for split in MULTI30K_SPLITS:
        for lang in MULTI30K_LANGS:
            n = 12 if split == "train" else 3
            path = root / f"{split}.{lang}.gz"
            _write_gz(path, [f"{WORDS[lang]} {split} {i}" for i in range(n)])
            sums[path.name] = _sha(path)
    monkeypatch.setitem(CHECKSUMS, "multi30k", sums)
    monkeypatch.setenv("TRANSFORMER_DATA_MIRROR", str(root.parent))
    monkeypatch.setattr(fetch_module, "TIMEOUT_S", 5)
    return root


def _repin(root, *names):
    for name in names:
        CHECKSUMS["multi30k"][name] = _sha(root / name)


def _assert_clean(cache, *absent):
    """No temporary files anywhere under the cache, and none of ``absent`` exists."""
    leftovers = [p for p in cache.rglob("*") if p.name.startswith(".")]
    assert leftovers == []
    for name in absent:
        assert not (cache / "multi30k" / name).exists()


def test_resolve_data_dir(tmp_path, monkeypatch):
    monkeypatch.delenv("TRANSFORMER_DATA_DIR", raising=False)
    repo = Path(__file__).resolve().parents[1]
    assert resolve_data_dir() == repo / "data" / "cache"
    monkeypatch.setenv("TRANSFORMER_DATA_DIR", str(tmp_path / "env"))
    assert resolve_data_dir() == tmp_path / "env"
    assert resolve_data_dir(tmp_path / "arg") == tmp_path / "arg"


def test_source_for(monkeypatch):
    public = "https://example.org/x/train.de.gz"
    monkeypatch.delenv("TRANSFORMER_DATA_MIRROR", raising=False)
    assert source_for("multi30k", "train.de.gz", public) == public
    monkeypatch.setenv("TRANSFORMER_DATA_MIRROR", "/srv/data")
    assert source_for("multi30k", "train.de.gz", public) == "/srv/data/multi30k/train.de.gz"
    monkeypatch.setenv("TRANSFORMER_DATA_MIRROR", "http://host:8000/base/")
    assert source_for("multi30k", "a.gz", public) == "http://host:8000/base/multi30k/a.gz"


def test_download_verifies_and_caches(mirror, tmp_path, capsys):
    cache = tmp_path / "cache"
    folder = download("multi30k", cache, progress=False)
    assert folder == cache / "multi30k"
    assert sorted(p.name for p in folder.iterdir()) == sorted(CHECKSUMS["multi30k"])
    assert str(folder) in capsys.readouterr().out
    stamp = (folder / "train.de.gz").stat().st_mtime_ns
    download("multi30k", cache, progress=False)  # cached: verified, not fetched again
    assert (folder / "train.de.gz").stat().st_mtime_ns == stamp
    _assert_clean(cache)


def test_load_multi30k_from_mirror(mirror, tmp_path):
    cache = tmp_path / "cache"
    ds = load_dataset("multi30k", "de", "en", vocab_size=120, data_dir=cache, progress=False)
    src, tgt = ds.texts("test")  # alias of test_2016_flickr
    assert src[1] == "Ein Mädchen läuft über die Straße test_2016_flickr 1"
    assert tgt[1] == "A girl runs across the street test_2016_flickr 1"
    assert sum(len(b) for b in ds.batches("train", 200)) == 12
    again = load_dataset("multi30k", "en", "de", vocab_size=120, data_dir=cache, progress=False)
    assert again.tokenizer == ds.tokenizer  # one shared vocabulary per language pair
    tokenizers = list((cache / "multi30k").glob("tokenizer-*.json"))
    assert len(tokenizers) == 1 and tokenizers[0].name.startswith("tokenizer-de-en-bpe120-")
    assert again.texts("val")[0] == ds.texts("val")[1]
    _assert_clean(cache)


def test_checksum_mismatch_is_never_used(mirror, tmp_path):
    cache = tmp_path / "cache"
    good = (mirror / "val.de.gz").read_bytes()
    flipped = bytearray(good)
    flipped[len(flipped) // 2] ^= 0xFF
    (mirror / "val.de.gz").write_bytes(bytes(flipped))
    with pytest.raises(ChecksumError) as err:
        download("multi30k", cache, progress=False)
    message = str(err.value)
    expected = CHECKSUMS["multi30k"]["val.de.gz"]
    actual = hashlib.sha256(bytes(flipped)).hexdigest()
    assert "val.de.gz" in message and expected in message and actual in message
    assert "TRANSFORMER_DATA_MIRROR" in message
    _assert_clean(cache, "val.de.gz")
    (mirror / "val.de.gz").write_bytes(good)  # the retry starts cleanly and succeeds
    download("multi30k", cache, progress=False)
    assert _sha(cache / "multi30k" / "val.de.gz") == expected
    _assert_clean(cache)


def test_cached_file_changed_later(mirror, tmp_path):
    cache = tmp_path / "cache"
    download("multi30k", cache, progress=False)
    cached = cache / "multi30k" / "train.en.gz"
    cached.write_bytes(cached.read_bytes()[:-1])
    with pytest.raises(ChecksumError, match="Delete .*train.en.gz"):
        load_dataset("multi30k", "de", "en", data_dir=cache, progress=False)


def test_truncated_gzip(mirror, tmp_path):
    cache = tmp_path / "cache"
    path = mirror / "train.de.gz"
    path.write_bytes(path.read_bytes()[:-20])
    with pytest.raises(ChecksumError):  # the recorded checksum catches it first
        download("multi30k", cache, progress=False)
    _assert_clean(cache, "train.de.gz")
    _repin(mirror, "train.de.gz")  # even a file that passes its checksum is read strictly
    with pytest.raises(DataError, match="train.de.gz: cannot read .*truncated or corrupt"):
        load_dataset("multi30k", "de", "en", data_dir=cache, progress=False)


def test_extra_line_in_one_language(mirror, tmp_path):
    _write_gz(mirror / "train.en.gz", [f"{WORDS['en']} {i}" for i in range(13)])
    _repin(mirror, "train.en.gz")
    with pytest.raises(DataError) as err:
        load_dataset("multi30k", "de", "en", data_dir=tmp_path / "cache", progress=False)
    message = str(err.value)
    assert "train.de.gz has 12 lines" in message and "train.en.gz has 13" in message


def test_invalid_utf8_names_file_and_line(mirror, tmp_path):
    _write_gz(mirror / "val.en.gz", [], raw=b"fine\nalso fine\nbad \xff byte\n")
    _repin(mirror, "val.en.gz")
    with pytest.raises(DataError, match=r"val.en.gz: invalid UTF-8 on line 3"):
        load_dataset("multi30k", "de", "en", data_dir=tmp_path / "cache", progress=False)


def test_empty_lines_are_filtered_and_counted(mirror, tmp_path):
    de = [f"{WORDS['de']} {i}" for i in range(12)]
    en = [f"{WORDS['en']} {i}" for i in range(12)]
    de[3], en[7] = "", "   "
    _write_gz(mirror / "train.de.gz", de)
    _write_gz(mirror / "train.en.gz", en)
    _repin(mirror, "train.de.gz", "train.en.gz")
    ds = load_dataset("multi30k", "de", "en", vocab_size=120, data_dir=tmp_path / "cache",
                      progress=False)
    assert ds.texts("train")[1][7] == ""  # whitespace cleaned; still aligned
    assert len(ds.examples("train")) == 10
    assert ds.filter_report["train"]["empty"] == 2
    assert 3 not in ds.kept_indices("train") and 7 not in ds.kept_indices("train")


def test_read_lines_splits_on_newline_only(tmp_path):
    path = tmp_path / "x.txt"
    path.write_bytes("a\u2028b\x0cc\r\n  d   e \n".encode())
    assert read_lines(path) == ["a b c", "d e"]


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


class _CutShort(http.server.BaseHTTPRequestHandler):
    """Promises 10000 bytes, sends 100, hangs up."""

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", "10000")
        self.end_headers()
        self.wfile.write(b"x" * 100)
        self.wfile.flush()
        self.close_connection = True

    def log_message(self, *args):
        pass


@contextlib.contextmanager
def serve(handler):
    """An HTTP server on 127.0.0.1 in a thread, shut down on exit."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_download_over_http(mirror, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    with serve(functools.partial(_Quiet, directory=str(mirror.parent))) as url:
        monkeypatch.setenv("TRANSFORMER_DATA_MIRROR", url)
        download("multi30k", cache, progress=True)
        (mirror / "val.fr.gz").unlink()  # 404
        (cache / "multi30k" / "val.fr.gz").unlink()
        with pytest.raises(DownloadError, match="val.fr.gz.*404"):
            download("multi30k", cache, progress=False)
    assert len(list((cache / "multi30k").iterdir())) == 17
    _assert_clean(cache, "val.fr.gz")


def test_interrupted_download_leaves_nothing(mirror, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    with serve(_CutShort) as url:
        monkeypatch.setenv("TRANSFORMER_DATA_MIRROR", url)
        with pytest.raises(DownloadError, match="cut short|interrupted"):
            download("multi30k", cache, progress=False)
    _assert_clean(cache, *CHECKSUMS["multi30k"])
    with serve(functools.partial(_Quiet, directory=str(mirror.parent))) as url:
        monkeypatch.setenv("TRANSFORMER_DATA_MIRROR", url)
        download("multi30k", cache, progress=False)  # the retry starts cleanly
    _assert_clean(cache)


@pytest.mark.skipif(not (REAL_MIRROR / "multi30k").exists(), reason="no offline mirror")
def test_real_multi30k_download_load_and_batch(tmp_path, monkeypatch):
    monkeypatch.setenv("TRANSFORMER_DATA_MIRROR", str(REAL_MIRROR))
    start = time.perf_counter()
    folder = download("multi30k", tmp_path, progress=False)
    assert len(list(folder.glob("*.gz"))) == 18
    ds = load_dataset("multi30k", "de", "en", data_dir=tmp_path, progress=False)
    batches = ds.batches("train", 4000)
    elapsed = time.perf_counter() - start
    assert elapsed < 60, elapsed
    assert ds.tokenizer.vocab_size == 8000
    assert [len(ds.texts(s)[0]) for s in ds.splits] == [29000, 1014, 1000, 1000, 461, 1071]
    assert ds.texts("val")[0][0] == "Eine Gruppe von Männern lädt Baumwolle auf einen Lastwagen"
    assert all(b.src.numel() <= 4000 and b.tgt_in.numel() <= 4000 for b in batches)
    assert sum(len(b) for b in batches) == ds.filter_report["train"]["kept"] > 28900
    _assert_clean(tmp_path)
