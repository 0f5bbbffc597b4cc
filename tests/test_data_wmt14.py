"""WMT14 EN-DE, end to end on small archives with the real member names, served over HTTP
from 127.0.0.1: download, verify, extract, clean, align (plain text and SGM), tokenize, batch."""

import contextlib
import functools
import hashlib
import http.server
import io
import json
import tarfile

import pytest
from test_data_corpora import serve as serve_handler  # tests/ is on sys.path under pytest

from transformer.data import CHECKSUMS, ChecksumError, DataError, download, load_dataset

EN = ["Resumption of the session", "I declare resumed the session.", "", "Thank you."]
DE = ["Wiederaufnahme der Sitzungsperiode", "Ich erkläre die Sitzung für wieder aufgenommen.",
      "Leer", "Vielen Dank."]
CRAWL_EN = ["Welcome to our hotel", "Rooms  with   a view"]
CRAWL_DE = ["Willkommen in unserem Hotel", "Zimmer mit Aussicht"]
NC_EN = ["Gold is up.", "Prices fell."]
NC_DE = ["Gold steigt.", "Die Preise fielen."]
DEV_EN = ["A dev sentence.", "Another one."]
DEV_DE = ["Ein Entwicklungssatz.", "Noch einer."]
TEST_EN = ["Gutach: Increased safety for pedestrians", "Fish &amp; chips", "Second doc."]
TEST_DE = ["Gutach: Noch mehr Sicherheit für Fußgänger", "Fisch &amp; Pommes", "Zweites Dok."]


def _sgm(lines, role, lang, drop=None):
    out = [f'<{role}set setid="newstest2014" srclang="any" trglang="{lang}">']
    for doc, segs in (("1012-bbc", [0, 1]), ("1015-dw", [2])):
        out.append(f'<doc sysid="{role}" docid="{doc}" genre="news" origlang="en">\n<p>')
        out += [f'<seg id="{i + 1}"> {lines[i]} </seg>' for i in segs if i != drop]
        out.append("</p>\n</doc>")
    return "\n".join(out + [f"</{role}set>", ""]).encode()


def _text(lines):
    return "".join(line + "\n" for line in lines).encode()


