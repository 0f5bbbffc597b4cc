"""Benchmark the training engine: ``train`` as the command line runs it, in one or more checkouts.

The model's step alone is ``bench_train.py``; this one times the whole loop around it (batches,
accumulation, logging, the clock and signal checks) on real Multi30k data, so that two versions
of the engine can be compared on the same machine, in interleaved rounds:

    python bench/bench_engine.py                                  # this checkout
    python bench/bench_engine.py --out results/bench/engine_cpu.json
    python bench/bench_engine.py --checkouts /tmp/old . --labels before after --rounds 3

Each round runs ``python -m transformer train --recipe notebook-cpu --max-steps N`` (no
validation, no checkpoint but the last) in every checkout with the same data cache, and reads
``summary.json``: training seconds (``wall_time``, start-up excluded) and target tokens per
second.  The first steps of each run include one-time costs, the same in every checkout.
Both checkouts must train identically: the logged losses are compared step by step.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from transformer.apps.profiles import cpu_name  # noqa: E402
from transformer.engine.runtime import git_commit  # noqa: E402


def run_once(checkout: Path, steps: int, run_dir: Path, data_dir: str | None) -> dict:
    """One training run in ``checkout``: its summary and its logged losses."""
    env = {**os.environ, "PYTHONPATH": str(checkout)}
    if data_dir:
        env["TRANSFORMER_DATA_DIR"] = data_dir
    cmd = [sys.executable, "-m", "transformer", "train", "--recipe", "notebook-cpu",
           "--max-steps", str(steps), "--time-budget", "60", "--eval-every", "0",
           "--save-every", "0", "--log-every", "50", "--run-dir", str(run_dir), "--overwrite",
           "--no-progress"]
    done = subprocess.run(cmd, cwd=checkout, env=env, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"{checkout}: train failed:\n{done.stderr[-2000:]}")
    summary = json.loads((run_dir / "summary.json").read_text())
    losses = [(r["step"], r["loss"]) for r in map(json.loads, (run_dir / "log.jsonl")
                                                  .read_text().splitlines())
              if r["kind"] == "train"]
    return {"wall_time": summary["wall_time"], "tokens_per_s": summary["tokens_per_s"],
            "steps": summary["steps"], "losses": losses}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--checkouts", nargs="+", default=[str(ROOT)],
                   help="checkouts of this project to compare (default: this one)")
    p.add_argument("--steps", type=int, default=300, help="training steps per run")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds")
    p.add_argument("--data-dir", default=None, help="the data cache all checkouts share "
                   "(default: $TRANSFORMER_DATA_DIR, else each checkout's data/cache)")
    p.add_argument("--labels", nargs="+", default=None,
                   help="names for the checkouts in the output (default: their commits)")
    p.add_argument("--out", default=None, help="write the results here as JSON")
    args = p.parse_args(argv)
    checkouts = [Path(c).resolve() for c in args.checkouts]
    labels = args.labels or [git_commit(c) or c.name for c in checkouts]
    if len(labels) != len(checkouts):
        raise SystemExit("--labels needs one name per checkout")
    data_dir = args.data_dir or os.environ.get("TRANSFORMER_DATA_DIR")
    runs = {str(c): [] for c in checkouts}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            for i, c in enumerate(checkouts):
                result = run_once(c, args.steps, Path(tmp) / f"r{r}c{i}", data_dir)
                runs[str(c)].append(result)
                print(f"round {r + 1}, {labels[i]}: {result['wall_time']:.2f} s, "
                      f"{result['tokens_per_s']:,.0f} target tokens/s", flush=True)
    results = {"provenance": {"python": platform.python_version(),
                              "torch": importlib.metadata.version("torch"), "cpu": cpu_name(),
                              "cores": os.cpu_count(), "steps": args.steps,
                              "rounds": args.rounds, "recipe": "notebook-cpu",
                              "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                              "command": f"python bench/bench_engine.py --checkouts "
                                         f"{' '.join(labels)} --steps {args.steps} --rounds "
                                         f"{args.rounds}"},
               "checkouts": {}}
    first_losses = None
    for c, label in zip(checkouts, labels):
        rs = runs[str(c)]
        losses = rs[0]["losses"]
        first_losses = losses if first_losses is None else first_losses
        results["checkouts"][label] = {
            "commit": git_commit(c), "wall_time_s": [x["wall_time"] for x in rs],
            "median_wall_time_s": statistics.median(x["wall_time"] for x in rs),
            "median_tokens_per_s": statistics.median(x["tokens_per_s"] for x in rs),
            "same_losses_as_first": losses == first_losses}
    for c, r in results["checkouts"].items():
        print(f"{c}: median {r['median_wall_time_s']:.2f} s, "
              f"{r['median_tokens_per_s']:,.0f} target tokens/s, commit {r['commit']}, "
              f"losses identical to the first checkout's: {r['same_losses_as_first']}")
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
        print(f"wrote {args.out}")
    return results


if __name__ == "__main__":
    main()
