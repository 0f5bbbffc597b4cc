"""One error path for the command line: an expected failure is one ``error: ...`` line and a
non-zero exit status (a traceback only with ``--debug``); bad stdin bytes and a damaged token-id
cache are repaired with a warning, not fatal."""

import io
import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from transformer.apps import cli
from transformer.data import DataError
from transformer.data.dataset import TranslationDataset
from transformer.data.tokenizer import SubwordTokenizer

ROOT = Path(__file__).resolve().parent.parent


def run_cli(*args, stdin=b"", env=None, timeout=120):
    """``python -m transformer ARGS`` with bytes in; (exit status, stdout bytes, stderr text)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    done = subprocess.run([sys.executable, "-m", "transformer", *args], input=stdin, cwd=ROOT,
                          env=env, capture_output=True, timeout=timeout)
    return done.returncode, done.stdout, done.stderr.decode("utf-8", errors="replace")


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A tiny copy-task model trained for 5 steps through the command line."""
    run = tmp_path_factory.mktemp("run")
    rc, out, err = run_cli("train", "--dataset", "copy", "--preset", "tiny", "--set",
                           "dropout=0.0", "--max-tokens", "1024", "--tokens-per-step", "0",
                           "--warmup", "50", "--max-steps", "5", "--log-every", "5",
                           "--eval-every", "0", "--run-dir", str(run), "--no-progress")
    assert rc == 0, err
    out = out.decode()
    return json.loads(out[out.index("{"):])["checkpoint"]


# --------------------------------------------------------------------------------- options

@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="a CPU-only machine's error")
def test_cuda_graph_on_a_cpu_or_with_beam_search_is_one_error_line(checkpoint):
    rc, out, err = run_cli("translate", "--checkpoint", checkpoint, "--beam", "1",
                           "--cuda-graph", stdin=b"Ein Hund\n")
    assert rc == 1 and out == b"" and "Traceback" not in err
    assert error_lines(err) == ["error: cuda_graph=True needs a CUDA device; decoding runs on "
                                "cpu: leave it out there"]
    rc, out, err = run_cli("translate", "--checkpoint", checkpoint, "--cuda-graph",
                           stdin=b"Ein Hund\n")
    assert rc == 1 and "beam search (beam size 4) is not graphed" in error_lines(err)[0]


# --------------------------------------------------------------------------------- stdin

def test_invalid_utf8_on_stdin_is_replaced_and_named(checkpoint):
    # an ASCII locale encoding must not matter: stdin and stdout are UTF-8 for translate
    rc, out, err = run_cli("translate", "--checkpoint", checkpoint, "--beam", "1",
                           stdin=b"Ein Hund\n\xff\xfe kaputt\nZwei\n",
                           env={"PYTHONIOENCODING": "ascii", "LC_ALL": "C"})
    assert rc == 0, err
    assert len(out.decode("utf-8").split("\n")) == 4 and out.endswith(b"\n")  # 3 lines
    assert "warning: stdin line 2: invalid UTF-8 replaced by U+FFFD" in err
    assert "Traceback" not in err and not error_lines(err)


def test_interactive_translate_reads_bytes_too(monkeypatch, capsys):
    """The tty path decodes each line as it comes, warns per line, keeps one output a line."""
    stdin = SimpleNamespace(buffer=io.BytesIO(b"eins\n\nzw\xc3i\r\n"), isatty=lambda: True)
    monkeypatch.setattr(sys, "stdin", stdin)
    monkeypatch.setattr(cli, "load_model", lambda path, device: (None, None, None))
    monkeypatch.setattr(cli, "translate", lambda m, t, sentences, **kw: [sentences[0].upper()])
    assert cli.main(["translate", "--checkpoint", "unused.pt", "--device", "cpu"]) == 0
    captured = capsys.readouterr()
    assert captured.out.split("\n") == ["EINS", "", "ZW\ufffdI", ""]
    assert "warning: stdin line 3: invalid UTF-8 replaced by U+FFFD" in captured.err


def test_many_invalid_lines_make_one_warning(monkeypatch, capsys):
    raw = b"".join(b"\xff\n" if i % 2 else b"ok\n" for i in range(30))
    monkeypatch.setattr(sys, "stdin", SimpleNamespace(buffer=io.BytesIO(raw)))
    assert len(cli._read_sentences()) == 30
    err = capsys.readouterr().err.splitlines()
    assert err == ["warning: stdin lines 2, 4, 6, 8, 10, 12, 14, 16, 18, 20 and 5 more: "
                   "invalid UTF-8 replaced by U+FFFD"]


# --------------------------------------------------------------------------------- paths

