"""Faults a hostile but fair user meets (issue #38), outside the training loop: damaged caches
are rebuilt or refused with one line naming the file, a full disk while a checkpoint or a cache
file is written is one ``OSError`` naming the file with nothing partial left, a checkpoint meets
only the vocabulary it was trained with, and an over-long input line is cut with a warning."""

import errno
import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from test_data_corpora import mirror  # noqa: F401 (a fixture: tiny Multi30k files)
from test_data_wmt14 import EN, make_archives

from transformer import Transformer, TransformerConfig
from transformer.data import CHECKSUMS, DataError, load_dataset
from transformer.data.dataset import TranslationDataset
from transformer.data.fetch import WriteError, atomic_output
from transformer.data.tokenizer import SubwordTokenizer, load_or_train
from transformer.engine import checkpoint as ckpt
from transformer.engine.evaluate import checkpoint_and_data, source_ids, translate

ROOT = Path(__file__).resolve().parent.parent
TEXTS = {"train": ([f"ein hund {i} läuft über die straße" for i in range(40)],
                   [f"a dog {i} runs across the street" for i in range(40)])}


@pytest.fixture(scope="module")
def tokenizer():
    return SubwordTokenizer.train(TEXTS["train"][0] + TEXTS["train"][1], 80)


@pytest.fixture(scope="module")
def other_tokenizer():
    return SubwordTokenizer.train(TEXTS["train"][0] + TEXTS["train"][1], 70)


def run_python(code: str, timeout=120) -> dict:
    """Run ``code`` in a fresh interpreter (where a file-size limit harms no one); it prints
    one JSON object last, which is returned."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------------- vocabulary cache

def _swap_specials(path: Path) -> None:
    path.write_text(path.read_text().replace('"<pad>"', '"<pax>"'))


VOCAB_DAMAGE = {
    "truncated": (lambda p: p.write_bytes(p.read_bytes()[: p.stat().st_size // 2]), "EOF"),
    "empty": (lambda p: p.write_bytes(b""), "0 bytes"),
    "garbage": (lambda p: p.write_bytes(b"\x00\xffnot json"), "not a readable tokenizer"),
    "other json": (lambda p: p.write_text('{"vocab": []}'), "not a readable tokenizer"),
    "specials moved": (_swap_specials, "<pad> at id 0"),
}


@pytest.mark.parametrize("damage", sorted(VOCAB_DAMAGE))
def test_a_damaged_vocabulary_cache_is_trained_again(mirror, tmp_path, capsys,  # noqa: F811
                                                     damage):
    """load_dataset (what train and evaluate call) warns in one line naming the file and
    trains the vocabulary again: no JSON parser's traceback, the same vocabulary back."""
    cache = tmp_path / "cache"
    first = load_dataset("multi30k", "de", "en", vocab_size=120, data_dir=cache, progress=False)
    [path] = (cache / "multi30k").glob("tokenizer-*.json")
    assert first.tokenizer_path == path
    spoil, said = VOCAB_DAMAGE[damage]
    spoil(path)
    capsys.readouterr()
    again = load_dataset("multi30k", "de", "en", vocab_size=120, data_dir=cache, progress=False)
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith(f"warning: {path}: ") and said in err[0]
    assert err[0].endswith("training the vocabulary again from the corpus")
    assert again.tokenizer == first.tokenizer
    load_dataset("multi30k", "de", "en", vocab_size=120, data_dir=cache, progress=False)
    assert capsys.readouterr().err == ""  # rewritten sound


def test_a_vocabulary_larger_than_asked_is_trained_again(tmp_path, capsys, tokenizer):
    path = tmp_path / "tok.json"
    tokenizer.save(path)
    texts = TEXTS["train"][0] + TEXTS["train"][1]
    smaller = load_or_train(path, lambda: texts, 60)
    assert smaller.vocab_size <= 60 < tokenizer.vocab_size
    assert f"holds {tokenizer.vocab_size} tokens, more than the 60" in capsys.readouterr().err