def _tgz(path, members):
    """A gzip'd tar (.tgz), or a plain one for a .tar path."""
    with tarfile.open(path, "w" if path.suffix == ".tar" else "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def make_archives(root, members=None, **overrides):
    """The five WMT14 archives, tiny, same member names (or ``members``: archive -> member ->
    bytes); ``overrides`` replace members (None removes one)."""
    members = members if members is not None else wmt14_members()
    folder = root / "wmt14"
    folder.mkdir(parents=True, exist_ok=True)
    sums = {}
    for archive, files in members.items():
        files = {k: v for k, v in {**files, **overrides.get(archive, {})}.items() if v is not None}
        _tgz(folder / archive, files)
        sums[archive] = hashlib.sha256((folder / archive).read_bytes()).hexdigest()
    return sums


def wmt14_members():
    """The members of the five EN-DE archives (EN-FR tests add their own)."""
    return {
        "training-parallel-europarl-v7.tgz": {
            "training/europarl-v7.de-en.de": _text(DE), "training/europarl-v7.de-en.en": _text(EN),
            "training/europarl-v7.fr-en.fr": _text(["Reprise de la session"])},
        "training-parallel-commoncrawl.tgz": {
            "commoncrawl.de-en.annotation": b"x\ny\n", "commoncrawl.de-en.de": _text(CRAWL_DE),
            "commoncrawl.de-en.en": _text(CRAWL_EN)},
        "training-parallel-nc-v9.tgz": {
            "training/news-commentary-v9.de-en.de": _text(NC_DE),
            "training/news-commentary-v9.de-en.en": _text(NC_EN)},
        "dev.tgz": {"dev/newstest2013.de": _text(DEV_DE), "dev/newstest2013.en": _text(DEV_EN),
                    "dev/newstest2013-src.de.sgm": b"<srcset>\n</srcset>\n"},
        "test-full.tgz": {
            "test-full/newstest2014-deen-src.en.sgm": _sgm(TEST_EN, "src", "en"),
            "test-full/newstest2014-deen-ref.de.sgm": _sgm(TEST_DE, "ref", "de"),
            "test-full/newstest2014-deen-src.de.sgm": _sgm(TEST_DE, "src", "de"),
            "test-full/newstest2014-deen-ref.en.sgm": _sgm(TEST_EN, "ref", "en")},
    }


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@contextlib.contextmanager
def serve(directory):
    handler = functools.partial(_Quiet, directory=str(directory))
    with serve_handler(handler) as url:
        yield url


def test_wmt14_end_to_end_over_http(wmt14_mirror, tmp_path, monkeypatch, capsys):
    CHECKSUMS["wmt14"].update(make_archives(wmt14_mirror))  # the pluggable registry
    cache = tmp_path / "cache"
    with serve(wmt14_mirror) as url:
        monkeypatch.setenv("TRANSFORMER_DATA_MIRROR", url)
        folder = download("wmt14", cache, progress=True)
    assert "wmt14: 5 files verified in" in capsys.readouterr().out
    counts = json.loads((folder / "prepared.json").read_text())["lines"]
    assert counts == {"europarl-v7": 4, "commoncrawl": 2, "news-commentary-v9": 2,
                      "newstest2013": 2, "newstest2014": 3}
    # the server is gone: everything now comes from the cache
    ds = load_dataset("wmt14", vocab_size=150, data_dir=cache, progress=False)
    assert (ds.src_lang, ds.tgt_lang) == ("en", "de")
    assert ds.texts("train") == (EN + CRAWL_EN[:1] + ["Rooms with a view"] + NC_EN,
                                 DE + CRAWL_DE + NC_DE)
    assert ds.texts("val") == (DEV_EN, DEV_DE) == ds.texts("newstest2013")
    assert ds.texts("test") == (TEST_EN, TEST_DE)  # entities kept verbatim, like sacreBLEU
    assert ds.filter_report == {}
    batches = ds.batches("train", 200)
    assert sum(len(b) for b in batches) == 7 and ds.filter_report["train"]["empty"] == 1
    reverse = load_dataset("wmt14", "de", "en", vocab_size=150, data_dir=cache, progress=False)
    assert reverse.tokenizer == ds.tokenizer and reverse.texts("test") == (TEST_DE, TEST_EN)
    assert not [p for p in cache.rglob("*") if p.name.startswith(".")]


def test_wmt14_published_md5_rejects_a_different_test_archive(wmt14_mirror, tmp_path, capsys):
    make_archives(wmt14_mirror)  # only sacreBLEU's md5 of test-full.tgz is registered
    with pytest.raises(ChecksumError, match="test-full.tgz.*\n.*expected md5 a8cd784e"):
        download("wmt14", tmp_path / "cache")
    assert "no published checksum; sha256" in capsys.readouterr().out
    assert not (tmp_path / "cache" / "wmt14" / "test-full.tgz").exists()


def test_wmt14_extra_line_in_one_language(wmt14_mirror, tmp_path):
    bad = {"training-parallel-commoncrawl.tgz": {"commoncrawl.de-en.de": _text(CRAWL_DE + ["x"])}}
    CHECKSUMS["wmt14"].update(make_archives(wmt14_mirror, **bad))
    with pytest.raises(DataError) as err:
        load_dataset("wmt14", data_dir=tmp_path / "cache", progress=False)
    message = str(err.value)
    assert "commoncrawl.de-en.en has 2 lines" in message
    assert "commoncrawl.de-en.de has 3" in message
    assert not (tmp_path / "cache" / "wmt14" / "prepared.json").exists()
    assert not (tmp_path / "cache" / "wmt14" / "text" / "commoncrawl.de").exists()


def test_wmt14_misaligned_sgm(wmt14_mirror, tmp_path):
    bad = {"test-full.tgz": {"test-full/newstest2014-deen-ref.de.sgm":
                             _sgm(TEST_DE, "ref", "de", drop=1)}}
    CHECKSUMS["wmt14"].update(make_archives(wmt14_mirror, **bad))
    with pytest.raises(DataError, match=r"ref.de.sgm \(2 segments\) are not aligned"):
        download("wmt14", tmp_path / "cache", progress=False)
    assert not (tmp_path / "cache" / "wmt14" / "prepared.json").exists()


def test_wmt14_invalid_utf8_in_member(wmt14_mirror, tmp_path):
    bad = {"training-parallel-nc-v9.tgz": {
        "training/news-commentary-v9.de-en.de": b"Gold steigt.\nDie \xc3\x28 Preise.\n"}}
    CHECKSUMS["wmt14"].update(make_archives(wmt14_mirror, **bad))
    with pytest.raises(DataError, match=r"news-commentary-v9.de-en.de: invalid UTF-8 on line 2"):
        download("wmt14", tmp_path / "cache", progress=False)


def test_wmt14_truncated_or_wrong_archive(wmt14_mirror, tmp_path):
    sums = make_archives(wmt14_mirror)
    sums.pop("dev.tgz")  # an unpinned file: checked by unpacking it
    CHECKSUMS["wmt14"].update(sums)
    dev = wmt14_mirror / "wmt14" / "dev.tgz"
    dev.write_bytes(dev.read_bytes()[:-30])
    with pytest.raises(DataError, match="dev.tgz: cannot unpack .*truncated or corrupt"):
        download("wmt14", tmp_path / "cache", progress=False)
    (tmp_path / "cache" / "wmt14" / "dev.tgz").unlink()
    make_archives(wmt14_mirror, **{"dev.tgz": {"dev/newstest2013.de": None}})
    with pytest.raises(DataError, match=r"lacks member\(s\) \['dev/newstest2013.de'\]"):
        download("wmt14", tmp_path / "cache", progress=False)
