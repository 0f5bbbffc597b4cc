"""WMT14 EN-FR (Table 2), end to end on small archives with the real member names served over
HTTP from 127.0.0.1: only the pair's archives are fetched (the five EN-DE archives are shared,
UN and giga are EN-FR's own), the giga corpus is gzip'd files inside a plain .tar, broken
archives and misaligned corpora are refused, EN-DE is left as it was; sizes for a dry run."""

import contextlib
import functools
import gzip
import json
import tarfile

import pytest
from test_data_corpora import WORDS, _sha, _write_gz  # tests/ is on sys.path under pytest
from test_data_corpora import serve as serve_handler
from test_data_wmt14 import DEV_DE, DEV_EN, _Quiet, _sgm, _text, make_archives, wmt14_members

from transformer.data import (
    CHECKSUMS,
    DATASETS,
    DataError,
    download,
    download_size,
    load_dataset,
)
from transformer.data.corpora import FILE_SIZES, MULTI30K_SPLITS, WMT14_URLS
from transformer.data.wmt14 import PAIRS

EP_EN = ["Resumption of the session", "Please rise for a minute's silence."]
EP_FR = ["Reprise de la session", "Je vous invite à vous lever pour une minute de silence."]
CRAWL_EN = ["Hotel   rooms", "Contact us"]
CRAWL_FR = ["Chambres d'hôtel", "Contactez-nous"]
UN_EN = ["Resolution adopted by the General Assembly", "Agenda item 12", ""]
UN_FR = ["Résolution adoptée par l'Assemblée générale", "Point 12 de l'ordre du jour", "Vide"]
NC_EN = ["Gold is up."]
NC_FR = ["L'or monte."]
GIGA_EN = ["Canada  welcomes you", "Ministry of Finance", "Forms\u2028and guides"]
GIGA_FR = ["Le Canada vous accueille", "Ministère des Finances", "Formulaires et guides"]
DEV_FR = ["Une phrase de développement.", "Encore une."]
TEST_EN = ["Spectacular Wingsuit Jump Over Bogota", "Fish &amp; chips", "Third."]
TEST_FR = ["Spectaculaire saut en wingsuit au-dessus de Bogota", "Poisson &amp; frites",
           "Troisième."]

EN_DE_ARCHIVES = ["dev.tgz", "test-full.tgz", "training-parallel-commoncrawl.tgz",
                  "training-parallel-europarl-v7.tgz", "training-parallel-nc-v9.tgz"]
EN_FR_ARCHIVES = sorted(EN_DE_ARCHIVES + ["training-giga-fren.tar", "training-parallel-un.tgz"])
GIGA = "training-giga-fren.tar"


def _gz(lines, raw=None):
    return gzip.compress(raw if raw is not None else _text(lines), mtime=0)


def enfr_members():
    """The seven WMT14 archives: EN-DE's five with their fr-en members added, UN and giga."""
    members = wmt14_members()
    members["training-parallel-europarl-v7.tgz"].update({
        "training/europarl-v7.fr-en.en": _text(EP_EN),
        "training/europarl-v7.fr-en.fr": _text(EP_FR),
        "training/europarl-v7.es-en.es": _text(["Reanudación del período de sesiones"])})
    members["training-parallel-commoncrawl.tgz"].update({
        "commoncrawl.fr-en.annotation": b"a\nb\n", "commoncrawl.fr-en.en": _text(CRAWL_EN),
        "commoncrawl.fr-en.fr": _text(CRAWL_FR)})
    members["training-parallel-nc-v9.tgz"].update({
        "training/news-commentary-v9.fr-en.en": _text(NC_EN),
        "training/news-commentary-v9.fr-en.fr": _text(NC_FR)})
    members["dev.tgz"]["dev/newstest2013.fr"] = _text(DEV_FR)
    members["test-full.tgz"].update({
        "test-full/newstest2014-fren-src.en.sgm": _sgm(TEST_EN, "src", "en"),
        "test-full/newstest2014-fren-ref.fr.sgm": _sgm(TEST_FR, "ref", "fr"),
        "test-full/newstest2014-fren-src.fr.sgm": _sgm(TEST_FR, "src", "fr"),
        "test-full/newstest2014-fren-ref.en.sgm": _sgm(TEST_EN, "ref", "en")})
    members["training-parallel-un.tgz"] = {
        "un/undoc.2000.es-en.es": _text(["Resolución"]), "un/undoc.2000.es-en.en": _text(["R"]),
        "un/undoc.2000.fr-en.en": _text(UN_EN), "un/undoc.2000.fr-en.fr": _text(UN_FR)}
    members[GIGA] = {"giga-fren.release2.fixed.en.gz": _gz(GIGA_EN),
                     "giga-fren.release2.fixed.fr.gz": _gz(GIGA_FR)}
    return members