def test_an_unreadable_vocabulary_is_one_error_naming_it(tmp_path):
    path = tmp_path / "tok.json"
    path.mkdir()  # exists, but cannot be read as a file: training again would not help
    with pytest.raises(DataError, match=f"^{path}: cannot read the cached vocabulary .*delete"):
        load_or_train(path, lambda: ["never called"], 60)


# ------------------------------------------------------------------------------- ids cache

def test_an_ids_cache_with_one_target_fewer_is_refused_and_rebuilt(tmp_path, tokenizer, capsys):
    """40 sources against 39 targets (as 29,000 against 28,999): never trained on silently."""
    def dataset():
        return TranslationDataset.from_texts("toy", "de", "en", tokenizer, TEXTS,
                                             cache_dir=tmp_path)
    expected = dataset().examples("train")
    [path] = tmp_path.glob("ids-train.*.npz")
    with np.load(path) as z:
        arrays = dict(z)
    cut = arrays["tgt_offsets"][:-1]
    arrays.update(tgt_offsets=cut, tgt_flat=arrays["tgt_flat"][: cut[-1]])
    with open(path, "wb") as f:
        np.savez(f, **arrays)
    capsys.readouterr()
    assert dataset().examples("train") == expected
    err = capsys.readouterr().err.splitlines()
    assert err == [f"warning: {path}: holds 40 source and 39 target sentences where the corpus "
                   "has 40 pairs; rebuilding it from the corpus"]
    with np.load(path) as z:
        assert len(z["tgt_offsets"]) == len(z["src_offsets"]) == 41


# -------------------------------------------------------------------------- WMT14 extracted

@pytest.fixture
def wmt14_cache(wmt14_mirror, tmp_path):
    CHECKSUMS["wmt14"].update(make_archives(wmt14_mirror))
    cache = tmp_path / "cache"
    load_dataset("wmt14", vocab_size=150, data_dir=cache, progress=False)
    return cache


