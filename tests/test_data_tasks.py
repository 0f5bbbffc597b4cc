"""The generated tasks: number words, determinism, disjoint splits, offline loading."""

import time

import pytest

from transformer.data import load_dataset
from transformer.data.tasks import copy_task, english, german, numbers_task

NUMBERS = {
    0: ("zero", "null"),
    1: ("one", "eins"),
    7: ("seven", "sieben"),
    11: ("eleven", "elf"),
    12: ("twelve", "zwölf"),
    16: ("sixteen", "sechzehn"),
    17: ("seventeen", "siebzehn"),
    21: ("twenty-one", "einundzwanzig"),
    30: ("thirty", "dreißig"),
    31: ("thirty-one", "einunddreißig"),
    67: ("sixty-seven", "siebenundsechzig"),
    100: ("one hundred", "einhundert"),
    101: ("one hundred one", "einhunderteins"),
    111: ("one hundred eleven", "einhundertelf"),
    321: ("three hundred twenty-one", "dreihunderteinundzwanzig"),
    1000: ("one thousand", "eintausend"),
    1001: ("one thousand one", "eintausendeins"),
    2020: ("two thousand twenty", "zweitausendzwanzig"),
    21000: ("twenty-one thousand", "einundzwanzigtausend"),
    100000: ("one hundred thousand", "einhunderttausend"),
    201001: ("two hundred one thousand one", "zweihunderteintausendeins"),
    999999: ("nine hundred ninety-nine thousand nine hundred ninety-nine",
             "neunhundertneunundneunzigtausendneunhundertneunundneunzig"),
}


@pytest.mark.parametrize("n", sorted(NUMBERS))
def test_number_words(n):
    assert (english(n), german(n)) == NUMBERS[n]


def test_number_words_range():
    with pytest.raises(ValueError):
        german(1_000_000)
    with pytest.raises(ValueError):
        english(-1)


def _disjoint(splits):
    seen = {name: set(src) for name, (src, _) in splits.items()}
    assert not seen["train"] & seen["val"]
    assert not seen["train"] & seen["test"]
    assert not seen["val"] & seen["test"]


def test_numbers_task_deterministic_disjoint():
    a = numbers_task(seed=3, n_train=2000, n_val=200, n_test=200)
    assert a == numbers_task(seed=3, n_train=2000, n_val=200, n_test=200)
    assert a != numbers_task(seed=4, n_train=2000, n_val=200, n_test=200)
    assert {k: len(v[0]) for k, v in a.items()} == {"train": 2000, "val": 200, "test": 200}
    _disjoint(a)
    assert {english(n) for n in range(100)} <= set(a["train"][0])  # the building blocks
    for src, tgt in zip(*a["test"]):
        assert len(src.split()) >= 2 and " " not in tgt  # >= 100; German is one word
    with pytest.raises(ValueError):
        numbers_task(max_value=999, n_train=900, n_val=100, n_test=100)


def test_copy_task_deterministic_disjoint():
    a = copy_task(seed=1, n_symbols=5, min_len=2, max_len=6, n_train=300, n_val=50, n_test=50)
    assert a == copy_task(seed=1, n_symbols=5, min_len=2, max_len=6, n_train=300, n_val=50,
                          n_test=50)
    _disjoint(a)
    for src, tgt in zip(*a["train"]):
        assert src == tgt
        words = src.split()
        assert 2 <= len(words) <= 6 and set(words) <= {"0", "1", "2", "3", "4"}
    with pytest.raises(ValueError):  # only 2**2 distinct sequences exist
        copy_task(n_symbols=2, min_len=2, max_len=2, n_train=10, n_val=0, n_test=0)


@pytest.mark.parametrize("name", ["copy", "numbers"])
def test_generated_datasets_load_offline_and_fast(name, tmp_path, monkeypatch):
    monkeypatch.setenv("TRANSFORMER_DATA_DIR", str(tmp_path))
    start = time.perf_counter()
    ds = load_dataset(name)
    batches = ds.batches("train", 1000)
    elapsed = time.perf_counter() - start
    assert elapsed < 10, f"{name} took {elapsed:.1f}s"
    assert list(tmp_path.iterdir()) == []  # nothing written anywhere
    assert ds.splits == ("train", "val", "test")
    assert sum(len(b) for b in batches) == len(ds.texts("train")[0])
    # the shared vocabulary decodes every test sentence back exactly
    src, tgt = ds.texts("test")
    assert ds.tokenizer.decode_batch(ds.tokenizer.encode_batch(src + tgt)) == src + tgt
    again = load_dataset(name)
    assert again.tokenizer == ds.tokenizer and again.texts("val") == ds.texts("val")


def test_numbers_reversed_and_options():
    ds = load_dataset("numbers", "de", "en", n_train=500, n_val=20, n_test=20, seed=5)
    src, tgt = ds.texts("test")
    assert (ds.src_lang, ds.tgt_lang) == ("de", "en") and len(src) == 20
    assert all(" " not in s for s in src) and all(" " in t for t in tgt)
    with pytest.raises(ValueError):
        load_dataset("numbers", "en", "fr")
    with pytest.raises(ValueError):
        load_dataset("nope")
