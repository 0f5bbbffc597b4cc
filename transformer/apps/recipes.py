"""Named training runs, as data: each recipe is a set of ``TrainConfig`` fields and its reasons.

    from transformer.apps.recipes import RECIPES
    cfg = RECIPES["reproduce-cpu"].config(run_dir="runs/mine")    # a TrainConfig
    python -m transformer train --preset base --dataset wmt14 --src en --tgt de   # = recipe "base"
    python -m transformer train --recipe big-en-fr

A recipe names a model preset (the shapes of Table 3 live in ``transformer/model/config.py``)
and sets the training fields that differ from ``TrainConfig``'s defaults, which are the
paper's (Section 5: Adam 0.9/0.98/1e-9, warm-up 4000, about 25000 source + 25000 target tokens
per step, label smoothing 0.1).  Every row of Table 3 and the
big model has a recipe of the same name, which ``train --preset NAME`` starts from.
``decode`` holds the settings the result is decoded with (Section 6.1).  The reasons for each
choice are written here and nowhere else; ``make reproduce``, the notebooks and the command
line all read this table.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..engine.train import TrainConfig
from ..model.config import PAPER_ROWS

# Section 6.1: "beam search with a beam size of 4 and length penalty alpha = 0.6 ... maximum
# output length during inference to input length + 50"
PAPER_DECODE = {"beam_size": 4, "alpha": 0.6, "max_len_offset": 50}


@dataclass(frozen=True)
class Recipe:
    """A named training run: ``train`` holds ``TrainConfig`` fields; ``why`` the reasons."""

    what: str
    why: str
    train: dict = field(default_factory=dict)
    decode: dict = field(default_factory=lambda: dict(PAPER_DECODE))

    def config(self, **fields) -> TrainConfig:
        """A ``TrainConfig`` of this recipe; ``fields`` replace its values (``model`` is merged
        field by field)."""
        merged = {**self.train, **fields}
        merged["model"] = {**self.train.get("model", {}), **fields.get("model", {})}
        return TrainConfig(**merged)


def _table3_row(row: str) -> Recipe:
    return Recipe(
        what=f"Table 3 row {row}: the base model with {PAPER_ROWS[row]}, trained as base",
        why="Table 3: each variation is trained like the base model (100k steps) and scored "
            "on newstest2013 with beam search but without checkpoint averaging.",
        train=dict(preset=row, max_steps=100_000))


_PAPER: dict[str, Recipe] = {
    "base": Recipe(
        what="the base model of Table 2 as the paper trained it (8 P100 GPUs, 12 hours)",
        why="Section 5: batches of about 25000 source and 25000 target tokens per step, Adam "
            "with warm-up 4000, label smoothing 0.1, dropout 0.1, 100k steps.  Section 6.1 "
            "averages the last 5 checkpoints, written at 10-minute intervals: on the paper's "
            "hardware (100k steps in 12 hours, 0.43 s a step) that is every 1,400 steps.",
        train=dict(preset="base", max_steps=100_000, save_every=1400, keep_last=5,
                   average=5)),
    "big": Recipe(
        what="the big model of Table 2, EN-DE (8 P100 GPUs, 3.5 days)",
        why="Sections 5-6.1: as base, but 300k steps, dropout 0.3 for EN-DE (the preset's), "
            "and the last 20 checkpoints averaged; 10 minutes of the paper's hardware (300k "
            "steps in 3.5 days, 1.0 s a step) are 600 steps.",
        train=dict(preset="big", max_steps=300_000, save_every=600, keep_last=20,
                   average=20)),
    **{row: _table3_row(row) for row in PAPER_ROWS if row not in ("base", "big")},
    "big-en-fr": Recipe(
        what="the big model of Table 2 on WMT14 EN-FR (36M pairs, 32000-token vocabulary)",
        why="Section 6.1: 'The Transformer (big) model trained for English-to-French used "
            "dropout rate P_drop = 0.1, instead of 0.3'; Section 5.1: a 32000 word-piece "
            "vocabulary; otherwise as big: 300k steps, the last 20 checkpoints averaged.",
        train=dict(preset="big", model=dict(dropout=0.1), dataset="wmt14", src="en", tgt="fr",
                   vocab_size=32000, max_steps=300_000, save_every=600, keep_last=20,
                   average=20)),
}

_GPU_MULTI30K = dict(
    preset="base", model=dict(dropout=0.3), max_tokens=4096, tokens_per_step=None,
    warmup=4000, lr_scale=1.0, max_steps=100_000, time_budget=5.0, log_every=50,
    eval_every=250, patience=8, save_every=250, keep_last=20, average=5, compile=False)

_NARROW = dict(n_layers=2, d_model=128, d_ff=512, n_heads=4)  # 1.95M parameters with 8k BPE

RECIPES: dict[str, Recipe] = {
    **_PAPER,
    "reproduce-gpu": Recipe(
        what="make reproduce on a GPU: the base model on Multi30k (29k pairs) for 5 minutes",
        why="The paper's base model (Table 3's shapes, 48M parameters with the shared 8k "
            "BPE) and its schedule, fitted to a corpus 150 times smaller than WMT14, so that "
            "the whole job ends within minutes on one H100/H200: 5 minutes of training, then "
            "checkpoint averaging, decoding the test set three ways and scoring.  "
            "Each step is one batch of at most 4096 tokens (about 3,500 target tokens), "
            "because Multi30k holds only about 18 batches of the paper's 25000 tokens; such a "
            "GPU makes about 22 of these steps a second, some 6,500 in 5 minutes "
            "(results/gpu-logs/2026-11-30b/reproduce_first_recipe.json).  "
            "The learning rate follows the paper, 4000 warm-up steps to a peak of 7e-4: of "
            "four schedules compared it reached the lowest validation perplexity "
            "(results/gpu-logs/2026-11-30b/schedules/), and a 1000-step warm-up to the same "
            "peak without gradient clipping stalled, then diverged "
            "(results/gpu-logs/2026-11-30b/reproduce_first_recipe_log.jsonl).  "
            "Dropout is 0.3, the paper's big-model value, because the model sees the small "
            "corpus dozens of times and Table 3 row D shows dropout matters most against "
            "over-fitting (0.1 has not been compared on a GPU).  "
            "Training stops after 5 minutes (--time-budget changes it), or earlier when the "
            "validation loss has not improved for 8 validations (2000 steps).  A validation "
            "and a checkpoint every 250 steps (about 11 s), and the 5 checkpoints ending at "
            "the best validation are averaged (Section 6.1), so that an early stop does not "
            "average in the worse checkpoints after the best.  "
            "The model is not compiled: compiling takes 60-90 s and makes a step only 1.33x "
            "as fast (results/bench/train_gpu_compiled.json), so in 5 minutes it would at best "
            "break even.",
        train=_GPU_MULTI30K),
    "reproduce-cpu": Recipe(
        what="make reproduce on a CPU: a narrow model on Multi30k for 10 minutes",
        why="N=2, d_model=128, d_ff=512, h=4 (1.95M parameters): on two cores it makes about "
            "five times as many steps per minute as the 7.6M-parameter 'small' preset, which "
            "more than pays for its size in a 10-minute run.  Batches of at most 1024 tokens "
            "and 400 warm-up steps at the paper's rate (the notebook run's settings); dropout "
            "0.1 kept for the longer run.  A time budget, not a step count: the job must end "
            "in 10 minutes on any machine.",
        train=dict(preset="small", model=dict(_NARROW), max_tokens=1024, tokens_per_step=None,
                   warmup=400, lr_scale=1.0, time_budget=10.0, log_every=10, eval_every=500,
                   save_every=None, keep_last=2)),
    "notebook-cpu": Recipe(
        what="the run notebooks 06 and 07 train and evaluate on a CPU",
        why="The narrow model of reproduce-cpu for 900 steps (a fixed step count makes the "
            "numbers the same on every machine; a 5-minute time budget stops it early on a slow "
            "or busy one), batches of at most 1024 tokens, a 400-step warm-up and no dropout: "
            "a run this short sees the data about once, so there is nothing to over-fit and "
            "dropout only slows learning.  These settings came out best of a few tried on "
            "Multi30k at equal steps (3 vs 2 layers, dropout 0.1 vs 0, batches of 2048 vs "
            "1024 tokens, warm-up 200 vs 400).",
        train=dict(preset="small", model=dict(_NARROW, dropout=0.0), max_tokens=1024,
                   tokens_per_step=None, warmup=400, lr_scale=1.0, max_steps=900,
                   time_budget=5.0, log_every=5, eval_every=100, save_every=50, keep_last=5)),
    "notebook-gpu": Recipe(
        what="the run notebooks 06 and 07 train and evaluate on a GPU",
        why="The settings of reproduce-gpu, 5 minutes of training included, so that the "
            "notebooks show what make reproduce records for their direction (English -> "
            "German: `reproduce --src en --tgt de`).",
        train=_GPU_MULTI30K),
}