def test_a_garbled_wmt14_marker_is_unpacked_again(wmt14_cache, capsys):
    marker = wmt14_cache / "wmt14" / "prepared.json"
    good = marker.read_text()
    marker.write_text(good[: len(good) // 2])
    capsys.readouterr()
    ds = load_dataset("wmt14", vocab_size=150, data_dir=wmt14_cache, progress=False)
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith(f"warning: {marker}: unreadable (JSONDecodeError")
    assert marker.read_text() == good and ds.texts("train")[0][:4] == EN


@pytest.mark.parametrize("sides", [("de",), ("en", "de")])
def test_a_cut_wmt14_text_file_is_unpacked_again(wmt14_cache, capsys, sides):
    """One side cut short (the sides differ) or both (both differ from the recorded count)."""
    text = wmt14_cache / "wmt14" / "text"
    for lang in sides:
        path = text / f"europarl-v7.{lang}"
        path.write_text("".join(path.read_text().splitlines(keepends=True)[:2]))
    capsys.readouterr()
    ds = load_dataset("wmt14", vocab_size=150, data_dir=wmt14_cache, progress=False)
    assert ds.texts("train")[0][:4] == EN
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("warning: ") and "europarl-v7." in err[0]
    assert err[0].endswith("unpacking wmt14 again from its verified archives")
    assert len((text / "europarl-v7.de").read_text().splitlines()) == 4


# ------------------------------------------------------------------------ full disk, cache

def test_a_full_disk_while_writing_a_cache_file_is_one_oserror_naming_it(tmp_path):
    """A file-size limit (no root needed) makes writes fail with EFBIG, as a full disk does
    with ENOSPC: the error names the file and nothing is left beside it."""
    out = run_python(f"""
        import json, resource, signal
        from pathlib import Path
        import numpy as np
        from transformer.apps.cli import error_message
        from transformer.data.fetch import atomic_output, atomic_write_text
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, resource.RLIM_INFINITY))
        folder, seen = Path({str(tmp_path)!r}), []
        def npz(path):
            with atomic_output(path) as f:
                np.savez(f, x=np.zeros(100_000))
        for name, write in (("ids.npz", npz),
                            ("tok.json", lambda p: atomic_write_text(p, "x" * 200_000))):
            try:
                write(folder / name)
            except OSError as e:
                seen.append([type(e).__name__, e.errno, e.filename, error_message(e)])
        print(json.dumps({{"seen": seen, "left": sorted(p.name for p in folder.iterdir())}}))
        """)
    assert out["left"] == []
    assert [s[:3] for s in out["seen"]] == [
        ["WriteError", errno.EFBIG, str(tmp_path / "ids.npz")],
        ["WriteError", errno.EFBIG, str(tmp_path / "tok.json")]]
    assert out["seen"][0][3].startswith(f"error: {tmp_path / 'ids.npz'}: File too large")


def test_a_failed_write_inside_the_block_names_the_file(tmp_path):
    dest = tmp_path / "x.bin"
    with pytest.raises(WriteError) as info:
        with atomic_output(dest) as f:
            f.write(b"some")
            raise OSError(errno.ENOSPC, "No space left on device")
    assert (info.value.errno, info.value.filename) == (errno.ENOSPC, str(dest))
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError):  # other errors pass as they are
        with atomic_output(dest):
            raise ValueError("not a write")


# ------------------------------------------------------------------- full disk, checkpoint

def tiny_state(tokenizer, max_len=16, **overrides) -> dict:
    """A loadable checkpoint state: a 1-layer model over ``tokenizer``'s vocabulary."""
    torch.manual_seed(0)
    v = tokenizer.vocab_size
    config = TransformerConfig(src_vocab_size=v, tgt_vocab_size=v, n_layers=1, d_model=32,
                               d_ff=64, n_heads=4, dropout=0.0, max_len=max_len, **overrides)
    model = Transformer(config).eval()
    return {"format": ckpt.FORMAT, "model": model.state_dict(), "model_config": config.to_dict(),
            "tokenizer": ckpt.tokenizer_record(tokenizer, "run/tokenizer.json"), "step": 1}


def test_a_full_disk_while_saving_a_checkpoint_is_an_oserror(tmp_path):
    """torch.save reports the failed write as a RuntimeError when it closes the archive; the
    save raises the OSError (EFBIG here, ENOSPC on a full disk) naming the checkpoint, leaves
    no partial file, and the previous checkpoint stays intact: what train's handler needs to
    say "could not write checkpoint ...; the previous checkpoint ... is intact"."""
    out = run_python(f"""
        import json, resource, signal
        from pathlib import Path
        import torch
        from transformer.engine import checkpoint as ckpt
        folder = Path({str(tmp_path)!r})
        state = {{"format": ckpt.FORMAT, "model": {{"w": torch.randn(200_000)}},
                  "model_config": {{}}}}
        previous = ckpt.save_checkpoint({{**state, "model": {{"w": torch.zeros(10)}}}},
                                        folder / "step_00000001.pt")
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, resource.RLIM_INFINITY))
        try:
            ckpt.save_checkpoint(state, folder / "step_00000002.pt")
            seen = None
        except OSError as e:
            seen = [type(e).__name__, e.errno, e.strerror, e.filename,
                    type(e.__cause__).__name__]
        ckpt.verify_checkpoint(previous)
        print(json.dumps({{"seen": seen, "left": sorted(p.name for p in folder.iterdir())}}))
        """)
    assert out["seen"] == ["OSError", errno.EFBIG, "File too large",
                           str(tmp_path / "step_00000002.pt"), "RuntimeError"]
    assert out["left"] == ["step_00000001.pt"]


class FailingFile:
    """A binary file whose writes fail with ``error`` once ``room`` bytes are written."""

    def __init__(self, file, room: int, error: OSError):
        self.file, self.room, self.error = file, room, error

    def write(self, data):
        if len(data) > self.room:
            raise self.error
        self.room -= len(data)
        return self.file.write(data)

    def __getattr__(self, name):
        return getattr(self.file, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.file.close()


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EIO, errno.EDQUOT])
def test_every_failed_checkpoint_write_keeps_its_errno(tmp_path, monkeypatch, tokenizer, code):
    real = os.fdopen
    monkeypatch.setattr(ckpt.os, "fdopen", lambda fd, mode: FailingFile(
        real(fd, mode), 4096, OSError(code, os.strerror(code))))
    path = tmp_path / "step_00000002.pt"
    with pytest.raises(OSError) as info:
        ckpt.save_checkpoint(tiny_state(tokenizer), path)
    assert (info.value.errno, info.value.strerror, info.value.filename) == (
        code, os.strerror(code), str(path))
    assert list(tmp_path.iterdir()) == []


