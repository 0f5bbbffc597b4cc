"""Benchmark one training step: this package's Transformer vs ``torch.nn.Transformer``.

Both models get the same configuration, batch, loss (label-smoothed cross-entropy, padding
ignored, per-token mean), optimizer (Adam 0.9/0.98/1e-9) and precision.  ``nn.Transformer``
is wrapped with what it lacks: a shared embedding scaled by sqrt(d_model), sinusoidal
positions, embedding dropout and the tied output projection, so both do the same work
(``nn.Transformer`` adds one final LayerNorm per stack: 4 * d_model parameters).

    python bench/bench_train.py                         # CPU: "small" preset, ~2000 tokens
    python bench/bench_train.py --out results/bench/train_cpu.json
    python bench/bench_train.py --device cuda           # + base model at the paper's batch
                                                        #   (25000 tokens), bf16, MFU
    python bench/bench_train.py --device cuda --compile --profile build/profile.txt
                                                        # + where a step's time goes: the
                                                        #   operators and kernels by self time

A step's time is the median over ``--steps`` timed steps after ``--warmup-steps``; the two
models alternate so that a machine's changing load affects both alike.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import platform
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from transformer import Transformer, TransformerConfig
from transformer.engine.runtime import git_commit, no_cudnn_attention
from transformer.model.positional import sinusoidal_table

PEAK_BF16 = {"H100 PCIe": 756e12, "H100": 989e12, "H200": 989e12, "A100": 312e12,
             "L40S": 362e12, "L4": 121e12}  # dense bf16 tensor-core FLOP/s, vendor sheets


class TorchTransformer(nn.Module):
    """``nn.Transformer`` with the paper's embeddings and tied output projection."""

    def __init__(self, c: TransformerConfig):
        super().__init__()
        self.c = c
        self.embed = nn.Embedding(c.src_vocab_size, c.d_model, padding_idx=c.pad_id)
        self.register_buffer("pe", sinusoidal_table(c.max_len, c.d_model), persistent=False)
        self.dropout = nn.Dropout(c.dropout)
        self.core = nn.Transformer(c.d_model, c.n_heads, c.n_layers, c.n_layers, c.d_ff,
                                   c.dropout, batch_first=True, norm_first=c.norm_first)

    def embed_tokens(self, x):
        return self.dropout(self.embed(x) * math.sqrt(self.c.d_model) + self.pe[: x.size(1)])

    def forward(self, src, tgt_in):
        pad = src == self.c.pad_id  # True = ignore
        causal = nn.Transformer.generate_square_subsequent_mask(tgt_in.size(1), src.device)
        y = self.core(self.embed_tokens(src), self.embed_tokens(tgt_in), tgt_mask=causal,
                      src_key_padding_mask=pad, memory_key_padding_mask=pad, tgt_is_causal=True)
        return F.linear(y, self.embed.weight)


