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
``--dropout`` ...); ``--set key=value`` reaches either by name.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import json
import sys
import typing
from pathlib import Path

from .config import PRESETS, TransformerConfig
from .runtime import pick_device
from .train import TrainConfig

# TransformerConfig fields that the tokenizer decides, not the user
DATA_FIELDS = {"src_vocab_size", "tgt_vocab_size", "pad_id", "bos_id", "eos_id", "unk_id"}

TRAIN_HELP = {
    "dataset": "copy, numbers, multi30k or wmt14",
    "src": "source language (default: the dataset's usual pair)",
    "tgt": "target language",
    "data_dir": "corpus and tokenizer cache (default: $TRANSFORMER_DATA_DIR or data/cache)",
    "vocab_size": "shared BPE vocabulary size (default: the dataset's)",
    "clip_grad": "clip the gradient norm to this (the paper does not)",
    "max_steps": "stop after this many optimizer steps",
    "max_epochs": "stop after this many passes over the training data",
    "seed": "seeds weights, dropout and batch order",
    "device": "auto, cpu, cuda or cuda:N",
    "run_dir": "where logs and checkpoints go",
    "log_every": "steps between log records (the only steps that wait for the GPU)",
    "keep_last": "checkpoints kept (the paper averages the last 5)",
    "progress": "show a progress bar",
    "preset": f"model preset: {', '.join(PRESETS)}",
    "max_tokens": "token budget of one micro-batch (source and target each, padding included)",
    "tokens_per_step": "target tokens per optimizer step over all ranks (the paper: 25000); "
                       "sets the number of accumulated micro-batches; 0 to use --accum",
    "accum": "micro-batches per optimizer step when --tokens-per-step is 0",
    "warmup": "warm-up steps of the learning-rate schedule (Section 5.3)",
    "lr_scale": "multiplies the schedule's learning rate",
    "time_budget": "minutes of training before stopping",
    "patience": "stop after this many validations without a lower validation loss",
    "resume": "checkpoint to continue from, or 'auto' for the run dir's latest",
    "overwrite": "start afresh in a run dir that already holds checkpoints",
    "eval_every": "steps between validations (0: only at the end)",
    "save_every": "steps between checkpoints (0: none by step count)",
    "save_every_minutes": "minutes between checkpoints (0: none by time)",
    "compile": "torch.compile the model",
    "amp": "bf16 autocast on CUDA",
}


def _field_type(tp):
    """(python type, is_optional) of a dataclass annotation such as ``int | None``."""
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    return (args[0], True) if args else (tp, False)


MODEL_HELP = {
    "n_layers": "N, layers per stack", "d_model": "model width", "d_ff": "feed-forward width",
    "n_heads": "h, attention heads", "d_k": "query/key width per head",
    "d_v": "value width per head", "dropout": "P_drop (Section 5.4)",
    "attn_dropout": "dropout on attention weights", "label_smoothing": "eps_ls (Section 5.4)",
    "positional": "sinusoidal or learned", "max_len": "longest sequence (learned positions)",
    "share_embeddings": "tie the embeddings and the output projection (Section 3.4)",
    "norm_first": "pre-norm instead of the paper's post-norm",
}