@pytest.fixture
def mirror(wmt14_mirror):
    """The shared mirror folder (tests/conftest.py)."""
    return wmt14_mirror


class _Logging(_Quiet):
    """Serves files and records the name of every file requested."""

    def __init__(self, *args, log, **kwargs):
        self.log = log
        super().__init__(*args, **kwargs)

    def do_GET(self):
        self.log.append(self.path.rsplit("/", 1)[-1])
        super().do_GET()


@contextlib.contextmanager
def serve_logged(directory, log):
    handler = functools.partial(_Logging, directory=str(directory), log=log)
    with serve_handler(handler) as url:
        yield url


def _assert_clean(cache):
    assert not [p for p in cache.rglob("*") if p.name.startswith(".")]


def test_enfr_after_ende_fetches_only_its_own_archives(mirror, tmp_path, monkeypatch, capsys):
    CHECKSUMS["wmt14"].update(make_archives(mirror, enfr_members()))
    cache, log = tmp_path / "cache", []
    with serve_logged(mirror, log) as url:
        monkeypatch.setenv("TRANSFORMER_DATA_MIRROR", url)
        download("wmt14", cache, progress=False)  # EN-DE, as before: never UN or giga
        assert sorted(log) == EN_DE_ARCHIVES
        en_de_marker = (cache / "wmt14" / "prepared.json").read_bytes()
        log.clear()
        folder = download("wmt14", cache, progress=True, src="en", tgt="fr")
        assert sorted(log) == [GIGA, "training-parallel-un.tgz"]  # the shared five are reused
    out = capsys.readouterr().out
    assert "wmt14: 7 files verified in" in out
    assert "wmt14 en-fr: 11 training pairs, 2 dev, 3 test" in out
    assert f"extracting {GIGA}:giga-fren.release2.fixed.fr.gz" in out
    assert (cache / "wmt14" / "prepared.json").read_bytes() == en_de_marker  # EN-DE untouched
    record = json.loads((folder / "prepared-en-fr.json").read_text())
    assert sorted(record["archives"]) == EN_FR_ARCHIVES
    assert record["lines"] == {"europarl-v7": 2, "commoncrawl": 2, "un": 3,
                               "news-commentary-v9": 1, "giga-fren": 3, "newstest2013": 2,
                               "newstest2014": 3}
    # the server is gone: everything comes from the cache
    ds = load_dataset("wmt14", "en", "fr", vocab_size=200, data_dir=cache, progress=False)
    assert (ds.src_lang, ds.tgt_lang) == ("en", "fr")
    assert ds.texts("train") == (
        EP_EN + ["Hotel rooms", "Contact us"] + UN_EN + NC_EN
        + ["Canada welcomes you", "Ministry of Finance", "Forms and guides"],
        EP_FR + CRAWL_FR + UN_FR + NC_FR + GIGA_FR)
    assert ds.texts("val") == (DEV_EN, DEV_FR) == ds.texts("newstest2013")
    assert ds.texts("test") == (TEST_EN, TEST_FR)  # entities verbatim, like sacreBLEU
    assert ds.pair_counts == {"train": 11, "newstest2013": 2, "newstest2014": 3}
    assert sum(len(b) for b in ds.batches("train", 300)) == 10  # the empty UN line is filtered
    reverse = load_dataset("wmt14", "fr", "en", vocab_size=200, data_dir=cache, progress=False)
    assert reverse.tokenizer == ds.tokenizer and reverse.texts("test") == (TEST_FR, TEST_EN)
    de = load_dataset("wmt14", vocab_size=150, data_dir=cache, progress=False)  # EN-DE as before
    assert (de.src_lang, de.tgt_lang) == ("en", "de") and de.texts("val") == (DEV_EN, DEV_DE)
    assert de.tokenizer != ds.tokenizer
    _assert_clean(cache)