def make_batch(c: TransformerConfig, tokens: int, seq_len: int, device, seed: int = 0):
    """Random sentence pairs, lengths in [seq_len/2, seq_len], padded: B * seq_len ~ tokens."""
    g = torch.Generator().manual_seed(seed)
    b = max(1, tokens // seq_len)
    lengths = torch.randint(seq_len // 2, seq_len + 1, (2, b), generator=g)
    ids = torch.randint(4, c.tgt_vocab_size, (3, b, seq_len), generator=g)
    pos = torch.arange(seq_len)
    src = torch.where(pos < lengths[0, :, None], ids[0], c.pad_id)
    src[torch.arange(b), lengths[0] - 1] = c.eos_id
    tgt = torch.where(pos < lengths[1, :, None], ids[1], c.pad_id)
    tgt_in = torch.cat([torch.full((b, 1), c.bos_id), tgt[:, :-1]], 1)
    tgt_in = torch.where(pos <= lengths[1, :, None] - 1, tgt_in, c.pad_id)
    return src.to(device), tgt_in.to(device), tgt.to(device)


def train_flops(c: TransformerConfig, b: int, s: int, t: int) -> float:
    """Matmul FLOPs of one forward + backward (3x forward), attention counted in full."""
    hk, hv, d = c.n_heads * c.d_k, c.n_heads * c.d_v, c.d_model
    enc = 2 * b * s * (d * (2 * hk + hv) + hv * d + 2 * d * c.d_ff) + 2 * b * s * s * (hk + hv)
    dec_self = 2 * b * t * (d * (2 * hk + hv) + hv * d) + 2 * b * t * t * (hk + hv)
    cross = 2 * b * t * (d * hk + hv * d) + 2 * b * s * d * (hk + hv) + 2 * b * t * s * (hk + hv)
    ffn = 4 * b * t * d * c.d_ff
    out = 2 * b * t * d * c.tgt_vocab_size
    return 3.0 * (c.n_layers * (enc + dec_self + cross + ffn) + out)


def peak_flops(device) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((v for k, v in PEAK_BF16.items() if k in name), None)


def profile_step(step, device, path: str, steps: int = 3, rows: int = 40) -> list[dict]:
    """Profile ``steps`` calls of ``step``; write the operators and kernels by self time (device
    time on a GPU, host time on a CPU) to ``path`` and return the top ``rows`` per step."""
    from torch.profiler import ProfilerActivity, profile

    cuda = device.type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    key = "self_device_time_total" if cuda else "self_cpu_time_total"
    with profile(activities=activities) as prof:
        for _ in range(steps):
            step()
        if cuda:
            torch.cuda.synchronize()
    events = prof.key_averages()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(f"{steps} training steps of this package's model, by {key}\n\n"
                          + events.table(sort_by=key, row_limit=rows) + "\n")
    total = sum(getattr(e, key) for e in events) or 1.0
    top = sorted(events, key=lambda e: getattr(e, key), reverse=True)[:rows]
    return [{"name": e.key, "calls_per_step": e.count / steps,
             "ms_per_step": round(getattr(e, key) / 1e3 / steps, 3),
             "share": round(getattr(e, key) / total, 4)} for e in top]


def measure(c: TransformerConfig, tokens: int, seq_len: int, device, steps: int, warmup: int,
            bf16: bool, compile_: bool = False, profile: str | None = None) -> dict:
    """Alternate training steps of both models on one batch; median seconds per step.  With
    ``profile`` (a file), then profile this package's step (:func:`profile_step`)."""
    torch.manual_seed(0)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    models = {"ours": Transformer(c), "torch": TorchTransformer(c)}
    src, tgt_in, tgt_out = make_batch(c, tokens, seq_len, device)
    n_tgt = int((tgt_out != c.pad_id).sum())
    amp = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if bf16 else contextlib.nullcontext
    runners, times = {}, {k: [] for k in models}
    for name, model in models.items():
        model.to(device).train()
        opt = torch.optim.Adam(model.parameters(), lr=1e-4, betas=(0.9, 0.98), eps=1e-9,
                               fused=device.type == "cuda" or None)
        fwd = torch.compile(model) if compile_ else model

        def step(fwd=fwd, opt=opt):
            with amp():
                logits = fwd(src, tgt_in)
                loss = F.cross_entropy(logits.flatten(0, 1), tgt_out.flatten(),
                                       ignore_index=c.pad_id, label_smoothing=c.label_smoothing,
                                       reduction="sum") / n_tgt
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            return loss

        runners[name] = step
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for i in range(warmup + steps):
        for name, step in runners.items():
            sync()
            t0 = time.perf_counter()
            step()
            sync()
            if i >= warmup:
                times[name].append(time.perf_counter() - t0)
    b, s = src.shape
    flops = train_flops(c, b, s, tgt_in.size(1))
    result = {"config": c.to_dict(), "batch": {"rows": b, "src_len": s, "tgt_len": tgt_in.size(1),
                                               "tgt_tokens": n_tgt,
                                               "src_tokens": int((src != c.pad_id).sum())},
              "precision": "bf16 autocast" if bf16 else "float32", "compile": compile_,
              "steps": steps, "model_flops_per_step": flops}
    peak = peak_flops(device)
    for name, model in models.items():
        sec = statistics.median(times[name])
        result[name] = {"parameters": sum(p.numel() for p in model.parameters()),
                        "ms_per_step": round(1e3 * sec, 2),
                        "tgt_tokens_per_s": round(n_tgt / sec, 1),
                        "model_tflops": round(flops / sec / 1e12, 3),
                        "mfu": round(flops / sec / peak, 4) if peak else None}
    result["speedup_ours_vs_torch"] = round(
        result["torch"]["ms_per_step"] / result["ours"]["ms_per_step"], 3)
    if device.type == "cuda":  # both models' parameters, optimizer states and one step
        result["peak_memory_gib"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
    if profile:
        result["ours"]["profile"] = {"file": Path(profile).name,
                                     "top": profile_step(runners["ours"], device, profile)}
    return result


def report(title: str, r: dict) -> None:
    print(f"\n{title}: {r['batch']['rows']} x {r['batch']['src_len']} tokens "
          f"({r['batch']['tgt_tokens']} target), {r['precision']}")
    for name in ("ours", "torch"):
        m = r[name]
        mfu = f", MFU {100 * m['mfu']:.1f}%" if m["mfu"] else ""
        print(f"  {name:5s}: {m['ms_per_step']:9.2f} ms/step  {m['tgt_tokens_per_s']:11,.0f} "
              f"target tokens/s  {m['model_tflops']:.3f} TFLOP/s{mfu}  "
              f"({m['parameters'] / 1e6:.2f}M parameters)")
    print(f"  nn.Transformer time / ours: {r['speedup_ours_vs_torch']:.2f}x")
    if "peak_memory_gib" in r:
        print(f"  peak GPU memory of both models' steps: {r['peak_memory_gib']:.2f} GiB")
    if "profile" in r["ours"]:
        print("  where a step of ours spends its time (all operators and kernels in "
              f"{r['ours']['profile']['file']}):")
        for row in r["ours"]["profile"]["top"][:10]:
            print(f"    {row['ms_per_step']:8.3f} ms  {100 * row['share']:5.1f}%  "
                  f"{row['calls_per_step']:6.1f} calls  {row['name'][:70]}")


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--preset", default="small", help="CPU model preset (default: small)")
    p.add_argument("--tokens", type=int, default=2000, help="CPU batch tokens per side")
    p.add_argument("--seq-len", type=int, default=25, help="longest sentence in the batch")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup-steps", type=int, default=3)
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--gpu-tokens", type=int, default=25000, help="paper batch (Section 5.1)")
    p.add_argument("--compile", action="store_true", help="torch.compile both (CUDA run)")
    p.add_argument("--cudnn-attention", action="store_true",
                   help="leave cuDNN's attention on (PyTorch's default; the package turns it off)")
    p.add_argument("--out", default=None, help="write the results here as JSON")
    p.add_argument("--profile", default=None, metavar="FILE",
                   help="also profile this package's step (on CUDA when it runs, else on the "
                        "CPU) and write its operators and kernels by self time to FILE")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    cuda = torch.cuda.is_available() and args.device in ("auto", "cuda")
    if cuda and not args.cudnn_attention:
        no_cudnn_attention()  # as training does (runtime.pick_device)
    results = {"provenance": {
        "torch": str(torch.__version__), "python": platform.python_version(),
        "cpu": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
        "gpu": torch.cuda.get_device_name(0) if cuda else None, "git_commit": git_commit(),
        "cuda": torch.version.cuda if cuda else None,
        "cudnn_attention": torch.backends.cuda.cudnn_sdp_enabled() if cuda else None,
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}}
    print(json.dumps(results["provenance"]))
    c = TransformerConfig.from_preset(args.preset)
    results["cpu"] = measure(c, args.tokens, args.seq_len, torch.device("cpu"), args.steps,
                             args.warmup_steps, bf16=False, profile=None if cuda else args.profile)
    report(f"CPU, preset {args.preset}", results["cpu"])
    if cuda:
        torch.backends.cuda.matmul.allow_tf32 = True
        results["cuda"] = measure(TransformerConfig.from_preset("base"), args.gpu_tokens,
                                  args.seq_len, torch.device("cuda"), max(args.steps, 20),
                                  max(args.warmup_steps, 5), bf16=True, compile_=args.compile,
                                  profile=args.profile)
        report("CUDA, base model, paper batch", results["cuda"])
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
        print(f"wrote {args.out}")
    return results


if __name__ == "__main__":
    main()