def test_a_failed_fsync_is_an_oserror_naming_the_checkpoint(tmp_path, monkeypatch, tokenizer):
    def fsync(fd):
        raise OSError(errno.EIO, "Input/output error")
    monkeypatch.setattr(ckpt.os, "fsync", fsync)
    with pytest.raises(OSError, match="Input/output error") as info:
        ckpt.save_checkpoint(tiny_state(tokenizer), tmp_path / "a.pt")
    assert info.value.filename == str(tmp_path / "a.pt") and list(tmp_path.iterdir()) == []


def test_a_checkpoint_that_cannot_be_pickled_is_not_called_a_write_error(tmp_path):
    with pytest.raises(Exception) as info:
        ckpt.save_checkpoint({"f": lambda: 0}, tmp_path / "a.pt")
    assert not isinstance(info.value, OSError) and list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- checkpoint vs vocabulary

def test_check_tokenizer_names_both_files(tmp_path, tokenizer, other_tokenizer):
    state = tiny_state(tokenizer)
    ckpt.check_tokenizer(state, tokenizer, "cache/tok.json", "run/step_1.pt")  # the same: fine
    with pytest.raises(ckpt.CheckpointError) as info:
        ckpt.check_tokenizer(state, other_tokenizer, "cache/tok.json", "run/step_1.pt")
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"checkpoint run/step_1.pt was trained with another vocabulary "
                              f"({tokenizer.vocab_size} tokens, sha256 ")
    assert "saved from run/tokenizer.json) than cache/tok.json " in message
    assert f"({other_tokenizer.vocab_size} tokens, sha256 " in message and "--data-dir" in message
    path = ckpt.save_checkpoint(state, tmp_path / "step_00000001.pt")  # a file works too
    with pytest.raises(ckpt.CheckpointError, match=f"^checkpoint {path} was trained"):
        ckpt.check_tokenizer(path, other_tokenizer, "cache/tok.json")


def test_evaluating_with_another_vocabulary_is_refused(tmp_path, tokenizer, other_tokenizer):
    path = ckpt.save_checkpoint({**tiny_state(tokenizer), "data": {"dataset": "toy"}},
                                tmp_path / "step_00000001.pt")
    same = TranslationDataset.from_texts("toy", "de", "en", tokenizer, TEXTS)
    assert checkpoint_and_data(path, device="cpu", dataset=same)[1] is same
    other = TranslationDataset.from_texts("toy", "de", "en", other_tokenizer, TEXTS,
                                          tokenizer_path=tmp_path / "tokenizer-x.json")
    with pytest.raises(ckpt.CheckpointError, match=(
            f"^checkpoint {path} was trained with another vocabulary .* than "
            f"{tmp_path / 'tokenizer-x.json'} .*Pass --data-dir")):
        checkpoint_and_data(path, device="cpu", dataset=other)


# ------------------------------------------------------------------------ over-long input

class CharTokenizer:
    """One token per character (ids 4..), as a vocabulary without merges would give."""

    eos_id = 2

    def encode(self, text):
        return [4 + ord(ch) % 10 for ch in text]


