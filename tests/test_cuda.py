"""The CUDA paths, on a GPU: bf16 autocast and fused Adam in training, ``--compile`` (inductor),
decoding on the device, compiled greedy decoding with and without CUDA graphs, greedy decoding
recorded whole as a CUDA graph.

Each is checked against float32 eager on the same device (or on the CPU), on small shapes.
Without a CUDA device these tests are skipped (CI has none), all but the last, which needs no
GPU; the CPU stand-ins of the same code paths run everywhere (test_decoder_cache.py,
test_train.py, test_model.py).  Run them on a GPU with ``pytest tests/test_cuda.py``
(bench/gpu_run.sh does, recording the log)."""

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from helpers import V, eos_prone_model, small_config, tiny_train_config

from transformer import Transformer, greedy_decode
from transformer.data import load_dataset
from transformer.engine.beam_search import BeamSearch, beam_search, beam_search_batches
from transformer.engine.runtime import in_dtype, pick_device
from transformer.engine.train import train

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

@needs_cuda
def test_decoding_on_cuda_matches_the_cpu():
    model, src = eos_prone_model(1)
    cpu_greedy = greedy_decode(model, src, max_len=15)
    cpu_beams = beam_search(model, src, beam_size=4, max_len=15)
    gpu, gsrc = model.cuda(), src.cuda()
    assert torch.equal(greedy_decode(gpu, gsrc, max_len=15).cpu(), cpu_greedy)
    assert torch.equal(greedy_decode(gpu, gsrc, max_len=15, use_cache=False).cpu(), cpu_greedy)
    assert beam_search(gpu, gsrc, beam_size=4, max_len=15) == cpu_beams


@needs_cuda
def test_shared_tails_on_cuda_find_what_each_batch_finds_on_the_cpu(monkeypatch):
    """``beam_search_batches`` on the device, where merging pads boolean source masks: the
    answers of ``beam_search`` per batch on the CPU.  On the CPU these two batches merge once
    (seed 9, tail 0.5), and so they must here."""
    model, src = eos_prone_model(9)
    batches = [([0, 1, 2, 3], src[:4]), ([4, 5], src[4:, :6])]
    cpu = {}
    for keys, s in batches:
        cpu.update(zip(keys, beam_search(model, s, beam_size=4)))
    merges, merge = [], BeamSearch.merge
    monkeypatch.setattr(BeamSearch, "merge", classmethod(
        lambda cls, searches: merges.append(len(searches)) or merge(searches)))
    gpu = model.cuda()
    assert beam_search_batches(gpu, [(k, s.cuda()) for k, s in batches], tail=0.5) == cpu
    assert merges == [2]


@needs_cuda
def test_bfloat16_decoding_on_cuda_agrees_with_float32():
    model, src = eos_prone_model(2)
    model, src = model.cuda(), src.cuda()
    fp32 = greedy_decode(model, src, max_len=15)
    bf16 = greedy_decode(in_dtype(model, "bfloat16"), src, max_len=15)
    assert (bf16[:, :5] == fp32[:, :5]).float().mean() > 0.9  # early tokens: same almost always


@needs_cuda
@pytest.mark.parametrize("mode", [True, "reduce-overhead"])
def test_compiled_greedy_on_cuda_matches_eager(mode):
    """inductor (Triton kernels), and with ``reduce-overhead`` every step replayed as a CUDA
    graph: the same tokens as eager, one compilation for two calls, no graph skipped."""
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    model, src = eos_prone_model(9)
    model, src = model.cuda(), src.cuda()
    expected = greedy_decode(model, src, max_len=12)
    for _ in range(2):
        assert torch.equal(greedy_decode(model, src, max_len=12, compile=mode), expected)
    assert counters["stats"]["unique_graphs"] == 1
    assert not counters["inductor"]["cudagraph_skips"]


@needs_cuda
@pytest.mark.parametrize("compile", [False, True])
@pytest.mark.parametrize("sync_every", [1, 8])
def test_cuda_graph_greedy_matches_eager_with_one_replay_per_token(compile, sync_every,
                                                                     monkeypatch):
    """``cuda_graph=True``: step 1 eager, then one recorded step replayed once per token (with
    the eager decoder's kernels, or inductor's), and the same tokens as the dynamic path."""
    torch._dynamo.reset()
    model, src = eos_prone_model(9)
    model, src = model.cuda(), src.cuda()
    expected = greedy_decode(model, src, max_len=12)
    replays = []
    real_replay = torch.cuda.CUDAGraph.replay
    monkeypatch.setattr(torch.cuda.CUDAGraph, "replay",
                        lambda g: replays.append(1) or real_replay(g))
    for _ in range(2):
        out = greedy_decode(model, src, max_len=12, compile=compile, cuda_graph=True,
                            sync_every=sync_every)
        assert torch.equal(out, expected)
    assert expected.size(1) == 12  # two rows never end: 12 steps, the first one eager
    assert len(replays) == 2 * 11


