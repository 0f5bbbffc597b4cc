"""Benchmark (not a test): decoding speed on the CPU (or a GPU), side by side in one run.

    python bench/bench_decode.py                  # every part; trains the small model first
    python bench/bench_decode.py --only greedy    # part 1 alone (also: beam, linear)
    python bench/bench_decode.py --checkpoint runs/x/checkpoints/step_00000500.pt
    python bench/bench_decode.py --out            # also write results/bench/decode_cpu.json
    python bench/bench_decode.py --device cuda --out   # results/bench/decode_cuda.json

1. Greedy decoding on fixed shapes: the ``small`` preset (vocab 8000, d_model 256,
   4 heads, d_ff 1024, 3+3 layers) with random weights, a batch of 32 sources of 30 tokens,
   30 output tokens each (the EOS logit is zeroed so every row runs the full length):
   - ``torch.nn.Transformer`` holding the same weights, decoding as its API allows: the memory
     is encoded once, the decoder reruns the whole prefix at every step, and only the last
     position is projected to the vocabulary;
   - the baseline decoder (``baseline_decoding.py``, frozen: the yardstick);
   - this package's ``greedy_decode``, in float32 and in bfloat16 (a copy of the model cast by
     ``runtime.in_dtype``: what ``translate --dtype bfloat16`` runs); on a CPU also in float32
     with PyTorch's own linear layers (``TRANSFORMER_ONEDNN=0``; by default they run through
     oneDNN with packed weights, ``transformer/engine/onednn.py``), to show what that gives;
   - on a GPU also the static-shape paths (``GPU_GREEDY``): ``compile=True`` (inductor),
     ``compile="reduce-overhead"`` (inductor, each decoder call replayed as a CUDA graph),
     ``cuda_graph=True`` (one whole step recorded as a CUDA graph, with the eager decoder's
     kernels or, with ``compile=True``, inductor's).  The first call, which compiles or
     records, is reported apart (``first_call_s``); a variant whose first call fails is left
     out and its error recorded (``failed``).
2. Beam 4 (alpha 0.6), then greedy decoding, over Multi30k's test set (1000 sentences,
   de->en) with a ``small`` model trained by this script (``--train-steps``, default 400) or
   given by ``--checkpoint``: the baseline's decoders against this package's, in float32 and
   in bfloat16 (on a CPU also without oneDNN, as in part 1), batched as ``translate`` batches
   (sorted by length, 4000 source tokens per batch), with the sacreBLEU of each.  This
   package's beam search runs as ``translate`` runs it, the batches' tails shared
   (``beam_search_batches``), and also each batch alone (``beam_search``), to show what
   sharing gives.
3. On a CPU, each of the small preset's linear layers alone, for 32 and 600 rows: PyTorch's
   ``F.linear`` (MKL's SGEMM in PyTorch's CPU builds) against oneDNN with the weight packed
   once, the pair that ``transformer/engine/onednn.py`` chooses between: the fastest of
   ``--repeats`` rounds of ``--linear-calls`` calls.

bfloat16 is fast only on CPUs with native bf16 instructions (AVX512-BF16 or AMX: the provenance
records which the CPU has), and changes some outputs: the float32 rows are the ones that compute
the baseline's numbers.

Each part runs its variants in interleaved rounds and reports each one's fastest round (other
work on a shared CPU makes the slower rounds noise); all rounds are in the JSON, with each
call's minor page faults and system CPU time (``os_per_round``) and, for part 2, each round's
ratio to the baseline (on a shared machine it moves by several percent from round to round;
the faults and system time show how much of each call the operating system took).
Run as a script, it raises oneDNN's primitive cache (one compiled kernel per shape, 1024 by
default) to 8192 unless ``ONEDNN_PRIMITIVE_CACHE_CAPACITY`` is set: bfloat16 beam search alone
builds about 1100 over Multi30k's test set, so with the default the variants would evict each
other's kernels between rounds, and each round would time their rebuilding (about 0.5 ms each)
rather than the decoder.  The first calls (``first_call_s``) still include building them.  On a
GPU each call is timed from a synchronised start to a synchronised end, and float32 is true
float32 (TF32 off, PyTorch's default).  Outputs are compared as well as timed: a faster decoder
that says something else would not count.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import sys
import time
from pathlib import Path

try:
    import resource  # Unix only
except ImportError:
    resource = None
from unittest import mock

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench"), str(ROOT / "tests")]

import baseline_decoding as baseline  # noqa: E402
from helpers import copy_into_reference  # noqa: E402  (the converter test_model.py checks)

from transformer import Transformer, TransformerConfig, greedy_decode  # noqa: E402
from transformer.apps.profiles import cpu_bf16_flags, cpu_name  # noqa: E402
from transformer.engine import onednn  # noqa: E402
from transformer.engine.beam_search import beam_search, beam_search_batches  # noqa: E402
from transformer.engine.bleu import sacrebleu_score  # noqa: E402
from transformer.engine.evaluate import padded_batches  # noqa: E402
from transformer.engine.greedy import never_pad_or_bos  # noqa: E402
from transformer.engine.runtime import git_commit, in_dtype, no_cudnn_attention  # noqa: E402


def provenance(device: torch.device | None = None) -> dict:
    device = device or torch.device("cpu")
    cuda = device.type == "cuda"
    return {"torch": torch.__version__, "python": platform.python_version(), "cpu": cpu_name(),
            "device": str(device), "gpu": torch.cuda.get_device_name(device) if cuda else None,
            "cuda": torch.version.cuda if cuda else None,
            "tf32": torch.backends.cuda.matmul.allow_tf32 if cuda else None,
            "cores": os.cpu_count(), "threads": torch.get_num_threads(), "commit": git_commit(),
            "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "cpu_bf16_flags": cpu_bf16_flags(), "onednn": onednn.available(),
            "TRANSFORMER_ONEDNN": os.environ.get("TRANSFORMER_ONEDNN"),
            "ONEDNN_PRIMITIVE_CACHE_CAPACITY": os.environ.get("ONEDNN_PRIMITIVE_CACHE_CAPACITY"),
            "load_avg_1min": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
            "date": time.strftime("%Y-%m-%d %H:%M:%S %z")}


def os_usage() -> tuple[int, float]:
    """This process's minor page faults and system CPU seconds so far (0s where unknown)."""
    if resource is None:
        return 0, 0.0
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_minflt, usage.ru_stime


