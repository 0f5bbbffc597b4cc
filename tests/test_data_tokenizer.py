"""The shared BPE vocabulary: special ids, exact round trips, caching and reloading."""

import gzip
import os
from pathlib import Path

import pytest
import torch

from transformer.data import SubwordTokenizer
from transformer.data.corpora import clean
from transformer.data.tokenizer import SETTINGS, bounded_alphabet, load_or_train
from transformer.model.config import TransformerConfig

# the offline Multi30k mirror that .ci/run names (a local folder), if there is one
MIRROR = Path(os.environ.get("TRANSFORMER_DATA_MIRROR") or "../shared/data") / "multi30k"
SAMPLE = [  # a few Multi30k-style lines, with umlauts, sharp s, accents and punctuation
    "Ein Mann mit einem orangefarbenen Hut, der etwas anstarrt.",
    "Zwei junge Männer überqueren eine Straße; einer trägt eine Brille.",
    "Eine Gruppe von Menschen steht vor einem Iglu.",
    "Ein Mädchen in einem Karateanzug bricht einen Stock mit einem Tritt.",
    "Fünf Leute in Winterjacken und Helmen stehen im Schnee mit Schneemobilen im Hintergrund.",
    "A man in an orange hat starring at something.",
    "A Boston Terrier is running on lush green grass in front of a white fence.",
    "Un homme avec un chapeau orange regardant quelque chose.",
    "Un garçon saute par-dessus un obstacle, près d'une rivière.",
    "Two men \"laughing\" (loudly) at 3:45 p.m. - isn't it odd?",
]


def _lines(name, n=None):
    with gzip.open(MIRROR / name, "rt", encoding="utf-8") as f:
        lines = f.read().split("\n")[:-1]
    return [clean(line) for line in lines[:n]]


@pytest.fixture(scope="module")
def sample_tokenizer():
    return SubwordTokenizer.train(SAMPLE * 3, vocab_size=300)


def test_special_ids_match_config(sample_tokenizer):
    tok, cfg = sample_tokenizer, TransformerConfig.from_preset("tiny")
    assert (tok.pad_id, tok.bos_id, tok.eos_id, tok.unk_id) == (
        cfg.pad_id, cfg.bos_id, cfg.eos_id, cfg.unk_id)
    assert [tok.id_to_token(i) for i in range(4)] == ["<pad>", "<s>", "</s>", "<unk>"]
    assert all(i > 3 for line in SAMPLE for i in tok.encode(line))  # no specials added
    assert len(tok) == tok.vocab_size <= 300


def test_round_trip_exact_on_training_text(sample_tokenizer):
    assert sample_tokenizer.decode_batch(sample_tokenizer.encode_batch(SAMPLE)) == SAMPLE
    assert "".join(sample_tokenizer.tokens("Männer")) == "▁Männer"


def test_punctuation_is_split_off_words(sample_tokenizer):
    tok = sample_tokenizer
    assert tok.tokens("Hut,")[-1] == "," and tok.tokens("Iglu.")[-1] == "."
    assert "".join(tok.tokens("Iglu.")) == "▁Iglu."  # nothing lost: the pieces make the word
    assert tok.encode("Hut")[0] == tok.encode("Hut,")[0]  # one "Hut" for "Hut" and "Hut,"
    assert tok.decode(tok.encode("(loudly) - isn't it?")) == "(loudly) - isn't it?"


def test_decode_stops_at_eos_and_drops_specials(sample_tokenizer):
    tok = sample_tokenizer
    ids = tok.encode("Ein Mann")
    raw = [tok.bos_id, *ids, tok.eos_id, *tok.encode("Hut"), tok.pad_id]
    assert tok.decode(raw) == "Ein Mann"
    assert tok.decode(torch.tensor(raw)) == "Ein Mann"
    assert tok.decode([ids[0], tok.unk_id, tok.pad_id, *ids[1:]]) == "Ein Mann"
    assert tok.tokens("€") == ["▁", "<unk>"] and tok.decode(tok.encode("a € b")) == "a  b"
    assert tok.decode_batch([raw, [tok.eos_id]]) == ["Ein Mann", ""]


def test_save_load_identical_and_atomic(sample_tokenizer, tmp_path):
    path = tmp_path / "tok.json"
    sample_tokenizer.save(path)
    loaded = SubwordTokenizer.load(path)
    assert loaded == sample_tokenizer
    assert loaded.encode_batch(SAMPLE) == sample_tokenizer.encode_batch(SAMPLE)
    assert SubwordTokenizer.from_str(sample_tokenizer.to_str()) == sample_tokenizer
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tok.json"]  # no temp files left


def test_training_is_deterministic():
    assert SubwordTokenizer.train(SAMPLE, 200) == SubwordTokenizer.train(SAMPLE, 200)


