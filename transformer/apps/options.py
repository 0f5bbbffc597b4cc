"""The ``train`` command's options: one ``--field-name`` per field of ``TrainConfig`` and of
``TransformerConfig``, with the help texts below and the allowed values of each config's
``RULES``.

Every option defaults to "not given", so that only what the user typed overrides the recipe
(``recipes.py``) and the preset; ``--set key=value`` reaches any field by name.  Out-of-range
values are refused by the configs themselves, with the field and the allowed range named.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import typing

from ..engine.train import RULES as TRAIN_RULES
from ..engine.train import TrainConfig
from ..model import TransformerConfig
from ..model.config import KINDS
from ..model.config import RULES as MODEL_RULES
from .recipes import RECIPES

TRAIN_HELP = {
    "dataset": "dataset to train on",
    "src": "source language (default: the dataset's usual pair)",
    "tgt": "target language",
    "data_dir": "corpus and tokenizer cache (default: $TRANSFORMER_DATA_DIR or data/cache)",
    "vocab_size": "shared BPE vocabulary size (default: the dataset's)",
    "preset": "model preset (transformer/model/config.py: base, big, Table 3's rows, tiny, "
              "small)",
    "tokens_per_step": "target tokens per optimizer step over all ranks (the paper: 25000); "
                       "micro-batches are accumulated to reach it; 0: one micro-batch of "
                       "--max-tokens per step",
    "max_tokens": "the largest micro-batch: source and target tokens each, padding included "
                  "(what fits in memory)",
    "warmup": "warm-up steps of the learning-rate schedule (Section 5.3)",
    "lr_scale": "multiplies the schedule's learning rate",
    "clip_grad": "clip the gradient norm to this (the paper does not)",
    "max_steps": "stop after this many optimizer steps",
    "max_epochs": "stop after this many passes over the training data",
    "time_budget": "minutes of training in this invocation before stopping",
    "patience": "stop after this many validations without a lower validation loss",
    "seed": "seeds weights, dropout and batch order",
    "device": "auto (cuda if available, else cpu), cpu, cuda or cuda:N",
    "run_dir": "where the log and checkpoints go",
    "resume": "checkpoint to continue from, or 'auto' for the run dir's latest",
    "overwrite": "start afresh in a run dir that already holds checkpoints",
    "log_every": "steps between log records (the only steps that wait for the GPU)",
    "eval_every": "steps between validations (0: only at the end)",
    "save_every": "steps between checkpoints (0: only at the end)",
    "keep_last": "checkpoints kept (the paper averages the last 5; 0: all)",
    "average": "average this many checkpoints into <run_dir>/averaged.pt at the end (Section "
               "6.1: 5 for base, 20 for big; with --patience, the ones ending at the best "
               "validation); 0: none",
    "compile": "torch.compile the model (CUDA)",
    "amp": "bf16 autocast on CUDA; float32 on the CPU whatever this says",
    "progress": "show a progress bar on rank 0",
}
MODEL_HELP = {
    "n_layers": "N, layers in each of the encoder and decoder stacks",
    "d_model": "model width d_model",
    "d_ff": "inner width of the feed-forward network (Section 3.3)",
    "n_heads": "h, attention heads (Section 3.2.2)",
    "d_k": "query/key width per head (default: d_model / h)",
    "d_v": "value width per head (default: d_model / h)",
    "dropout": "P_drop: residual and embedding dropout (Section 5.4)",
    "attn_dropout": "dropout on attention weights (the paper uses none)",
    "label_smoothing": "eps_ls (Section 5.4)",
    "positional": "positional encoding: sinusoidal, or learned (Table 3 row E)",
    "share_embeddings": "tie the embeddings and the output projection (Section 3.4)",
    "norm_first": "pre-norm (later work) instead of the paper's post-norm",
    "max_len": "longest sequence a learned positional table holds",
}
OFF_WHEN_ZERO = {"tokens_per_step", "eval_every", "save_every"}  # 0 on the command line: None


def field_type(cls, name: str) -> type:
    """The type of field ``name`` of ``cls``, without ``| None``."""
    tp = typing.get_type_hints(cls)[name]
    return next((a for a in typing.get_args(tp) if a is not type(None)), tp)


def add_options(group, cls, helps: dict, rules: dict, prefix: str,
                show_default: bool = True) -> None:
    """``--field-name`` for each field of ``cls`` named in ``helps``, stored as
    ``<prefix><field>``; the help ends with the allowed range and the default."""
    for f in dataclasses.fields(cls):
        if f.name not in helps:
            continue
        tp, rule, text = field_type(cls, f.name), rules.get(f.name), helps[f.name]
        if isinstance(rule, str):
            text += f"; {'0 or ' if f.name in OFF_WHEN_ZERO else ''}{KINDS[tp]} {rule}"
        if show_default and f.default not in (dataclasses.MISSING, None):
            text += f" (default: {f.default})"
        flag, kw = "--" + f.name.replace("_", "-"), dict(dest=prefix + f.name, default=None,
                                                        help=text.replace("%", "%%"))
        if tp is bool:
            group.add_argument(flag, action=argparse.BooleanOptionalAction, **kw)
        elif isinstance(rule, tuple):
            group.add_argument(flag, choices=rule, **kw)
        else:
            group.add_argument(flag, type=tp, metavar="TEXT" if tp is str else tp.__name__.upper(),
                               **kw)


def add_train_options(parser) -> None:
    add_options(parser.add_argument_group("training"), TrainConfig, TRAIN_HELP, TRAIN_RULES, "t_")
    add_options(parser.add_argument_group("model (default: the preset's values)"),
                TransformerConfig, MODEL_HELP, MODEL_RULES, "m_", show_default=False)
    parser.add_argument("--set", action="append", metavar="KEY=VALUE",
                        help="set any model or training field by name (repeatable)")


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


def train_recipe(args):
    """The recipe a ``train`` command starts from: ``--recipe``, else the one named like the
    model preset (every row of Table 3 and big has one: the paper's training), else None."""
    if args.recipe:
        return RECIPES[args.recipe]
    return RECIPES.get(args.t_preset or TrainConfig.preset)


def train_config_from_args(args) -> TrainConfig:
    """TrainConfig from parsed ``train`` options over the settings of ``train_recipe(args)``:
    model overrides go to ``cfg.model``."""
    train_kw, model_kw = _given(args, "t_"), _given(args, "m_")
    model_fields = {f.name for f in dataclasses.fields(TransformerConfig)}
    train_fields = {f.name for f in dataclasses.fields(TrainConfig)} - {"model"}
    for item in args.set or []:
        key, sep, value = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep:
            raise SystemExit(f"--set expects key=value, got {item!r}")
        if key in model_fields:
            model_kw[key] = _parse_value(value)
        elif key in train_fields:
            train_kw[key] = _parse_value(value)
        else:
            raise SystemExit(f"--set: unknown field {key!r}; model fields: "
                             f"{sorted(model_fields)}; train fields: {sorted(train_fields)}")
    for name in OFF_WHEN_ZERO:
        if train_kw.get(name) == 0:
            train_kw[name] = None
    recipe = train_recipe(args)
    if recipe is not None:
        return recipe.config(**train_kw, model=model_kw)
    return TrainConfig(**train_kw, model=model_kw)