def timed(runs: dict, repeats: int, device: torch.device,
          errors: dict | None = None) -> tuple[dict, dict, dict, dict]:
    """Wall times of each of ``runs`` (name -> function), ``repeats`` rounds interleaved so that
    a change in machine load hits every variant alike, after one warm-up call each; on a GPU
    each from a synchronised start to a synchronised end.  With ``errors`` (a dict), a variant
    whose warm-up call raises is left out and its error recorded there (a GPU run is too
    scarce to lose to one failing variant); without, the error propagates.
    Returns ({name: [seconds, ...]}, {name: last result}, {name: warm-up call's seconds},
    {name: {"minor_page_faults": [...], "system_s": [...]}}), the last per round: what the
    operating system spent on each call (mostly mapping fresh memory into the process), a cost
    that changes with the machine's state and shifts the ratios between variants."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    def call(fn):
        sync()
        start = time.perf_counter()
        out = fn()
        sync()
        return out, time.perf_counter() - start

    first, results = {}, {}
    for name, fn in list(runs.items()):
        try:
            results[name], first[name] = call(fn)
        except Exception as error:
            if errors is None:
                raise
            errors[name] = f"{type(error).__name__}: {error}"
            print(f"   {name}: left out, its first call failed: {errors[name]}")
            del runs[name]
    times = {name: [] for name in runs}
    os_cost = {name: {"minor_page_faults": [], "system_s": []} for name in runs}
    for _ in range(repeats):
        for name, fn in runs.items():
            faults, system = os_usage()
            results[name], seconds = call(fn)
            times[name].append(seconds)
            os_cost[name]["minor_page_faults"].append(os_usage()[0] - faults)
            os_cost[name]["system_s"].append(os_usage()[1] - system)
    return times, results, first, os_cost


# ---- part 1: greedy decoding against torch.nn.Transformer ----------------------------------

WITHOUT_ONEDNN = "this package, PyTorch's linear layers (TRANSFORMER_ONEDNN=0)"
ALONE = "this package, each batch searched alone (beam_search per batch)"


def without_onednn(fn):
    """``fn`` run with the package's linear layers left to PyTorch (onednn.packed_linears off)."""
    def run():
        with mock.patch.dict(os.environ, {"TRANSFORMER_ONEDNN": "0"}):
            return fn()
    return run