def test_load_or_train_caches(tmp_path):
    calls = []

    def texts():
        calls.append(1)
        return SAMPLE

    path = tmp_path / "sub" / "tokenizer.json"
    first = load_or_train(path, texts, 200)
    second = load_or_train(path, texts, 200)
    assert calls == [1] and first == second and path.exists()


def single_characters(tok) -> set[str]:
    return {t for t in tok._tok.get_vocab() if len(t) == 1}


# 3000 distinct characters seen once each (CJK), as Common Crawl holds, and plain English
RARE = [chr(0x4E00 + i) for i in range(3000)]
NOISY = [" ".join(RARE[i:i + 30]) for i in range(0, 3000, 30)] + [
    "The quick brown fox jumps over the lazy dog.", "A man in an orange hat stares at a dog.",
    "Two dogs are playing in the snow near the river."] * 20


def test_alphabet_is_bounded_and_rare_characters_become_unk():
    assert SETTINGS["limit_alphabet"] == 1000 and SETTINGS["version"] >= 3  # a new cache key
    tok = SubwordTokenizer.train(NOISY, vocab_size=400, limit_alphabet=60)
    assert len(single_characters(tok)) == 60
    assert tok.vocab_size > 4 + 60 + 20  # the slots went to merges, not to rare characters
    sentence = "The dog jumps over the fox."
    assert tok.decode(tok.encode(sentence)) == sentence
    assert "<unk>" not in tok.tokens(sentence)
    left_out = RARE[-1]  # seen once, cut (equally rare ones with lower code points stay)
    assert left_out not in single_characters(tok)
    assert tok.tokens(f"the {left_out} dog") == ["▁the", "▁", "<unk>", "▁dog"]
    assert tok.decode(tok.encode(f"the {left_out} dog")) == "the  dog"
    # unbounded, the 3000 characters take the whole vocabulary and leave no room for merges
    unbounded = SubwordTokenizer.train(NOISY, vocab_size=400, limit_alphabet=10_000)
    assert len(single_characters(unbounded)) > 3000 and unbounded.token_to_id("▁the") is None


def test_bounded_alphabet_is_deterministic():
    """tokenizers cuts ties between equally rare characters in hash-map order; we do not."""
    alphabet = bounded_alphabet(NOISY, 60)
    assert len(alphabet) == 60 and "▁" in alphabet and set("Thequickbrown") <= set(alphabet)
    assert alphabet == sorted(alphabet) and alphabet == bounded_alphabet(NOISY[::-1], 60)
    trained = [SubwordTokenizer.train(NOISY, vocab_size=400, limit_alphabet=60) for _ in range(2)]
    assert trained[0] == trained[1]
    assert single_characters(trained[0]) == set(alphabet)


def test_small_alphabet_vocabulary_is_unchanged_by_the_limit(sample_tokenizer):
    """Multi30k-like text has about a hundred characters: the limit leaves it alone, and the
    vocabulary is the one tokenizers trains without any limit."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    assert bounded_alphabet(SAMPLE * 3, 1000) is None
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Metaspace(),
                                                 pre_tokenizers.Punctuation()])
    tok.decoder = decoders.Metaspace()
    tok.train_from_iterator(SAMPLE * 3, trainers.BpeTrainer(
        vocab_size=300, min_frequency=2, special_tokens=["<pad>", "<s>", "</s>", "<unk>"],
        show_progress=False))
    assert SubwordTokenizer(tok) == sample_tokenizer
    # and a limit just at the alphabet's size leaves every character in
    n = len(single_characters(sample_tokenizer))
    assert bounded_alphabet(SAMPLE * 3, n) is None
    assert SubwordTokenizer.train(SAMPLE * 3, 300, limit_alphabet=n) == sample_tokenizer
    assert SubwordTokenizer.train(iter(SAMPLE * 3), 300) == sample_tokenizer  # any iterable


def test_rejects_tokenizer_without_specials():
    from tokenizers import Tokenizer, models

    with pytest.raises(ValueError, match="<pad>"):
        SubwordTokenizer(Tokenizer(models.BPE()))


@pytest.mark.skipif(not MIRROR.exists(), reason="offline Multi30k mirror not present")
def test_round_trip_on_real_multi30k_lines():
    train = _lines("train.de.gz", 3000) + _lines("train.en.gz", 3000) + _lines("train.fr.gz", 3000)
    tok = SubwordTokenizer.train(train, 4000)
    assert tok.decode_batch(tok.encode_batch(train)) == train
    # unseen sentences (val): exact except for characters never seen in training
    val = _lines("val.de.gz") + _lines("val.fr.gz")
    decoded = tok.decode_batch(tok.encode_batch(val))
    exact = sum(d == v for d, v in zip(decoded, val)) / len(val)
    assert exact > 0.99, exact
    umlauts = [v for v in val if any(c in v for c in "äöüÄÖÜß")]
    assert len(umlauts) > 100
    assert sum(tok.decode(tok.encode(v)) == v for v in umlauts) / len(umlauts) > 0.99
