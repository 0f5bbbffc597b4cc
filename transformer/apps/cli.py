"""Command line: ``python -m transformer {train,translate,evaluate,average,download,reproduce}``.

    python -m transformer train --preset base --dataset multi30k --src de --tgt en
    torchrun --nproc-per-node 8 -m transformer train --preset base ...   # data parallel
    echo "Ein Mann fährt Fahrrad ." | python -m transformer translate --checkpoint CKPT
    python -m transformer evaluate --checkpoint CKPT --split test_2016_flickr
    python -m transformer average --last 5 --run-dir runs/base --out runs/base/avg5.pt
    python -m transformer download multi30k
    python -m transformer reproduce            # what `make reproduce` runs

Every field of ``TrainConfig`` is an option (``--max-tokens``, ``--time-budget`` ...), and so
is every architectural field of ``TransformerConfig`` (``--d-model``, ``--n-layers``,
``--dropout`` ...): ``options.py`` declares them; ``--set key=value`` reaches either by name;
``--recipe NAME`` starts from a named run of ``recipes.py``.

Expected failures (a bad checkpoint or data file, a path that cannot be written, an invalid
value) end with one line on stderr, ``error: ...``, naming the file or value and the fix, and
exit status 1; ``--debug`` (before the command) also prints the traceback.  Anything else is a
bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import sys
import traceback
from pathlib import Path

from ..data import DataError, download, download_size
from ..engine.checkpoint import CheckpointError, list_checkpoints, load_model, write_average
from ..engine.evaluate import evaluate_checkpoint, format_scores, translate
from ..engine.runtime import DTYPES, in_dtype, pick_device
from ..engine.train import train
from .dryrun import dry_run
from .options import add_train_options, train_config_from_args, train_recipe
from .profiles import cpu_has_native_bf16
from .recipes import RECIPES
from .reproduce import reproduce


def at_least(low: float, kind=int):
    """An argparse type: a number of ``kind`` >= ``low``, else a usage error saying so."""
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {kind.__name__}, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be >= {low}, got {value}")
        return value
    parse.__name__ = kind.__name__  # argparse names the type in its messages
    return parse


# ---------------------------------------------------------------------------------------------
# commands

def cmd_train(args) -> int:
    cfg = train_config_from_args(args)
    if args.dry_run:
        world = args.world_size or int(os.environ.get("WORLD_SIZE", "1"))
        if int(os.environ.get("RANK", "0")) == 0:
            print(dry_run(cfg, world, args.tokens_per_second, train_recipe(args)))
        return 0
    summary = train(cfg)
    if int(os.environ.get("RANK", "0")) != 0:
        return 0  # under torchrun the summary is printed once, by rank 0
    print(json.dumps(summary, indent=2))
    if summary["stopped"] == "interrupted":  # Ctrl-C or SIGTERM: saved, but not finished
        print(f"interrupted ({summary['interrupted_by']}) at step {summary['steps']}; saved "
              f"{summary['checkpoint']}; continue with --resume auto", file=sys.stderr)
        return 130
    return 0


def _decode_line(raw: bytes, number: int) -> tuple[str, bool]:
    """(text of one stdin line without its line end, whether its bytes were valid UTF-8):
    invalid bytes become U+FFFD; a byte-order mark opening line 1 is dropped."""
    raw = raw.removesuffix(b"\n").removesuffix(b"\r")
    try:
        text, valid = raw.decode("utf-8"), True
    except UnicodeDecodeError:
        text, valid = raw.decode("utf-8", errors="replace"), False
    return (text.removeprefix("\ufeff") if number == 1 else text), valid


def _warn_invalid(numbers: list[int]) -> None:
    """One line on stderr naming the stdin lines whose invalid UTF-8 was replaced."""
    if numbers:
        shown = ", ".join(map(str, numbers[:10])) + (
            f" and {len(numbers) - 10} more" if len(numbers) > 10 else "")
        print(f"warning: stdin line{'s' if len(numbers) > 1 else ''} {shown}: invalid UTF-8 "
              "replaced by U+FFFD", file=sys.stderr)


def _read_sentences() -> list[str]:
    """Every line of stdin, read as bytes and decoded as UTF-8 whatever the locale."""
    sentences, invalid = [], []
    for number, raw in enumerate(sys.stdin.buffer, 1):
        text, valid = _decode_line(raw, number)
        sentences.append(text)
        if not valid:
            invalid.append(number)
    _warn_invalid(invalid)
    return sentences


def _utf8_stdout() -> None:
    """Write UTF-8 whatever the locale, as stdin is read (U+FFFD has no Latin-1 byte)."""
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(encoding="utf-8", errors="replace")


def _warn_slow_bf16(dtype: str | None, device) -> None:
    """bfloat16 on a CPU without bf16 instructions is emulated: slower than float32, not faster."""
    if dtype == "bfloat16" and device.type == "cpu" and cpu_has_native_bf16() is False:
        print("warning: this CPU has no native bfloat16 instructions (AVX512-BF16 or AMX), so "
              "--dtype bfloat16 will likely decode slower than float32 here; leave it out",
              file=sys.stderr)


def cmd_translate(args) -> int:
    device = pick_device(args.device or "auto")
    _warn_slow_bf16(args.dtype, device)
    model, tokenizer, _ = load_model(args.checkpoint, device)
    model = in_dtype(model, args.dtype)  # cast once, not per translate() call
    opts = dict(beam_size=args.beam, alpha=args.alpha, max_tokens=args.max_tokens,
                cuda_graph=args.cuda_graph)
    _utf8_stdout()
    if sys.stdin.isatty():  # interactive: one line at a time
        print("Type a sentence per line (Ctrl-D to quit).", file=sys.stderr)
        for number, raw in enumerate(sys.stdin.buffer, 1):
            line, valid = _decode_line(raw, number)
            _warn_invalid([] if valid else [number])
            hyp = translate(model, tokenizer, [line.strip()], names=[f"stdin line {number}"],
                            **opts)[0] if line.strip() else ""
            print(hyp, flush=True)
        return 0
    sentences = _read_sentences()
    keep = [i for i, s in enumerate(sentences) if s.strip()]
    out = [""] * len(sentences)
    names = [f"stdin line {i + 1}" for i in keep]  # what warnings call over-long lines
    for i, hyp in zip(keep, translate(model, tokenizer, [sentences[i] for i in keep],
                                      names=names, **opts)):
        out[i] = hyp
    sys.stdout.write("".join(line + "\n" for line in out))
    return 0


def cmd_evaluate(args) -> int:
    device = pick_device(args.device or "auto")
    _warn_slow_bf16(args.dtype, device)
    result = evaluate_checkpoint(args.checkpoint, args.split, beam_size=args.beam,
                                 alpha=args.alpha, max_tokens=args.max_tokens, limit=args.limit,
                                 data_dir=args.data_dir, device=device, dtype=args.dtype,
                                 cuda_graph=args.cuda_graph)
    print(format_scores(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    return 0


def cmd_average(args) -> int:
    paths = list(args.checkpoints)
    if args.last:
        if not args.run_dir:
            raise SystemExit("average --last N needs --run-dir")
        paths += [str(p) for p in list_checkpoints(args.run_dir)[-args.last:]]
    if not paths:
        raise SystemExit("average: no checkpoints given (list them, or --last N --run-dir D)")
    out = write_average(paths, args.out)
    print(f"averaged {len(paths)} checkpoints -> {out}")
    return 0


def cmd_download(args) -> int:
    if args.dry_run:
        print(download_size(args.name, args.src, args.tgt)["summary"])
        return 0
    print(download(args.name, data_dir=args.data_dir, src=args.src, tgt=args.tgt))
    return 0


def cmd_reproduce(args) -> int:
    reproduce(profile=args.profile, time_budget=args.time_budget, data_dir=args.data_dir,
              results_dir=args.results_dir, runs_dir=args.runs_dir, src=args.src, tgt=args.tgt,
              limit=args.limit, record=args.record)
    return 0


# ---------------------------------------------------------------------------------------------
# parser

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="transformer", formatter_class=argparse.RawDescriptionHelpFormatter,
        description=__doc__.split("\n")[0] + "\n\nAn expected error is reported as one line, "
        "'error: ...', with exit status 1; --debug shows its traceback too.")
    parser.add_argument("--debug", action="store_true",
                        help="on an error, also print the traceback (give it before the command)")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train a model (single process or under torchrun)")
    p.add_argument("--recipe", choices=sorted(RECIPES), default=None,
                   help="start from a named run of transformer/apps/recipes.py (default: the "
                   "one named like --preset, if any: every row of Table 3 and big has the "
                   "paper's training); the options below override it")
    p.add_argument("--dry-run", action="store_true",
                   help="print the plan (model size, steps, batch split over ranks, "
                   "checkpoints, download, projected time) and exit: nothing is downloaded "
                   "or trained")
    p.add_argument("--world-size", type=at_least(1), default=None,
                   help="ranks to plan for with --dry-run (default: $WORLD_SIZE, else 1)")
    p.add_argument("--tokens-per-second", type=at_least(1.0, float), default=None,
                   help="measured throughput (target tokens/s, all ranks) for --dry-run's "
                   "time projection (default: a short probe when the corpus is at hand)")
    add_train_options(p)
    p.set_defaults(func=cmd_train)

    def decoding(p):
        p.add_argument("--checkpoint", required=True, help="a checkpoint file (.pt)")
        p.add_argument("--beam", type=at_least(1), default=4,
                       help="beam size (1: greedy) (default: 4)")
        p.add_argument("--alpha", type=at_least(0.0, float), default=0.6,
                       help="length penalty, >= 0 (default: 0.6)")
        p.add_argument("--max-tokens", type=at_least(1), default=4000,
                       help="source tokens per batch (default: 4000)")
        p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if "
                       "available, else cpu)")
        p.add_argument("--dtype", choices=sorted(DTYPES), default=None,
                       help="decode in this precision (default: float32, as checkpoints are "
                       "stored).  bfloat16 is faster only on a CPU with native bf16 "
                       "(AVX512-BF16, AMX), slower on other CPUs, about as fast on a GPU, and "
                       "changes about one output in ten (results/bench/decode_cpu.json)")
        p.add_argument("--cuda-graph", action="store_true",
                       help="with --beam 1 on a CUDA device: record each batch's decoding step "
                       "as a CUDA graph and replay it per token, one launch per token instead "
                       "of one per kernel; the outputs are the same")

    p = sub.add_parser(
        "translate", help="translate sentences read from stdin, one per line",
        description="Translate stdin, one sentence per line, to stdout, one line per input "
        "line (an empty line stays empty).  Input is read as UTF-8 whatever the locale, and "
        "output written as UTF-8; invalid bytes are replaced by U+FFFD, the line is still "
        "translated, and a warning on stderr names the lines concerned.  A line longer than "
        "the model's maximum (its max_len, in subword tokens) is cut to it: its first tokens "
        "are translated, and a warning on stderr names the line and its length.")
    decoding(p)
    p.set_defaults(func=cmd_translate)

    p = sub.add_parser("evaluate", help="BLEU (sacreBLEU and tokenized) and perplexity")
    decoding(p)
    p.add_argument("--split", default=None, help="default: the dataset's test split")
    p.add_argument("--limit", type=at_least(1), default=None,
                   help="only the first N sentences")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--json", default=None, help="also write the scores to this JSON file")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("average", help="average checkpoints' weights (Section 6.1)")
    p.add_argument("checkpoints", nargs="*")
    p.add_argument("--last", type=at_least(1), default=None,
                   help="the run dir's last N checkpoints")
    p.add_argument("--run-dir", default=None)
    p.add_argument("--out", required=True, help="where to write the averaged checkpoint")
    p.set_defaults(func=cmd_average)

    p = sub.add_parser("download", help="fetch and verify a corpus")
    p.add_argument("name", help="multi30k or wmt14")
    p.add_argument("--src", default=None, help="source language (wmt14: en-de by default, or "
                   "en-fr; multi30k: only that pair's files)")
    p.add_argument("--tgt", default=None, help="target language")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--dry-run", action="store_true",
                   help="print how much would be downloaded and stored; fetch nothing")
    p.set_defaults(func=cmd_download)

    p = sub.add_parser("reproduce", help="train, evaluate and write results/local/<run>.json")
    p.add_argument("--profile", choices=["cpu", "gpu"], default=None,
                   help="default: $TRANSFORMER_PROFILE, else gpu when CUDA is available")
    p.add_argument("--time-budget", type=at_least(0.01, float), default=None,
                   help="training minutes (default: $TRANSFORMER_TIME_BUDGET, else 10 on cpu, "
                   "5 on gpu)")
    p.add_argument("--src", default="de", help="Multi30k source language (default: de)")
    p.add_argument("--tgt", default="en", help="Multi30k target language (default: en)")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--results-dir", default=None,
                   help="default: results/local/ (git-ignored; the recorded runs in "
                   "results/runs/ are left alone and compared with yours)")
    p.add_argument("--record", action="store_true",
                   help="write results/runs/<run>.json, the project's recorded run (maintainers)")
    p.add_argument("--limit", type=at_least(1), default=None,
                   help="score only the first N test sentences (default: all)")
    p.add_argument("--runs-dir", default=None,
                   help="default: $TRANSFORMER_RUNS_DIR, else runs/ in the checkout")
    p.set_defaults(func=cmd_reproduce)
    return parser


# ---------------------------------------------------------------------------------------------
# errors

# Failures that explain themselves.  OSError: a path that cannot be read or written (and this
# project's FileExistsError with its own message); ValueError includes UnicodeDecodeError.
EXPECTED = (CheckpointError, DataError, FloatingPointError, OSError, ValueError)

_OS_HINTS = {
    errno.EEXIST: "something is already there: move it away or choose another path",
    errno.EISDIR: "it is a directory: give a file path",
    errno.EACCES: "no permission: fix the permissions or choose another path",
    errno.EPERM: "no permission: fix the permissions or choose another path",
    errno.EROFS: "read-only file system: choose another path",
    errno.ENOSPC: "the disk is full: free some space or choose another path",
    errno.EFBIG: "the file outgrew a size limit (ulimit -f, or the file system's): raise it or "
                 "choose another path",
    errno.EDQUOT: "the disk quota is used up: free some space or choose another path",
    errno.ENOENT: "check the path",
    errno.EPIPE: "the reader of the output went away before it was complete",
}


def _file_in_the_way(path: Path) -> Path | None:
    """The nearest of ``path`` and its parents that exists but is not a directory."""
    return next((p for p in (path, *path.parents) if p.exists() and not p.is_dir()), None)


def _os_hint(e: OSError, path: str | None) -> str:
    """What to do about ``e``, in a few words."""
    if e.errno in (errno.ENOTDIR, errno.EEXIST) and path is not None:
        blocker = _file_in_the_way(Path(path))
        if blocker is not None:
            return f"{blocker} is a file, not a directory: move it away or choose another path"
    return _OS_HINTS.get(e.errno, "check the path and retry")


def _os_message(e: OSError) -> str:
    """``<path>: <strerror> (<what to do>)``; an OSError raised with a message of its own
    (no errno, as this project's FileExistsError) keeps that message."""
    if e.errno is None or e.strerror is None:
        return str(e)
    names = [os.fsdecode(f) if isinstance(f, bytes) else str(f)
             for f in (e.filename, e.filename2) if f is not None]
    where = " -> ".join(names) + ": " if names else ""
    return f"{where}{e.strerror} ({_os_hint(e, names[0] if names else None)})"


def _one_line(text: str) -> str:
    """A multi-line message joined into one line ("; " between lines, " " after a colon)."""
    out = ""
    for part in filter(None, (line.strip() for line in text.splitlines())):
        out += ("" if not out else " " if out.endswith(":") else "; ") + part
    return out


def error_message(e: BaseException) -> str:
    """The one-line ``error: ...`` text for an expected failure."""
    text = _os_message(e) if isinstance(e, OSError) else str(e)
    if isinstance(e, UnicodeDecodeError):
        text = f"invalid UTF-8 ({text}); rerun with --debug to see which file"
    return "error: " + _one_line(text or type(e).__name__)


def _drop_stdout() -> None:
    """After a broken pipe (``... | head``) send what is left in stdout's buffer nowhere, so
    that flushing it at exit prints no second error."""
    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # stdout is no real file (tests)
        pass


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except EXPECTED as e:  # errors that explain themselves: one line, no traceback
        if isinstance(e, BrokenPipeError):
            _drop_stdout()
        if args.debug:
            traceback.print_exc()
        print(error_message(e), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        if args.debug:
            traceback.print_exc()
        print("interrupted", file=sys.stderr)
        return 130