GPU_GREEDY = {  # label -> greedy_decode's options for a GPU (static steps, few host syncs)
    "inductor": {"compile": True},
    "inductor, CUDA graph per decoder call": {"compile": "reduce-overhead"},
    "CUDA graph per step": {"cuda_graph": True},
    "inductor, CUDA graph per step": {"compile": True, "cuda_graph": True},
}

@torch.no_grad()
def torch_greedy(model: Transformer, ref: torch.nn.Transformer, src, steps: int):
    """Greedy decoding with ``nn.Transformer`` (our weights): the encoder once, then the decoder
    over the whole prefix at every step (its API has no cache); logits of the last position."""
    c = model.config
    pad = src == c.pad_id
    memory = ref.encoder(model.embed(src, model.src_embed, model.src_pos),
                         src_key_padding_mask=pad)
    ys = torch.full((src.size(0), 1), c.bos_id, dtype=torch.long, device=src.device)
    for _ in range(steps):
        causal = torch.nn.Transformer.generate_square_subsequent_mask(ys.size(1), src.device)
        y = ref.decoder(model.embed(ys, model.tgt_embed, model.tgt_pos), memory, tgt_mask=causal,
                        tgt_is_causal=True, memory_key_padding_mask=pad)
        logits = never_pad_or_bos(model.project(y[:, -1]), c, inplace=True)
        ys = torch.cat([ys, logits.argmax(-1, keepdim=True)], dim=1)
    return ys[:, 1:]