def test_enfr_from_scratch_fetches_seven_archives_and_defaults(mirror, tmp_path, monkeypatch):
    CHECKSUMS["wmt14"].update(make_archives(mirror, enfr_members()))
    cache, log = tmp_path / "cache", []
    with serve_logged(mirror, log) as url:
        monkeypatch.setenv("TRANSFORMER_DATA_MIRROR", url)
        download("wmt14", cache, progress=False, tgt="fr")  # English is the other language
        assert sorted(log) == EN_FR_ARCHIVES
        log.clear()
        download("wmt14", cache, progress=False, src="fr", tgt="en")  # cached: nothing fetched
        assert log == []
    assert not (cache / "wmt14" / "prepared.json").exists()  # EN-DE was not prepared
    ds = load_dataset("wmt14", "fr", data_dir=cache, progress=False)  # the paper's 32000
    assert (ds.src_lang, ds.tgt_lang) == ("fr", "en")
    assert [p.name.split("-")[3] for p in (cache / "wmt14").glob("tokenizer-*")] == ["bpe32000"]
    assert ds.texts("test") == (TEST_FR, TEST_EN)


def test_wmt14_pairs_and_vocabulary_sizes():
    info = DATASETS["wmt14"]
    assert info.langs == ("en", "de", "fr") and info.default_pair == ("en", "de")
    assert info.default_vocab_size("en", "de") == info.default_vocab_size("de", "en") == 37000
    assert info.default_vocab_size("fr", "en") == info.default_vocab_size("en", "fr") == 32000
    assert info.aliases == {"val": "newstest2013", "test": "newstest2014"}
    with pytest.raises(ValueError, match="pairs en-de, en-fr .*de->fr"):
        load_dataset("wmt14", "de", "fr")
    with pytest.raises(ValueError, match="pairs en-de, en-fr"):
        download("wmt14", src="fr", tgt="de")
    with pytest.raises(ValueError, match="two of"):
        download_size("wmt14", "en", "es")
    assert all(a in WMT14_URLS and a in FILE_SIZES["wmt14"] for p in PAIRS.values()
               for a in p.archives)
    assert PAIRS["de-en"].archives == EN_DE_ARCHIVES and PAIRS["en-fr"].archives == EN_FR_ARCHIVES