def test_a_run_dir_under_a_regular_file_is_one_error_line(tmp_path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("in the way")
    run_dir = blocker / "sub"
    rc, _, err = run_cli("train", "--dataset", "copy", "--preset", "tiny", "--max-steps", "1",
                         "--eval-every", "0", "--run-dir", str(run_dir), "--no-progress")
    assert rc == 1 and "Traceback" not in err
    [line] = error_lines(err)
    assert str(run_dir) in line and f"{blocker} is a file, not a directory" in line


def test_a_data_dir_under_a_regular_file_is_one_error_line(tmp_path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("in the way")
    rc, _, err = run_cli("download", "multi30k", "--data-dir", str(blocker / "sub"))
    assert rc == 1 and "Traceback" not in err
    [line] = error_lines(err)
    assert str(blocker / "sub") in line and "Not a directory" in line


def test_debug_shows_the_traceback(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    rc, _, err = run_cli("--debug", "translate", "--checkpoint", str(bad))
    assert rc == 1 and "Traceback" in err
    assert err.rstrip().splitlines()[-1].startswith("error: ")


def test_error_messages_are_one_line():
    own = FileExistsError("run dir r already holds 2 checkpoint(s). Continue it with "
                          "--resume auto, or choose another --run-dir.")
    assert cli.error_message(own) == f"error: {own}"  # the project's message, unchanged
    denied = PermissionError(13, "Permission denied", "/data/x")
    assert cli.error_message(denied) == ("error: /data/x: Permission denied (no permission: "
                                         "fix the permissions or choose another path)")
    checksum = DataError("cached file f does not match its checksum\n  expected sha256 a\n"
                         "  actual   sha256 b\nDelete f and download again.")
    assert cli.error_message(checksum) == (
        "error: cached file f does not match its checksum; expected sha256 a; "
        "actual   sha256 b; Delete f and download again.")
    bad_utf8 = UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte")
    assert cli.error_message(bad_utf8).startswith("error: invalid UTF-8 (")
    for e in (own, denied, checksum, bad_utf8, FloatingPointError("loss is nan")):
        assert isinstance(e, cli.EXPECTED) and "\n" not in cli.error_message(e)


def test_help_documents_errors_and_stdin(capsys):
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(["--help"])
    top = " ".join(capsys.readouterr().out.split())
    assert "--debug" in top and "one line" in top
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(["translate", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "UTF-8" in text and "U+FFFD" in text


# --------------------------------------------------------------------------------- id cache

TEXTS = {"train": ([f"ein hund {i} läuft" for i in range(40)],
                   [f"a dog {i} runs" for i in range(40)])}


@pytest.fixture(scope="module")
def tokenizer():
    return SubwordTokenizer.train(TEXTS["train"][0] + TEXTS["train"][1], 60)


def dataset(tokenizer, cache_dir):
    return TranslationDataset.from_texts("toy", "de", "en", tokenizer, TEXTS,
                                         cache_dir=cache_dir)


def rewrite(path, change):
    """Load the cache file's arrays, let ``change`` edit them in place, save them back."""
    with np.load(path) as z:
        arrays = dict(z)
    change(arrays)
    with open(path, "wb") as f:
        np.savez(f, **arrays)


def drop_last_three(arrays, side):
    cut = arrays[f"{side}_offsets"][:-3]
    arrays[f"{side}_offsets"], arrays[f"{side}_flat"] = cut, arrays[f"{side}_flat"][:cut[-1]]


def mismatched(path):
    """Both sides valid on their own, but the target side has 3 sentences fewer."""
    rewrite(path, lambda a: drop_last_three(a, "tgt"))


def bad_offsets(path):
    rewrite(path, lambda a: a.update(src_offsets=a["src_offsets"][::-1].copy()))


DAMAGE = {
    "mismatched sides": (mismatched, "3"),
    "offsets backwards": (bad_offsets, "offsets"),
    "garbage": (lambda p: p.write_bytes(b"garbage, not an npz"), "unreadable"),
    "empty": (lambda p: p.write_bytes(b""), "unreadable"),
    "truncated": (lambda p: p.write_bytes(p.read_bytes()[:200]), "unreadable"),
    "missing array": (lambda p: np.savez(open(p, "wb"), src_flat=np.zeros(1, np.int32)),
                      "unreadable"),
}


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_a_damaged_id_cache_is_rebuilt_with_a_warning(tmp_path, tokenizer, capsys, damage):
    expected = dataset(tokenizer, tmp_path).examples("train")
    [path] = tmp_path.glob("ids-train.*.npz")
    spoil, said = DAMAGE[damage]
    spoil(path)
    capsys.readouterr()
    assert dataset(tokenizer, tmp_path).examples("train") == expected
    err = capsys.readouterr().err
    assert f"warning: {path}:" in err and said in err and "rebuilding it" in err
    assert dataset(tokenizer, tmp_path).examples("train") == expected  # rebuilt: no warning
    assert capsys.readouterr().err == ""


def test_a_cache_for_another_corpus_size_is_rebuilt(tmp_path, tokenizer, capsys):
    """Consistent arrays, but fewer sentences than the corpus has (the known pair count)."""
    expected = dataset(tokenizer, tmp_path).examples("train")
    [path] = tmp_path.glob("ids-train.*.npz")
    mismatched(path)
    rewrite(path, lambda a: drop_last_three(a, "src"))
    capsys.readouterr()
    assert dataset(tokenizer, tmp_path).examples("train") == expected
    assert "37 source and 37 target sentences where the corpus has 40 pairs" in (
        capsys.readouterr().err)