def add_dataclass_options(parser, cls, skip=(), help_text=None, dest_prefix="",
                          show_default=True):
    """One ``--field-name`` option per dataclass field, defaulting to "not given" (None)."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        tp, _ = _field_type(hints[f.name])
        flag = "--" + f.name.replace("_", "-")
        text = (help_text or {}).get(f.name, "")
        if show_default and f.default is not dataclasses.MISSING and f.default is not None:
            text = f"{text} (default: {f.default})" if text else f"default: {f.default}"
        kwargs = dict(dest=dest_prefix + f.name, default=None, help=text or None)
        if tp is not bool:
            kwargs["metavar"] = tp.__name__.upper() if tp in (int, float) else "TEXT"
        if tp is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, **kwargs)
        else:
            parser.add_argument(flag, type=tp if tp in (int, float) else str, **kwargs)


def _given(args, prefix: str) -> dict:
    return {k[len(prefix):]: v for k, v in vars(args).items()
            if k.startswith(prefix) and v is not None}


def _parse_value(text: str):
    lowered = text.lower()
    if lowered in ("true", "false", "none", "null"):
        return {"true": True, "false": False}.get(lowered)
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def train_config_from_args(args) -> TrainConfig:
    """TrainConfig from parsed ``train`` options: model overrides go to ``cfg.model``."""
    train_kw, model_kw = _given(args, "t_"), _given(args, "m_")
    model_fields = {f.name for f in dataclasses.fields(TransformerConfig)}
    train_fields = {f.name for f in dataclasses.fields(TrainConfig)}
    for item in args.set or []:
        key, sep, value = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep:
            raise SystemExit(f"--set expects key=value, got {item!r}")
        if key in model_fields:
            model_kw[key] = _parse_value(value)
        elif key in train_fields and key != "model":
            train_kw[key] = _parse_value(value)
        else:
            raise SystemExit(f"--set: unknown field {key!r}; model fields: "
                             f"{sorted(model_fields)}; train fields: {sorted(train_fields)}")
    for key in ("tokens_per_step", "eval_every", "save_every", "save_every_minutes"):
        if train_kw.get(key) == 0:
            train_kw[key] = None
    cfg = TrainConfig(**train_kw)
    cfg.model = {**cfg.model, **model_kw}
    return cfg


# ---------------------------------------------------------------------------------------------
# commands

def cmd_train(args) -> int:
    from .train import train

    cfg = train_config_from_args(args)
    summary = train(cfg)
    print(json.dumps(summary, indent=2))
    return 0


def _read_sentences() -> list[str]:
    return [line.rstrip("\n") for line in sys.stdin]


def cmd_translate(args) -> int:
    from .checkpoint import load_model
    from .translate import translate

    model, tokenizer, _ = load_model(args.checkpoint, pick_device(args.device or "auto"))
    opts = dict(beam_size=args.beam, alpha=args.alpha, max_tokens=args.max_tokens)
    if sys.stdin.isatty():  # interactive: one line at a time
        print("Type a sentence per line (Ctrl-D to quit).", file=sys.stderr)
        for line in sys.stdin:
            print(translate(model, tokenizer, [line.strip()], **opts)[0], flush=True)
        return 0
    sentences = _read_sentences()
    keep = [i for i, s in enumerate(sentences) if s.strip()]
    out = [""] * len(sentences)
    for i, hyp in zip(keep, translate(model, tokenizer, [sentences[i] for i in keep], **opts)):
        out[i] = hyp
    sys.stdout.write("".join(line + "\n" for line in out))
    return 0


def checkpoint_and_data(path, *, data_dir=None, device=None, dataset=None):
    """``(model, dataset)``: a checkpoint's model and the dataset it learnt, rebuilt (or the
    ``dataset`` given) and checked to have the tokenizer the model was trained with."""
    from .checkpoint import CheckpointError, load_model
    from .data import load_dataset

    model, tokenizer, state = load_model(path, pick_device(device or "auto"))
    info = state.get("data") or {}
    if dataset is None:
        if not info.get("dataset"):
            raise CheckpointError(f"checkpoint {path} does not say which dataset it learnt")
        dataset = load_dataset(info["dataset"], info.get("src"), info.get("tgt"),
                               vocab_size=info.get("vocab_size"),
                               data_dir=data_dir or info.get("data_dir"),
                               seed=info.get("seed", 0))
    if tokenizer != dataset.tokenizer:
        raise CheckpointError(
            f"checkpoint {path}: the tokenizer of {dataset.name} on this machine differs from the "
            "one the model was trained with (a different data dir or vocabulary size?). Pass "
            "--data-dir pointing at the training data cache.")
    return model, dataset


def evaluate_checkpoint(path, split=None, *, beam_size=4, alpha=0.6, max_tokens=4000,
                        limit=None, data_dir=None, device=None, dataset=None) -> dict:
    """Load a checkpoint and its dataset, score ``split`` with
    ``transformer.translate.evaluate``: sacreBLEU (+ signature), tokenized BLEU, perplexity."""
    from .translate import evaluate

    model, dataset = checkpoint_and_data(path, data_dir=data_dir, device=device, dataset=dataset)
    split = split or ("test" if "test" in dataset.splits else dataset.splits[-1])
    result = evaluate(model, dataset, split, beam_size=beam_size, alpha=alpha,
                      max_tokens=max_tokens, limit=limit)
    result["checkpoint"] = str(path)
    return result


def print_evaluation(result: dict) -> None:
    print(f"{result['dataset']} {result['split']}: {result['n_sentences']} sentences, "
          f"beam {result['beam_size']}, alpha {result['alpha']}")
    print(f"  sacreBLEU      {result['sacrebleu']:6.2f}  {result['sacrebleu_signature']}")
    print(f"  tokenized BLEU {result['tokenized_bleu']:6.2f}  "
          f"{result.get('tokenized_bleu_signature', '')}")
    print(f"  perplexity     {result['perplexity']:6.2f}  (per subword token)")


def cmd_evaluate(args) -> int:
    result = evaluate_checkpoint(args.checkpoint, args.split, beam_size=args.beam,
                                 alpha=args.alpha, max_tokens=args.max_tokens, limit=args.limit,
                                 data_dir=args.data_dir, device=args.device)
    print_evaluation(result)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    return 0


def cmd_average(args) -> int:
    from .checkpoint import list_checkpoints, write_average

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
    from .data import download

    print(download(args.name, data_dir=args.data_dir))
    return 0


def cmd_reproduce(args) -> int:
    from .reproduce import reproduce

    reproduce(profile=args.profile, time_budget=args.time_budget, data_dir=args.data_dir,
              results_dir=args.results_dir, runs_dir=args.runs_dir, src=args.src, tgt=args.tgt)
    return 0


# ---------------------------------------------------------------------------------------------
# parser

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="transformer", description=__doc__.split("\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train a model (single process or under torchrun)")
    add_dataclass_options(p.add_argument_group("training"), TrainConfig, skip={"model"},
                          help_text=TRAIN_HELP, dest_prefix="t_")
    add_dataclass_options(p.add_argument_group("model (default: the preset's values)"),
                          TransformerConfig, skip=DATA_FIELDS, help_text=MODEL_HELP,
                          dest_prefix="m_", show_default=False)
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="set any model or training field by name (repeatable)")
    p.set_defaults(func=cmd_train)

    def decoding(p):
        p.add_argument("--checkpoint", required=True, help="a checkpoint file (.pt)")
        p.add_argument("--beam", type=int, default=4, help="beam size (1: greedy) (default: 4)")
        p.add_argument("--alpha", type=float, default=0.6, help="length penalty (default: 0.6)")
        p.add_argument("--max-tokens", type=int, default=4000, help="source tokens per batch")
        p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if "
                       "available, else cpu)")

    p = sub.add_parser("translate", help="translate sentences read from stdin, one per line")
    decoding(p)
    p.set_defaults(func=cmd_translate)

    p = sub.add_parser("evaluate", help="BLEU (sacreBLEU and tokenized) and perplexity")
    decoding(p)
    p.add_argument("--split", default=None, help="default: the dataset's test split")
    p.add_argument("--limit", type=int, default=None, help="only the first N sentences")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--json", default=None, help="also write the scores to this JSON file")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("average", help="average checkpoints' weights (Section 6.1)")
    p.add_argument("checkpoints", nargs="*")
    p.add_argument("--last", type=int, default=None, help="the run dir's last N checkpoints")
    p.add_argument("--run-dir", default=None)
    p.add_argument("--out", required=True, help="where to write the averaged checkpoint")
    p.set_defaults(func=cmd_average)

    p = sub.add_parser("download", help="fetch and verify a corpus")
    p.add_argument("name", help="multi30k or wmt14")
    p.add_argument("--data-dir", default=None)
    p.set_defaults(func=cmd_download)

    p = sub.add_parser("reproduce", help="train, evaluate and write results/<run>.json")
    p.add_argument("--profile", choices=["cpu", "gpu"], default=None,
                   help="default: $TRANSFORMER_PROFILE, else gpu when CUDA is available")
    p.add_argument("--time-budget", type=float, default=None,
                   help="training minutes (default: $TRANSFORMER_TIME_BUDGET, else 10 on cpu, "
                   "30 on gpu)")
    p.add_argument("--src", default="de", help="Multi30k source language (default: de)")
    p.add_argument("--tgt", default="en", help="Multi30k target language (default: en)")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--results-dir", default="results")
    p.add_argument("--runs-dir", default="runs")
    p.set_defaults(func=cmd_reproduce)
    return parser


def main(argv=None) -> int:
    from .checkpoint import CheckpointError

    args = build_parser().parse_args(argv)
    expected = (CheckpointError, FloatingPointError, FileExistsError, ValueError)
    try:
        from .data import DataError

        expected += (DataError,)
    except ImportError:
        pass
    try:
        return args.func(args)
    except expected as e:  # errors that explain themselves: no traceback
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