def greedy_part(args) -> dict:
    torch.manual_seed(0)
    config = TransformerConfig.from_preset("small", dropout=0.0)
    model = Transformer(config).eval()
    with torch.no_grad():  # EOS logit = 0 < max of the others: every output runs full length
        model.tgt_embed.weight[config.eos_id].zero_()
    ref = copy_into_reference(model).eval().to(args.device)
    model = model.to(args.device)
    bf16 = in_dtype(model, "bfloat16")
    src = torch.randint(4, config.src_vocab_size, (args.batch, args.src_len))
    src[:, -1] = config.eos_id
    src = src.to(args.device)
    n = args.steps
    runs = {
        "torch.nn.Transformer": lambda: torch_greedy(model, ref, src, n),
        "baseline (before #14)": lambda: baseline.greedy_decode(model, src, n),
        "this package": lambda: greedy_decode(model, src, max_len=n),
        "this package, bfloat16": lambda: greedy_decode(bf16, src, max_len=n),
    }
    if args.device.type == "cpu":
        runs[WITHOUT_ONEDNN] = without_onednn(lambda: greedy_decode(model, src, max_len=n))
    if args.device.type == "cuda":  # compiling gains nothing on a CPU (README, Speed)
        for label, options in GPU_GREEDY.items():
            for prefix, m in (("", model), ("bfloat16, ", bf16)):
                runs[f"this package, {prefix}{label}"] = lambda m=m, o=options: greedy_decode(
                    m, src, max_len=n, **o)
    errors = {}
    with torch.inference_mode():
        times, out, first, os_cost = timed(runs, args.repeats, args.device, errors)
    ours = out["this package"]
    assert ours.shape == (args.batch, n) and not (ours == config.eos_id).any()
    best = {k: min(v) for k, v in times.items()}
    agree = {k: (v == ours).float().mean().item() for k, v in out.items()}
    tokens = args.batch * n
    print(f"\n1. greedy: small preset ({model.num_parameters() / 1e6:.2f}M parameters), batch "
          f"{args.batch}, source {args.src_len} tokens, {n} output tokens per row")
    width = max(map(len, best))
    for name, sec in best.items():
        print(f"   {name:{width}s} {sec:7.3f} s  {tokens / sec:8.0f} tokens/s   "
              f"{best['torch.nn.Transformer'] / sec:5.2f}x as fast as torch.nn.Transformer   "
              f"token agreement with this package (float32) {agree[name]:.4f}")
    return {"batch": args.batch, "src_len": args.src_len, "steps": n,
            "params": model.num_parameters(), "seconds": best, "all_times_s": times,
            "first_call_s": first, "os_per_round": os_cost, "failed": errors,
            "agreement_with_this_package": agree,
            "speedup_vs_torch": best["torch.nn.Transformer"] / best["this package"],
            "speedup_vs_torch_bf16": best["torch.nn.Transformer"]
            / best["this package, bfloat16"],
            "speedup_vs_baseline": best["baseline (before #14)"] / best["this package"]}


# ---- part 2: beam search over Multi30k's test set ------------------------------------------

def trained_model(args):
    """``(model, dataset, checkpoint path)``: ``--checkpoint``'s, or a small model trained now."""
    from transformer.engine.evaluate import checkpoint_and_data
    from transformer.engine.train import TrainConfig, train

    path = args.checkpoint
    if path is None:
        run_dir = ROOT / "runs" / "bench-decode-small"
        cfg = TrainConfig(dataset="multi30k", src="de", tgt="en", preset="small",
                          max_tokens=2048, tokens_per_step=2048, warmup=400,
                          max_steps=args.train_steps, eval_every=None, save_every=None,
                          keep_last=1, run_dir=str(run_dir),
                          overwrite=True, progress=False, device=str(args.device))
        print(f"\n2. training the small preset for {args.train_steps} steps (--checkpoint skips "
              "this)")
        path = train(cfg)["checkpoint"]
    model, dataset = checkpoint_and_data(path, device=args.device)
    return model.eval(), dataset, Path(path)


def batches(model, tokenizer, sentences, max_tokens=4000):
    """``(indices, src)`` for ``sentences``, batched as ``translate`` does, and their number."""
    c = model.config
    ids = [tokenizer.encode(s) + [c.eos_id] for s in sentences]
    device = next(model.parameters()).device
    return padded_batches(ids, max_tokens, c.pad_id, device), len(ids)


def batched(search, model, tokenizer, sentences, max_tokens=4000):
    """Token ids per sentence from ``search(model, src)``, batched as ``translate`` does."""
    pairs, n = batches(model, tokenizer, sentences, max_tokens)
    out = [None] * n
    for batch, src in pairs:
        for i, hyp in zip(batch, search(model, src)):
            out[i] = hyp
    return out


def shared_tails(model, tokenizer, sentences, beam_size, max_tokens=4000):
    """Token ids per sentence from beam search as ``translate`` runs it: the same batches,
    their tails shared (``beam_search_batches``)."""
    pairs, n = batches(model, tokenizer, sentences, max_tokens)
    best = beam_search_batches(model, pairs, beam_size=beam_size)
    return [best[i] for i in range(n)]


