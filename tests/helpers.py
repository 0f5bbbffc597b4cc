"""Builders shared by several test files (and by the processes that tests spawn)."""

from __future__ import annotations

from transformer.engine.train import TrainConfig


def tiny_train_config(run_dir, **fields) -> TrainConfig:
    """A TrainConfig for the tiny preset on the copy task: seconds on one CPU thread, no
    progress bar, no validation and no timed saves unless ``fields`` ask for them."""
    base = dict(dataset="copy", preset="tiny", model={"dropout": 0.0}, max_tokens=1024,
                tokens_per_step=None, warmup=50, lr_scale=0.25, log_every=10, eval_every=None,
                save_every_minutes=None, run_dir=str(run_dir), progress=False)
    return TrainConfig(**{**base, **fields})