def test_source_ids_cut_over_long_sentences_with_a_warning(capsys):
    config = TransformerConfig(src_vocab_size=20, tgt_vocab_size=20, max_len=8)
    ids = source_ids(CharTokenizer(), ["abc", "abcdefgh", "abcdefg", ""], config,
                     names=["line 1", "line 2", "line 3", "line 4"])
    assert ids == [[4 + ord(c) % 10 for c in "abc"] + [2],
                   [4 + ord(c) % 10 for c in "abcdefg"] + [2],  # 8 tokens + EOS: cut to 8
                   [4 + ord(c) % 10 for c in "abcdefg"] + [2],  # 7 + EOS: fits exactly
                   [2]]
    assert capsys.readouterr().err.splitlines() == [
        "warning: line 2: 8 characters (8 tokens), longer than the model's maximum of 8 tokens "
        "(max_len, EOS included): only its first 7 tokens were translated; put one sentence "
        "per line"]


def test_a_megabyte_on_one_line_is_cut_fast(capsys, tokenizer):
    config = TransformerConfig(src_vocab_size=tokenizer.vocab_size,
                               tgt_vocab_size=tokenizer.vocab_size, max_len=256)
    line = "x" * 1_000_000
    start = time.perf_counter()
    [ids] = source_ids(tokenizer, [line], config)
    assert time.perf_counter() - start < 1.0  # only the head is encoded
    assert len(ids) == 256 and ids[-1] == tokenizer.eos_id
    err = capsys.readouterr().err
    assert err.startswith("warning: sentence 1: 1,000,000 characters, longer than the model's "
                          "maximum of 256 tokens")


def test_many_over_long_sentences_make_bounded_warnings(capsys):
    config = TransformerConfig(src_vocab_size=20, tgt_vocab_size=20, max_len=4)
    source_ids(CharTokenizer(), ["abcdef"] * 25, config)
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 11 and err[9].startswith("warning: sentence 10: ")
    assert err[10] == "warning: 15 more sentences longer than 4 tokens were cut the same way"


@pytest.mark.parametrize("positional", ["sinusoidal", "learned"])
@pytest.mark.parametrize("beam_size", [1, 3])
def test_translate_bounds_its_input_by_max_len(capsys, tokenizer, positional, beam_size):
    """Greedy decoding with learned positions used to run past the table (source + 50)."""
    state = tiny_state(tokenizer, max_len=16, positional=positional)
    model = ckpt.build_model(state)
    long = " ".join(f"hund {i}" for i in range(40))
    out = translate(model, tokenizer, ["ein hund", long, "die straße"], beam_size=beam_size,
                    names=["stdin line 1", "stdin line 2", "stdin line 3"])
    assert len(out) == 3 and all(isinstance(x, str) for x in out)
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith(f"warning: stdin line 2: {len(long)} characters (")
    assert "maximum of 16 tokens" in err[0]


def test_the_translate_command_cuts_a_megabyte_line(tmp_path, tokenizer):
    """One output line per input line, a warning naming the long line, in seconds."""
    path = ckpt.save_checkpoint(tiny_state(tokenizer), tmp_path / "step_00000001.pt")
    stdin = b"ein hund\n" + b"y" * 1_000_000 + b"\n\ndie stra\xc3\x9fe\n"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "transformer", "translate", "--checkpoint",
                           str(path), "--device", "cpu"], input=stdin, cwd=ROOT, env=env,
                          capture_output=True, timeout=120)
    err = done.stderr.decode()
    assert done.returncode == 0, err
    assert len(done.stdout.decode().split("\n")) == 5 and done.stdout.endswith(b"\n")
    assert done.stdout.decode().split("\n")[2] == ""  # the empty line stays empty
    assert [line for line in err.splitlines() if line.startswith(("warning", "error"))] == [
        "warning: stdin line 2: 1,000,000 characters, longer than the model's maximum of 16 "
        "tokens (max_len, EOS included): only its first 15 tokens were translated; put one "
        "sentence per line"]


def test_the_translate_help_says_what_happens_to_long_lines(capsys):
    from transformer.apps import cli
    with pytest.raises(SystemExit):
        cli.main(["translate", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "A line longer than the model's maximum (its max_len, in subword tokens) is cut" in text