def beam_part(args) -> dict:
    model, dataset, path = trained_model(args)
    bf16 = in_dtype(model, "bfloat16")
    split = dataset.resolve("test")
    sources, references = (list(t)[: args.sentences] for t in dataset.texts(split)[:2])
    tok, K = dataset.tokenizer, args.beam
    def greedy(decode):  # token ids up to EOS, as translate's beam_size=1 path keeps them
        return lambda m, s: [strip(row, m.config.eos_id) for row in
                             decode(m, s, s.size(1) + 50).tolist()]

    runs = {  # name -> (baseline, this package)
        f"beam {K}": (lambda m, s: baseline.beam_search(m, s, beam_size=K),
                      lambda m, s: beam_search(m, s, beam_size=K)),
        "greedy": (greedy(baseline.greedy_decode),
                   greedy(lambda m, s, n: greedy_decode(m, s, max_len=n))),
    }
    print(f"\n2. {dataset.name} {split}, {len(sources)} sentences, small model {path.name}, "
          "batched as translate does")
    result = {"dataset": dataset.name, "split": split, "sentences": len(sources),
              "checkpoint": path.name, "trained_by_this_run": args.checkpoint is None}
    base, ours, ours16 = "baseline (before #14)", "this package", "this package, bfloat16"
    for label, (old, new) in runs.items():
        if label == "greedy":
            def ours_on(m, new=new):
                return lambda: batched(new, m, tok, sources)
        else:  # as translate runs it; the batches searched alone too, to show what sharing gives
            def ours_on(m):
                return lambda: shared_tails(m, tok, sources, K)
        variants = {base: lambda old=old: batched(old, model, tok, sources),
                    ours: ours_on(model), ours16: ours_on(bf16)}
        if args.device.type == "cpu":
            variants[WITHOUT_ONEDNN] = without_onednn(ours_on(model))
        if label != "greedy":
            variants[ALONE] = lambda new=new: batched(new, model, tok, sources)
        if label == "greedy" and args.device.type == "cuda":  # a graph recorded per batch
            graphed = greedy(lambda m, s, n: greedy_decode(m, s, max_len=n, cuda_graph=True))
            variants["this package, CUDA graph per step"] = lambda graphed=graphed: batched(
                graphed, model, tok, sources)
        errors = {}
        with torch.inference_mode():
            times, out, first, os_cost = timed(variants, args.repeats, args.device, errors)
        best = {k: min(v) for k, v in times.items()}
        same = {k: sum(a == b for a, b in zip(out[base], v)) for k, v in out.items()}
        bleu = {k: sacrebleu_score([tok.decode(h) for h in v], references)[0]
                for k, v in out.items()}
        print(f"   {label}:")
        width = max(map(len, best))
        for name, sec in best.items():
            print(f"   {name:{width}s} {sec:7.3f} s  {len(sources) / sec:7.1f} sentences/s   "
                  f"{best[base] / sec:5.2f}x as fast as the baseline   outputs identical to "
                  f"the baseline's: {same[name]:4d} of {len(sources)}   sacreBLEU "
                  f"{bleu[name]:.2f}   page faults per call "
                  f"{min(os_cost[name]['minor_page_faults']):,}")
        result[label.replace(" ", "")] = {
            "seconds": best, "all_times_s": times, "first_call_s": first, "failed": errors,
            "os_per_round": os_cost,
            # each round's ratio (the two calls run one after the other): how much it moves
            "speedup_vs_baseline_per_round": [b / o for b, o in zip(times[base], times[ours])],
            "identical_outputs": same[ours],
            "identical_to_baseline": same, "sacrebleu": bleu,
            "output_tokens": sum(len(h) for h in out[ours]),
            "speedup_vs_baseline": best[base] / best[ours],
            "speedup_vs_baseline_bf16": best[base] / best[ours16]}
    return result


def strip(row: list[int], eos: int) -> list[int]:
    return row[: row.index(eos)] if eos in row else row