def test_truncated_giga_tar_is_refused(mirror, tmp_path):
    sums = make_archives(mirror, enfr_members())
    sums.pop(GIGA)  # unpinned: checked by unpacking it
    CHECKSUMS["wmt14"].update(sums)
    CHECKSUMS["wmt14"].pop(GIGA)  # nor the real archive's digest
    path = mirror / "wmt14" / GIGA
    with tarfile.open(path) as tar:  # cut inside the French member's data
        fr = tar.getmember("giga-fren.release2.fixed.fr.gz")
    path.write_bytes(path.read_bytes()[:fr.offset_data + fr.size // 2])
    cache = tmp_path / "cache"
    with pytest.raises(DataError, match=rf"{GIGA}: cannot unpack giga-fren.release2.fixed.fr.gz "
                                        r".*truncated or corrupt - delete it"):
        download("wmt14", cache, progress=False, src="en", tgt="fr")
    assert not (cache / "wmt14" / "prepared-en-fr.json").exists()
    assert not (cache / "wmt14" / "text-en-fr" / "giga-fren.fr").exists()
    _assert_clean(cache)


@pytest.mark.parametrize("member, data, message", [
    ("giga-fren.release2.fixed.en.gz", _gz(GIGA_EN)[:-12], "cannot unpack giga-fren.release2"
     r".fixed.en.gz \(Compressed file ended"),  # the inner gzip cut short
    ("giga-fren.release2.fixed.fr.gz", _gz(None, "Le Canada\nMinist\xe8re\n".encode("latin-1")),
     r"giga-fren.release2.fixed.fr.gz: invalid UTF-8 on line 2"),
])
def test_broken_gzip_inside_the_tar(mirror, tmp_path, member, data, message):
    CHECKSUMS["wmt14"].update(make_archives(mirror, enfr_members(), **{GIGA: {member: data}}))
    with pytest.raises(DataError, match=message):
        download("wmt14", tmp_path / "cache", progress=False, src="en", tgt="fr")
    assert not (tmp_path / "cache" / "wmt14" / "prepared-en-fr.json").exists()
    _assert_clean(tmp_path / "cache")


@pytest.mark.parametrize("archive, member, lines, message", [
    ("training-parallel-un.tgz", "un/undoc.2000.fr-en.fr", UN_FR[:2],
     "un/undoc.2000.fr-en.en has 3 lines but un/undoc.2000.fr-en.fr has 2"),
    (GIGA, "giga-fren.release2.fixed.en.gz", GIGA_EN + ["extra"],
     "giga-fren.release2.fixed.en.gz has 4 lines but giga-fren.release2.fixed.fr.gz has 3"),
])
def test_line_missing_in_one_language(mirror, tmp_path, archive, member, lines, message):
    data = _gz(lines) if member.endswith(".gz") else _text(lines)
    CHECKSUMS["wmt14"].update(make_archives(mirror, enfr_members(), **{archive: {member: data}}))
    cache = tmp_path / "cache"
    with pytest.raises(DataError, match=f"{archive}: {message}: not aligned"):
        load_dataset("wmt14", "en", "fr", data_dir=cache, progress=False)
    assert not (cache / "wmt14" / "prepared-en-fr.json").exists()
    corpus = "un" if archive != GIGA else "giga-fren"
    assert not list((cache / "wmt14" / "text-en-fr").glob(f"{corpus}.*"))


def test_missing_french_member_is_named(mirror, tmp_path):
    CHECKSUMS["wmt14"].update(make_archives(
        mirror, enfr_members(), **{"dev.tgz": {"dev/newstest2013.fr": None}}))
    with pytest.raises(DataError, match=r"dev.tgz lacks member\(s\) \['dev/newstest2013.fr'\]"):
        download("wmt14", tmp_path / "cache", progress=False, src="en", tgt="fr")


def test_download_size_without_downloading(monkeypatch, tmp_path):
    monkeypatch.setenv("TRANSFORMER_DATA_MIRROR", str(tmp_path / "nowhere"))
    de, fr = download_size("wmt14"), download_size("wmt14", "fr", "en")
    assert sorted(de["files"]) == EN_DE_ARCHIVES and sorted(fr["files"]) == EN_FR_ARCHIVES
    assert (de["pair"], fr["pair"]) == ("en-de", "en-fr")
    assert fr["files"][GIGA] == {"bytes": 2_595_102_720, "exact": True,
                                 "source": FILE_SIZES["wmt14"][GIGA].source}
    assert not fr["files"]["dev.tgz"]["exact"] and not fr["exact"]  # estimates are marked
    assert fr["download_bytes"] == sum(f["bytes"] for f in fr["files"].values())
    assert 6.5e9 < fr["download_bytes"] < 6.8e9 and 1.6e9 < de["download_bytes"] < 1.8e9
    assert fr["stored_bytes"] == fr["download_bytes"] + fr["text_bytes"] > 2e10
    assert fr["summary"].startswith("wmt14 en-fr: about 6.6 GB to download (7 files), about "
                                    "21.1 GB stored")
    assert de["summary"].startswith("wmt14 en-de: about 1.7 GB to download (5 files)")
    m = download_size("multi30k", "de", "en")
    assert m["exact"] and len(m["files"]) == 12 and m["stored_bytes"] == m["download_bytes"]
    assert m["summary"] == "multi30k de-en: 1.4 MB to download (12 files), 1.4 MB stored"
    assert len(download_size("multi30k")["files"]) == 18
    assert download_size("copy")["download_bytes"] == 0
    assert not (tmp_path / "nowhere").exists()


def test_multi30k_download_of_one_pair(tmp_path, monkeypatch):
    """A pair given to ``download`` fetches only its languages' Multi30k files."""
    root = tmp_path / "mirror" / "multi30k"
    root.mkdir(parents=True)
    sums = {}
    for split in MULTI30K_SPLITS:
        for lang in ("de", "en"):  # no French in this mirror
            _write_gz(root / f"{split}.{lang}.gz", [f"{WORDS[lang]} {split}"])
            sums[f"{split}.{lang}.gz"] = _sha(root / f"{split}.{lang}.gz")
    monkeypatch.setitem(CHECKSUMS, "multi30k", sums)
    monkeypatch.setenv("TRANSFORMER_DATA_MIRROR", str(root.parent))
    folder = download("multi30k", tmp_path / "cache", progress=False, src="en", tgt="de")
    assert sorted(p.name for p in folder.iterdir()) == sorted(sums)


def test_member_names_with_a_leading_dot_slash(mirror, tmp_path):
    members = enfr_members()
    members[GIGA] = {f"./{name}": data for name, data in members[GIGA].items()}
    CHECKSUMS["wmt14"].update(make_archives(mirror, members))
    download("wmt14", tmp_path / "cache", progress=False, src="en", tgt="fr")
    text = tmp_path / "cache" / "wmt14" / "text-en-fr"
    assert (text / "giga-fren.fr").read_text(encoding="utf-8").splitlines() == GIGA_FR
