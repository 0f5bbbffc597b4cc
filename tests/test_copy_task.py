"""End to end: a tiny Transformer learns to copy random sequences (the sanity check of
every seq2seq implementation), decoded greedily with the cache."""

import time

import torch
import torch.nn.functional as F

from transformer import Transformer, TransformerConfig, greedy_decode
from transformer.engine.beam_search import beam_search
from transformer.engine.runtime import in_dtype

N_SYMBOLS, MIN_LEN, MAX_LEN = 10, 4, 10  # tokens 4..13; ids 0-3 are pad, bos, eos, unk


def copy_batch(n: int, g: torch.Generator):
    """Random padded sequences: src = seq + EOS, tgt_in = BOS + seq, tgt_out = seq + EOS."""
    lengths = torch.randint(MIN_LEN, MAX_LEN + 1, (n,), generator=g)
    seqs = torch.randint(4, 4 + N_SYMBOLS, (n, MAX_LEN), generator=g)
    seqs[torch.arange(MAX_LEN) >= lengths[:, None]] = 0
    src = torch.zeros(n, MAX_LEN + 1, dtype=torch.long)
    src[:, :MAX_LEN] = seqs
    src[torch.arange(n), lengths] = 2
    tgt_in = torch.cat([torch.ones(n, 1, dtype=torch.long), seqs], dim=1)
    return src, tgt_in, src.clone()


def test_tiny_model_learns_to_copy():
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    config = TransformerConfig(src_vocab_size=4 + N_SYMBOLS, tgt_vocab_size=4 + N_SYMBOLS,
                               n_layers=2, d_model=64, d_ff=128, n_heads=4, dropout=0.0,
                               max_len=32)
    model = Transformer(config)
    # linear warm-up as in the paper (Section 5.3), then a linear decay to zero: in a run this
    # short the paper's slow inverse-square-root tail leaves loss spikes near the end
    opt = torch.optim.Adam(model.parameters(), lr=2e-3, betas=(0.9, 0.98), eps=1e-9)
    warmup, steps = 100, 700
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda i: min((i + 1) / warmup, max(0.0, (steps - i) / (steps - warmup))))
    start = time.perf_counter()
    for _ in range(steps):  # about 25 s on one idle CPU core
        src, tgt_in, tgt_out = copy_batch(64, g)
        loss = F.cross_entropy(model(src, tgt_in).flatten(0, 1), tgt_out.flatten(),
                               ignore_index=config.pad_id)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    src, _, expected = copy_batch(500, torch.Generator().manual_seed(123))
    out = greedy_decode(model, src, max_len=MAX_LEN + 1)
    out = torch.nn.functional.pad(out, (0, expected.size(1) - out.size(1)))
    exact = (out == expected).all(dim=1).float().mean().item()
    elapsed = time.perf_counter() - start
    assert exact >= 0.99, f"exact match {exact:.3f} after {elapsed:.0f} s"

    # decoded in bfloat16 (translate/evaluate --dtype bfloat16), the trained model still copies,
    # greedily and with beam search, and says what it says in float32
    bf16 = in_dtype(model, "bfloat16")
    out16 = greedy_decode(bf16, src, max_len=MAX_LEN + 1)
    same = (out16 == greedy_decode(model, src, max_len=MAX_LEN + 1)).all(dim=1)
    assert same.float().mean() >= 0.99
    beams = beam_search(bf16, src[:100], beam_size=4, max_len=MAX_LEN + 1)
    fp32_beams = beam_search(model, src[:100], beam_size=4, max_len=MAX_LEN + 1)
    assert sum(a == b for a, b in zip(beams, fp32_beams)) >= 98
    copied = [b == e[: e.tolist().index(2)].tolist() for b, e in zip(beams, expected)]
    assert sum(copied) >= 99
