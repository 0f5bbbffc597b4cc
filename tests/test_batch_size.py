"""Tokens per step (Section 5.1): about 25000 target tokens per optimizer step whatever the
number of ranks; the batch size chosen, what a run achieves, averaging at the end, and
--dry-run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import tiny_train_config

from transformer.data import load_dataset
from transformer.engine import checkpoint as ckpt
from transformer.engine.batch_size import (
    TOLERANCE,
    choose_batch_size,
    corpus_mean_tokens,
    measured_batch_size,
)
from transformer.engine.evaluate import evaluate_loss
from transformer.engine.train import TrainConfig, train
from transformer.model import Transformer, TransformerConfig

ROOT = Path(__file__).resolve().parent.parent


def fill(ratio=0.8, granularity=24):
    """A corpus model: a micro-batch of budget b holds ratio * b target tokens, rounded down
    to whole sentences of ``granularity`` tokens."""
    return lambda budget: max(granularity, (ratio * budget) // granularity * granularity)


@pytest.mark.parametrize("world", [1, 2, 8, 64])
def test_the_batch_holds_25000_target_tokens_on_any_number_of_ranks(world):
    plan = choose_batch_size(25000, world, 8192, fill(), min_tokens=257)
    assert abs(plan.expected - 25000) <= TOLERANCE * 25000, plan
    assert plan.warning() is None
    assert 257 <= plan.max_tokens <= 8192  # within memory, above the longest pair
    assert plan.world_size == world
    # 25000 / (0.8 * 8192) = 3.8 micro-batches on one rank, 1.9 on each of two; from 8 ranks
    # on, one micro-batch each, smaller than the cap
    assert plan.accum == {1: 4, 2: 2, 8: 1, 64: 1}[world]
    if world >= 8:
        assert plan.max_tokens < 8192


def test_a_batch_size_that_cannot_reach_its_target_says_so():
    # 64 ranks, but no micro-batch can be smaller than the longest pair (4000 positions)
    plan = choose_batch_size(25000, 64, 8192, fill(), min_tokens=4000)
    assert plan.off_by > TOLERANCE and "off the 25,000 asked for" in plan.warning()
    # without a target: one micro-batch of max_tokens per step and rank
    fixed = choose_batch_size(None, 2, 1000, fill())
    assert (fixed.accum, fixed.max_tokens, fixed.target) == (1, 1000, None)
    assert fixed.expected == 2 * fill()(1000) and fixed.warning() is None


def test_the_batch_size_on_a_real_corpus(tmp_path):
    data = load_dataset("copy", n_train=4000, n_val=40, n_test=40)
    mean = corpus_mean_tokens(data)
    for world in (1, 2, 8):
        cfg = TrainConfig(dataset="copy", max_tokens=1024, tokens_per_step=3000)
        plan = measured_batch_size(data, cfg.tokens_per_step, world, cfg.max_tokens)
        batches = data.batches("train", plan.max_tokens, shuffle=False)
        measured = sum(b.n_tgt_tokens for b in batches) / len(batches)
        assert mean(plan.max_tokens) == pytest.approx(measured)
        assert abs(world * plan.accum * measured - 3000) <= TOLERANCE * 3000


def test_a_run_reports_the_batch_it_achieved(tmp_path):
    data = load_dataset("copy", n_train=4000, n_val=40, n_test=40)
    summary = train(tiny_train_config(tmp_path / "run", tokens_per_step=2000, max_tokens=1024,
                                      max_steps=6), data)
    assert abs(summary["tokens_per_step"] - 2000) <= TOLERANCE * 2000
    assert summary["planned_tokens_per_step"] == pytest.approx(2000, rel=TOLERANCE)
    assert "target tokens per step" in json.loads(
        (tmp_path / "run" / "config.json").read_text())["batch_size"]


def test_validation_counts_each_batch_once_over_ranks():
    data = load_dataset("copy", n_train=200, n_val=101, n_test=10)
    model = Transformer(TransformerConfig.from_preset(
        "tiny", src_vocab_size=data.tokenizer.vocab_size,
        tgt_vocab_size=data.tokenizer.vocab_size))
    whole = evaluate_loss(model, data, "val", max_tokens=64)
    shares = [evaluate_loss(model, data, "val", max_tokens=64, rank=r, world_size=3)
              for r in range(3)]  # one process: the all-reduce is a no-op, add by hand
    assert sum(s["tokens"] for s in shares) == whole["tokens"]
    assert sum(s["nll"] * s["tokens"] for s in shares) == pytest.approx(
        whole["nll"] * whole["tokens"])


def test_the_last_checkpoints_are_averaged_at_the_end(tmp_path):
    data = load_dataset("copy", n_train=300, n_val=40, n_test=40)
    summary = train(tiny_train_config(tmp_path / "run", max_steps=5, save_every=1, keep_last=3,
                                      average=3), data)
    averaged = summary["averaged"]
    assert averaged["from"] == ["step_00000003.pt", "step_00000004.pt", "step_00000005.pt"]
    paths = [tmp_path / "run" / "checkpoints" / name for name in averaged["from"]]
    weights = ckpt.load_checkpoint(averaged["checkpoint"])["model"]
    name = "decoder.layers.0.feed_forward.w_1.weight"
    name = name if name in weights else next(k for k, v in weights.items()
                                             if v.is_floating_point())
    manual = sum(ckpt.load_checkpoint(p)["model"][name] for p in paths) / 3
    assert torch.allclose(weights[name], manual, atol=1e-6)
    with pytest.raises(ValueError, match="average=5 needs keep_last >= 5"):
        TrainConfig(average=5, keep_last=3)


def run_cli(*args, env=None):
    env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    done = subprocess.run([sys.executable, "-m", "transformer", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_dry_run_shows_the_paper_plan_without_downloading(tmp_path):
    data_dir = tmp_path / "data"
    out = run_cli("train", "--preset", "base", "--dataset", "wmt14", "--src", "en", "--tgt",
                  "de", "--dry-run", "--data-dir", str(data_dir))
    assert "100,000 steps" in out and "63.1M parameters" in out
    assert "warm-up 4000 steps" in out and "every 1400 steps" in out
    assert "the last 5 averaged" in out and "beam 4, alpha 0.6" in out
    assert not data_dir.exists()  # nothing downloaded
    out = run_cli("train", "--preset", "big", "--dataset", "wmt14", "--dry-run",
                  "--world-size", "8", "--tokens-per-second", "200000", "--data-dir",
                  str(data_dir))
    assert "300,000 steps" in out and "8 rank(s) x 1 micro-batch(es)" in out
    assert "the last 20 averaged" in out and "hours" in out


def test_dry_run_probes_the_speed_when_the_corpus_is_at_hand(tmp_path):
    out = run_cli("train", "--dataset", "copy", "--preset", "tiny", "--max-steps", "1000",
                  "--tokens-per-step", "1000", "--max-tokens", "512", "--dry-run",
                  "--device", "cpu")
    assert "measured on the corpus" in out and "probe on cpu" in out and "1,000 steps" in out