@needs_cuda
def test_translate_with_cuda_graph_matches_eager():
    """``translate --beam 1 --cuda-graph``: a graph recorded per batch, the same translations."""
    from transformer.engine.evaluate import translate

    class Ids:  # "7 12 5" <-> token ids, with the ids of helpers' models
        vocab_size, pad_id, bos_id, eos_id, unk_id = V, 0, 1, 2, 3

        def encode(self, text):
            return [int(w) for w in text.split()]

        def decode(self, ids):
            return " ".join(map(str, ids))  # every id, EOS and beyond included

    model, _ = eos_prone_model(1)
    g = torch.Generator().manual_seed(0)
    sentences = [" ".join(map(str, torch.randint(4, V, (n,), generator=g).tolist()))
                 for n in (3, 9, 5, 12, 7, 7, 2)]
    gpu = model.cuda()
    eager = translate(gpu, Ids(), sentences, beam_size=1, max_tokens=24)
    graphed = translate(gpu, Ids(), sentences, beam_size=1, max_tokens=24, cuda_graph=True)
    assert graphed == eager and len(set(eager)) > 1


@needs_cuda
def test_bf16_autocast_training_step_on_cuda_is_close_to_float32():
    """One step as the Trainer takes it on a GPU (bf16 autocast, SDPA's fused kernels, fused
    Adam): the loss within bf16's precision of float32's, the update close to float32's."""
    torch.manual_seed(0)
    c = small_config(V, dropout=0.0)
    models = [Transformer(c).cuda() for _ in range(2)]
    models[1].load_state_dict(models[0].state_dict())
    src = torch.randint(4, V, (16, 20), device="cuda")
    tgt = torch.randint(4, V, (16, 21), device="cuda")
    losses, params = [], []
    for model, bf16 in zip(models, (False, True)):
        opt = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=bf16):
            logits = model(src, tgt[:, :-1])
            loss = F.cross_entropy(logits.flatten(0, 1).float(), tgt[:, 1:].flatten())
        loss.backward()
        opt.step()
        losses.append(loss.item())
        params.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
    assert losses[1] == pytest.approx(losses[0], rel=2e-2)
    assert torch.isfinite(params[1]).all()
    assert (params[1] - params[0]).abs().max() < 5e-3  # Adam moves each weight by <= lr


def train_losses(run_dir) -> list[float]:
    lines = (Path(run_dir) / "log.jsonl").read_text().splitlines()
    return [r["loss"] for r in map(json.loads, lines) if r["kind"] == "train"]


@needs_cuda
def test_compiled_training_on_cuda_matches_eager(tmp_path):
    """``train --compile`` on a GPU (inductor, bf16 autocast, fused Adam): the copy task's loss
    falls as it does eagerly, and the checkpoint (no ``_orig_mod.`` prefixes) loads on the CPU."""
    data = load_dataset("copy", n_train=300, n_val=40, n_test=40)
    runs = {c: train(tiny_train_config(tmp_path / f"compile-{c}", max_steps=40, device="cuda",
                                       compile=c), data) for c in (False, True)}
    assert runs[True]["steps"] == runs[False]["steps"] == 40
    assert runs[True]["device"].startswith("cuda")
    state = torch.load(runs[True]["checkpoint"], map_location="cpu", weights_only=False)["model"]
    assert not any(k.startswith("_orig_mod.") for k in state)
    losses = {c: train_losses(r["run_dir"]) for c, r in runs.items()}
    assert all(v[-1] < 0.8 * v[0] for v in losses.values()), losses
    assert losses[True][-1] == pytest.approx(losses[False][-1], rel=0.1), losses


def test_picking_a_cuda_device_turns_cudnn_attention_off(monkeypatch):
    """Runs without a GPU too (naming a device allocates nothing): cuDNN's attention made
    training with real batches 4.8 times slower on an H200 (runtime.no_cudnn_attention)."""
    calls = []
    monkeypatch.setattr(torch.backends.cuda, "enable_cudnn_sdp", calls.append)
    assert pick_device("cpu") == torch.device("cpu") and calls == []
    assert pick_device("cuda", local_rank=1) == torch.device("cuda", 1) and calls == [False]
