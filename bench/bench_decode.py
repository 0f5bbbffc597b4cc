"""Benchmark (not a test): decoding speed on the CPU, with and without the decoder cache.

    python bench/bench_decode.py                       # "small" preset, batch 32, 60 steps
    python bench/bench_decode.py --out                 # also write results/bench_decode_cpu.json

Greedy decoding with the cache feeds one new position per step; without it the decoder reruns
the whole prefix every step (``greedy_decode(use_cache=False)``), so its cost grows with the
square of the output length.  Beam search (Section 6.1, beam 4) is timed with the cache.
Variants run in interleaved rounds; each reports its fastest round (CPUs shared with other
work make the slower rounds noise).  On a busy machine, ``--threads 1`` is far steadier.

Every run is forced to the full number of steps: the weights are random and the EOS row of the
shared embedding / output matrix is zeroed, so EOS always has logit 0 while some of the other
thousands of logits are positive; EOS is never the best token and never enters a beam.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from transformer import Transformer, TransformerConfig, greedy_decode  # noqa: E402
from transformer.engine.beam_search import beam_search  # noqa: E402


def provenance() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True,
                                text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = None  # not a checkout, or no commit yet
    return {"torch": torch.__version__, "python": platform.python_version(), "cpu": cpu,
            "threads": torch.get_num_threads(), "commit": commit,
            "load_avg_1min": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
            "date": time.strftime("%Y-%m-%d %H:%M:%S %z")}


def timed(runs: dict, repeats: int) -> tuple[dict, dict]:
    """Wall times of each of ``runs`` (name -> function), ``repeats`` rounds interleaved so that
    a change in machine load hits every variant alike, after one warm-up call each.
    Returns ({name: [seconds, ...]}, {name: last result})."""
    results = {name: fn() for name, fn in runs.items()}
    times = {name: [] for name in runs}
    for _ in range(repeats):
        for name, fn in runs.items():
            start = time.perf_counter()
            results[name] = fn()
            times[name].append(time.perf_counter() - start)
    return times, results


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="small")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--src-len", type=int, default=30)
    p.add_argument("--steps", type=int, default=60, help="output tokens per sentence")
    p.add_argument("--beam", type=int, default=4)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--out", nargs="?", const=str(ROOT / "results" / "bench_decode_cpu.json"),
                   default=None, help="write JSON here (default path if no value)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    torch.manual_seed(0)
    config = TransformerConfig.from_preset(args.preset, dropout=0.0)
    model = Transformer(config).eval()
    with torch.no_grad():  # EOS logit = 0 < max of the others: every output runs full length
        model.tgt_embed.weight[config.eos_id].zero_()
        if model.generator is not None:
            model.generator.weight[config.eos_id].zero_()
    src = torch.randint(4, config.src_vocab_size, (args.batch, args.src_len))
    src[:, -1] = config.eos_id
    info = {"preset": args.preset, "params": model.num_parameters(), "batch": args.batch,
            "src_len": args.src_len, "steps": args.steps, "beam": args.beam,
            "repeats": args.repeats, **provenance()}
    print(" ".join(f"{k}={v}" for k, v in info.items()))

    with torch.inference_mode():
        times, out = timed({
            "greedy_cached": lambda: greedy_decode(model, src, max_len=args.steps),
            "greedy_uncached": lambda: greedy_decode(model, src, max_len=args.steps,
                                                     use_cache=False),
            "beam": lambda: beam_search(model, src, beam_size=args.beam, max_len=args.steps),
        }, args.repeats)
    out_c, out_f = out["greedy_cached"], out["greedy_uncached"]
    assert out_c.shape == (args.batch, args.steps) and not (out_c == config.eos_id).any()
    assert all(len(h) == args.steps for h in out["beam"])
    agree = (out_c == out_f).float().mean().item()
    # the fastest of the rounds: the least disturbed by other work on a shared machine
    t_cached, t_full, t_beam = (min(times[k]) for k in ("greedy_cached", "greedy_uncached", "beam"))

    tokens = args.batch * args.steps
    results = {
        **info,
        "greedy_cached_s": t_cached, "greedy_uncached_s": t_full,
        "cache_speedup": t_full / t_cached, "cached_uncached_token_agreement": agree,
        "greedy_cached_tokens_per_s": tokens / t_cached,
        "greedy_uncached_tokens_per_s": tokens / t_full,
        "beam_s": t_beam, "beam_sentences_per_s": args.batch / t_beam,
        "beam_tokens_per_s": tokens / t_beam, "beam_over_greedy": t_beam / t_cached,
        "timing": "min over rounds", "all_times_s": times,
        "median_cache_speedup": statistics.median(times["greedy_uncached"])
        / statistics.median(times["greedy_cached"]),
    }
    print(f"greedy, cache     : {t_cached:7.3f} s  {tokens / t_cached:8.0f} tokens/s")
    print(f"greedy, no cache  : {t_full:7.3f} s  {tokens / t_full:8.0f} tokens/s")
    print(f"cache speed-up    : {t_full / t_cached:7.2f}x  (token agreement {agree:.4f})")
    print(f"beam {args.beam}, cache     : {t_beam:7.3f} s  {args.batch / t_beam:8.1f} sentences/s "
          f"{tokens / t_beam:8.0f} output tokens/s  ({t_beam / t_cached:.1f}x greedy)")
    if args.out:
        path = Path(args.out)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(results, indent=2) + "\n")
        print(f"wrote {path}")
    return results


if __name__ == "__main__":
    main()
