"""Benchmark (not a test): the training loop with this package's label-smoothed cross-entropy
against the same loop with ``F.cross_entropy(label_smoothing=...)``.

    python bench/bench_loss.py                   # notebook-cpu recipe, 150 steps, 1 thread
    python bench/bench_loss.py --out results/bench/loss_cpu.json

``transformer.engine.loss.label_smoothed_cross_entropy`` computes the same numbers with its
gradient written out (tests/test_paper_details.py holds it to F.cross_entropy).  Its gain on a
CPU comes from the (N, V) tensors it does not make, which a benchmark of the loss alone on one
reused tensor does not show; so this one times whole training runs: the ``notebook-cpu`` recipe
(Multi30k de->en, vocabulary 8000, batches of 1024 tokens) without validation or checkpoints,
the two losses alternating, each run's wall time reported.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from bench_decode import provenance  # noqa: E402

from transformer.apps.recipes import RECIPES  # noqa: E402
from transformer.engine import loss  # noqa: E402
from transformer.engine.rundir import read_log  # noqa: E402
from transformer.engine.train import train  # noqa: E402


def torch_loss(logits, target, eps, ignore_index):
    return F.cross_entropy(logits, target, ignore_index=ignore_index, label_smoothing=eps,
                           reduction="sum")


def timed_run(fn, steps: int, run_dir: Path) -> tuple[float, float]:
    """(seconds, final training loss) of ``steps`` steps with ``fn`` as the loss."""
    ours, loss.label_smoothed_cross_entropy = loss.label_smoothed_cross_entropy, fn
    try:
        cfg = RECIPES["notebook-cpu"].config(dataset="multi30k", src="de", tgt="en",
                                             run_dir=str(run_dir), overwrite=True,
                                             progress=False)
        cfg.max_steps, cfg.eval_every, cfg.save_every, cfg.time_budget = steps, None, None, None
        start = time.perf_counter()
        train(cfg)
        return time.perf_counter() - start, read_log(run_dir, "train")[-1]["loss"]
    finally:
        loss.label_smoothed_cross_entropy = ours


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=150)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--threads", type=int, default=1, help="torch threads (the notebooks: 1)")
    p.add_argument("--out", default=None, help="write the results here as JSON")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    variants = {"F.cross_entropy": torch_loss,
                "label_smoothed_cross_entropy": loss.label_smoothed_cross_entropy}
    times = {k: [] for k in variants}
    losses = {}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.repeats):
            for name, fn in variants.items():
                sec, final = timed_run(fn, args.steps, Path(tmp) / "run")
                times[name].append(sec)
                losses[name] = final
                print(f"{name:30s} {args.steps} steps in {sec:6.1f} s", flush=True)
    best = {k: min(v) for k, v in times.items()}
    result = {"provenance": provenance(), "recipe": "notebook-cpu", "steps": args.steps,
              "seconds": best, "all_times_s": times, "final_train_loss": losses,
              "speedup": best["F.cross_entropy"] / best["label_smoothed_cross_entropy"]}
    print(f"training loop with the package's loss: {result['speedup']:.2f}x the speed of "
          "F.cross_entropy's (fastest runs)")
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