# ---- part 3 (CPU): one linear layer, PyTorch's (MKL) against oneDNN's with a packed weight --

LINEAR_SHAPES = {"W^Q W^K W^V stacked": (256, 768), "W^O, cross W^Q": (256, 256),
                 "FFN W_1": (256, 1024), "FFN W_2": (1024, 256), "output projection": (256, 8000)}


def linear_part(args) -> dict:
    """Microseconds per call and GFLOP/s of the small preset's linear layers, for 32 rows (greedy
    above) and 600 (a beam-search step), both ways: what ``onednn.packed_linears`` is for."""
    def per_call(fn, calls=args.linear_calls):
        fn()
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        return (time.perf_counter() - start) / calls

    out = {}
    print("\n3. one linear layer, float32: PyTorch's F.linear (MKL) against oneDNN, packed weight")
    with torch.inference_mode():
        for rows in (32, 600):
            for name, (d_in, d_out) in LINEAR_SHAPES.items():
                x, layer = torch.randn(rows, d_in), torch.nn.Linear(d_in, d_out)
                ways = {"pytorch": layer.forward, "onednn": onednn.packed_linear(layer)}
                times = {k: min(per_call(functools.partial(f, x))
                                for _ in range(args.repeats)) for k, f in ways.items()}
                flops = 2 * rows * d_in * d_out
                out[f"{rows} rows, {name} {d_in}x{d_out}"] = {
                    k: {"us": t * 1e6, "gflops": flops / t / 1e9} for k, t in times.items()}
                print(f"   {rows:4d} rows, {name:20s} {d_in:5d}x{d_out:<5d} PyTorch "
                      f"{times['pytorch'] * 1e6:7.0f} us {flops / times['pytorch'] / 1e9:5.0f} "
                      f"GFLOP/s   oneDNN {times['onednn'] * 1e6:7.0f} us "
                      f"{flops / times['onednn'] / 1e9:5.0f} GFLOP/s")
    return out


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--src-len", type=int, default=30)
    p.add_argument("--steps", type=int, default=30, help="greedy output tokens per sentence")
    p.add_argument("--beam", type=int, default=4)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=2, help="torch threads (CI's machine: 2)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    p.add_argument("--checkpoint", default=None, help="a trained small model for part 2")
    p.add_argument("--train-steps", type=int, default=400)
    p.add_argument("--sentences", type=int, default=None, help="only the first N of part 2")
    p.add_argument("--only", choices=["greedy", "beam", "linear"], default=None,
                   help="run only this part (default: all three)")
    p.add_argument("--linear-calls", type=int, default=100,
                   help="calls per timing round of part 3 (the linear layers)")
    p.add_argument("--out", nargs="?", const="", default=None,
                   help="write JSON here (no value: results/bench/decode_<cpu|cuda>.json)")
    args = p.parse_args(argv)
    args.device = torch.device(args.device)
    if args.out == "":
        args.out = str(ROOT / "results" / "bench" / f"decode_{args.device.type}.json")
    torch.set_num_threads(args.threads)
    if args.device.type == "cuda":
        no_cudnn_attention()  # as translate and evaluate run (runtime.pick_device)
    results = {"provenance": provenance(args.device), "timing": "fastest of the rounds",
               "repeats": args.repeats}
    print(" ".join(f"{k}={v}" for k, v in results["provenance"].items()))
    if args.only in (None, "greedy"):
        results["greedy"] = greedy_part(args)
    if args.only in (None, "beam"):
        results["beam"] = beam_part(args)
    if args.only in (None, "linear") and args.device.type == "cpu" and onednn.available():
        results["linear"] = linear_part(args)
    if args.out:
        path = Path(args.out)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(results, indent=2, default=float) + "\n")
        print(f"wrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")
    return results


if __name__ == "__main__":
    # read by oneDNN when it builds its first kernel, which nothing has done yet (see above)
    os.environ.setdefault("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "8192")
    main()
