"""Incremental decoding (transformer/model/cache.py): one position per step gives the numbers of
the full decoder over the whole prefix, whatever the cache does to save work (buffers written
in place and grown, one fused Q/K/V product, encoder keys shared by a sentence's beams, rows
reordered and dropped, static shapes, a compiled step)."""

import pytest
import torch
from helpers import BOS, EOS, PAD, eos_prone_model, model_and_batch, prefixes, stepwise

from transformer import greedy_decode
from transformer.engine.runtime import in_dtype


@pytest.mark.parametrize("overrides", [
    {}, {"positional": "learned"}, {"norm_first": True}, {"d_k": 4, "d_v": 12},
    {"share_embeddings": False}])
@pytest.mark.parametrize("static", [False, True])
def test_steps_equal_the_full_decoder(overrides, static):
    model, src = model_and_batch(**overrides)
    tgt = prefixes(src.size(0), 7)
    with torch.no_grad():
        full = model(src, tgt)
        memory, mask = model.encode(src), model.padding_mask(src)
        # capacity 3 < 7 positions: a dynamic cache grows twice; a static one is sized to fit
        cache = model.new_cache(memory, mask, capacity=7 if static else 3, static=static)
        steps = stepwise(model, cache, tgt)
    torch.testing.assert_close(steps, full, atol=1e-5, rtol=1e-5)
    assert cache.length == 7 and cache.capacity >= 7


def test_static_cache_does_not_grow():
    model, src = model_and_batch()
    with torch.no_grad():
        cache = model.new_cache(model.encode(src), model.padding_mask(src), capacity=2,
                                static=True)
        stepwise(model, cache, prefixes(3, 2))
        with pytest.raises(ValueError, match="full"):
            model.decode_step(torch.full((3,), BOS), cache)


def test_beams_share_the_encoder_keys_of_their_sentence():
    """K decoder rows per sentence attend to one copy of its encoder keys/values and get what the
    full decoder gives with the memory repeated K times."""
    model, src = model_and_batch()
    K = 4
    tgt = prefixes(src.size(0) * K, 5)  # every beam its own prefix
    with torch.no_grad():
        memory, mask = model.encode(src), model.padding_mask(src)
        full = model.decode(tgt, memory.repeat_interleave(K, 0), mask.repeat_interleave(K, 0))
        cache = model.new_cache(memory, mask, rows=src.size(0) * K, capacity=5)
        steps = stepwise(model, cache, tgt)
    assert cache.layers[0].cross_k.size(0) == src.size(0)  # one copy per sentence, not per beam
    torch.testing.assert_close(steps, full, atol=1e-5, rtol=1e-5)


def test_reorder_and_drop_rows_as_beam_search_does():
    """After 4 steps rows are reordered (with repeats, as beams are) and sentence 1 leaves; the
    next steps equal the full decoder on the reordered prefixes."""
    model, src = model_and_batch()
    K = 2
    tgt = prefixes(src.size(0) * K, 7)
    with torch.no_grad():
        memory, mask = model.encode(src), model.padding_mask(src)
        cache = model.new_cache(memory, mask, rows=src.size(0) * K, capacity=7)
        stepwise(model, cache, tgt[:, :4])
        sentences = torch.tensor([0, 2])
        origin = torch.tensor([1, 1, 5, 4])  # rows of sentences 0 and 2, beams 1,1 and 1,0
        cache.reorder(origin, sentences=sentences)
        later = stepwise(model, cache, tgt[origin, 4:])
        full = model.decode(tgt[origin], memory[sentences].repeat_interleave(K, 0),
                            mask[sentences].repeat_interleave(K, 0))
    torch.testing.assert_close(later, full[:, 4:], atol=1e-5, rtol=1e-5)


def test_reorders_pack_the_rows_tight_in_two_buffers_and_steps_stay_exact():
    """Beam search reorders every step: each dynamic reorder copies the kept rows into the spare
    buffer packed tight, (rows, h, length + 1, d), so the next step's attention reads each row's
    and head's keys as one block, and the two buffers take turns (no allocation per step).
    Every step's logits stay the full decoder's on the reordered prefixes."""
    model, src = model_and_batch()
    K = 2
    tgt = prefixes(src.size(0) * K, 8)
    with torch.no_grad():
        memory, mask = model.encode(src), model.padding_mask(src)
        repeated = memory.repeat_interleave(K, 0), mask.repeat_interleave(K, 0)
        # capacity 9: the last reorder (after 8 positions) leaves room for a 9th
        cache = model.new_cache(memory, mask, rows=tgt.size(0), capacity=9)
        prefix, buffers = tgt[:, :0], set()
        for t in range(tgt.size(1)):
            prefix = torch.cat([prefix, tgt[:, t, None]], 1)
            torch.testing.assert_close(model.decode_step(tgt[:, t], cache),
                                       model.decode(prefix, *repeated)[:, -1],
                                       atol=1e-5, rtol=1e-5)
            beam = torch.randint(0, K, (tgt.size(0),), generator=torch.Generator().manual_seed(t))
            origin = torch.arange(tgt.size(0)) // K * K + beam  # a beam of the same sentence
            cache.reorder(origin)
            prefix = prefix[origin]
            kv = cache.layers[0]
            assert kv.k.shape[:3] == (tgt.size(0), model.config.n_heads, t + 2)
            assert kv.k.is_contiguous() and kv.v.is_contiguous()
            assert kv.k.data_ptr() == kv.live[0].data_ptr()
            buffers.add(kv.live[0].data_ptr())
    assert len(buffers) == 2


def test_cross_attention_mask_is_added_on_a_cpu_and_boolean_where_it_must_be():
    """On a CPU the dynamic steps add the source padding as a float mask (0 / -inf) made once
    per batch; a sentence with no key to see (all padding) keeps the boolean mask (zeros, not
    NaN), and so does a static cache."""
    model, src = model_and_batch()
    with torch.no_grad():
        memory, mask = model.encode(src), model.padding_mask(src)
        cache = model.new_cache(memory, mask)
        assert cache.cross_mask.dtype == torch.float32
        assert torch.equal(cache.cross_mask == 0, mask)
        assert cache.cross_mask[0, 0, 0, -1] == float("-inf")  # row 0 is padded
        assert model.new_cache(memory, mask, static=True).cross_mask is mask
        empty = mask.clone()
        empty[1] = False
        assert model.new_cache(memory, empty).cross_mask is empty
        step = model.decode_step(torch.full((src.size(0),), BOS),
                                 model.new_cache(memory, empty))
    assert step.isfinite().all()


def test_projections_stay_the_papers_three_matrices():
    model, _ = model_and_batch()
    keys = model.state_dict().keys()
    for name in ("w_q", "w_k", "w_v", "w_o"):
        assert f"decoder.0.self_attn.{name}.weight" in keys
    assert not any("qkv" in k for k in keys)  # the fused matrix lives only in a cache


def test_greedy_drops_finished_rows_and_matches_static_and_uncached():
    model, src = eos_prone_model(1)
    cached = greedy_decode(model, src, max_len=15)
    ended = (cached == EOS).any(1)
    assert ended.any() and not ended.all(), "want a mix of early ends and full-length rows"
    assert torch.equal(cached, greedy_decode(model, src, max_len=15, use_cache=False))
    assert torch.equal(cached, greedy_decode(model, src, max_len=15, compile="eager"))


@pytest.mark.parametrize("sync_every", [1, 3, 8, 100])
def test_static_greedy_checks_for_the_end_every_few_steps_with_the_same_output(
        sync_every, monkeypatch):
    """The static path (compiled or CUDA-graphed steps) asks the device whether every row has
    ended only every ``sync_every`` steps: it may run a few steps past the end, in which ended
    rows write padding, and trims them, so the output is the dynamic path's, shape included."""
    model, src = eos_prone_model(1)
    src[:, -3:] = EOS  # shorter sources: every row ends (at step 14 of at most 40)
    expected = greedy_decode(model, src, max_len=40)
    assert (expected == EOS).any(1).all() and expected.size(1) < 40
    checks = []
    real_all = torch.Tensor.all
    monkeypatch.setattr(torch.Tensor, "all", lambda t, *a: checks.append(1) or real_all(t, *a))
    out = greedy_decode(model, src, max_len=40, compile="eager", sync_every=sync_every)
    assert torch.equal(out, expected)
    first_check_after_the_end = -(-expected.size(1) // sync_every) * sync_every
    if first_check_after_the_end <= 40:
        assert len(checks) == first_check_after_the_end // sync_every
    else:  # no check came after the end: every step ran
        assert len(checks) == 40 // sync_every


def test_cuda_graph_option_refuses_what_it_cannot_do():
    model, src = eos_prone_model(1)
    with pytest.raises(ValueError, match="needs a CUDA device; the model is on cpu"):
        greedy_decode(model, src, max_len=5, cuda_graph=True)
    with pytest.raises(ValueError, match="sync_every must be >= 1"):
        greedy_decode(model, src, max_len=5, compile="eager", sync_every=0)


@pytest.mark.parametrize("dtype", [None, "bfloat16"])
def test_compiled_step_is_one_graph_for_every_step(dtype):
    """torch.compile(fullgraph=True) of the static step through AOT autograd's functionalised
    graph (what inductor and CUDA graphs build on): the same tokens, and one compilation
    serves every step of both calls (a recompilation per step would make it useless); also for
    a model cast to bfloat16, as GPUs would run it."""
    from torch._dynamo.testing import CompileCounterWithBackend

    torch._dynamo.reset()
    model, src = eos_prone_model(9)
    model = in_dtype(model, dtype)
    expected = greedy_decode(model, src, max_len=12)
    assert (expected == EOS).any(1).sum() == 4  # 4 of 6 rows end early: a static cache keeps them
    counter = CompileCounterWithBackend("aot_eager")
    for _ in range(2):
        assert torch.equal(greedy_decode(model, src, max_len=12, compile=counter), expected)
    assert counter.frame_count == 1


@pytest.mark.parametrize("static", [False, True])
def test_bfloat16_steps_equal_the_bfloat16_full_decoder(static):
    """A model cast to bfloat16 (``runtime.in_dtype``, the ``--dtype bfloat16`` of translate and
    evaluate) keeps its cache in bfloat16, and its steps still give the full decoder's logits
    (to bfloat16's precision: 8 bits of mantissa)."""
    model, src = model_and_batch()
    bf16 = in_dtype(model, "bfloat16")
    tgt = prefixes(src.size(0), 6)
    with torch.no_grad():
        full = bf16(src, tgt)
        cache = bf16.new_cache(bf16.encode(src), bf16.padding_mask(src), capacity=6,
                               static=static)
        steps = stepwise(bf16, cache, tgt)
        reference = model(src, tgt)  # float32
    assert steps.dtype == full.dtype == cache.layers[0].k.dtype == torch.bfloat16
    torch.testing.assert_close(steps, full, atol=0.05, rtol=0.02)
    assert (steps.float() - reference).abs().max() < 0.1  # near float32's too


def test_reduce_overhead_mode_marks_the_cache_for_cuda_graphs(monkeypatch):
    """``compile="reduce-overhead"`` (CUDA graphs on a GPU): inductor in that mode, every tensor
    a step reads kept at a fixed address (else a graph would copy the cache in and out at every
    step, or be skipped for writing into its inputs), and a new graph step begun before each
    step.  On the CPU the graph is run by aot_eager instead of inductor; tests/test_cuda.py
    runs the real thing on a GPU."""
    real_compile, calls, steps = torch.compile, [], []
    monkeypatch.setattr(torch, "compile", lambda fn, **kw: calls.append(kw) or real_compile(
        fn, **{**kw, "backend": "aot_eager", "mode": None}))
    monkeypatch.setattr(torch.compiler, "cudagraph_mark_step_begin", lambda: steps.append(1))
    torch._dynamo.reset()
    model, src = eos_prone_model(9)
    expected = greedy_decode(model, src, max_len=10)
    with torch.no_grad():
        cache = model.new_cache(model.encode(src), model.padding_mask(src), capacity=10,
                                compile="reduce-overhead")
    assert [(c["backend"], c["mode"]) for c in calls] == [("inductor", "reduce-overhead")]
    assert cache.static and cache.cudagraphs
    marked = {id(t) for t in cache.tensors() if getattr(t, "_dynamo_static_input_type", None)}
    assert len(marked) == 6 * len(model.decoder) + 2  # k, v, cross k/v, W_qkv, b_qkv; mask, pos
    assert torch.equal(greedy_decode(model, src, max_len=10, compile="reduce-overhead"), expected)
    assert len(steps) == expected.size(1)  # one graph step per decoded position
    assert calls[-1]["mode"] == "reduce-overhead"
    steps.clear()
    assert torch.equal(greedy_decode(model, src, max_len=10, compile=True), expected)
    assert calls[-1]["mode"] is None and not steps  # plain inductor: no CUDA graphs


def test_a_step_without_projection_is_what_project_maps_to_the_logits():
    """``decode_step(project=False)`` (beam search projects rows a piece at a time) returns the
    decoder's output; ``project`` of it gives the logits of ``decode_step``.  Not for a
    compiled step."""
    model, src = model_and_batch()
    tgt = prefixes(src.size(0), 4)
    with torch.no_grad():
        memory, mask = model.encode(src), model.padding_mask(src)
        logits = stepwise(model, model.new_cache(memory, mask), tgt)
        cache = model.new_cache(memory, mask)
        hidden = torch.stack([model.decode_step(tgt[:, t], cache, project=False)
                              for t in range(tgt.size(1))], 1)
        assert hidden.shape == (*tgt.shape, model.config.d_model)
        torch.testing.assert_close(model.project(hidden), logits)
        compiled = model.new_cache(memory, mask, compile="aot_eager")
        with pytest.raises(ValueError, match="without compile"):
            model.decode_step(tgt[:, 0], compiled, project=False)


@pytest.mark.parametrize("all_padding", [False, True])
def test_merged_caches_step_as_each_did_alone(all_padding):
    """Two caches of different sources (9 and 5 positions) at the same length, merged, step as
    each would alone: the shorter source's encoder keys are padded and masked out.  With a
    sentence that is all padding, one cache keeps a boolean mask and the merge takes that."""
    model, src_a = model_and_batch(seed=0, b=3, s=9)
    src_b = model_and_batch(seed=1, b=2, s=5)[1]
    if all_padding:
        src_b[1] = PAD  # no key to see: this cache keeps the boolean mask
    K, tgt = 2, prefixes(10, 6)
    with torch.no_grad():
        caches = []
        for src in (src_a, src_b):
            memory, mask = model.encode(src), model.padding_mask(src)
            caches.append(model.new_cache(memory, mask, rows=src.size(0) * K, capacity=8))
        rows_a = src_a.size(0) * K
        parts = (slice(0, rows_a), slice(rows_a, None))
        for cache, rows in zip(caches, parts):
            stepwise(model, cache, tgt[rows, :4])
        assert (caches[1].cross_mask.dtype == torch.bool) == all_padding
        merged = type(caches[0]).merge(caches)
        assert merged.length == 4 and merged.layers[0].cross_k.shape[:3] == (5, 4, 9)
        later = stepwise(model, merged, tgt[:, 4:])
        for cache, rows in zip(caches, parts):  # each cache alone, from the same 4 positions
            torch.testing.assert_close(later[rows], stepwise(model, cache, tgt[rows, 4:]),
                                       atol=1e-5, rtol=1e-5)
        merged.reorder(torch.tensor([1, 1, 8, 9]), sentences=torch.tensor([0, 4]))
        assert merged.layers[0].cross_k.size(0) == 2
        model.decode_step(tgt[:4, 0], merged)  # the merged cache goes on like any other


def test_only_dynamic_caches_at_one_length_merge():
    model, src = model_and_batch()
    with torch.no_grad():
        memory, mask = model.encode(src), model.padding_mask(src)
        a, b = (model.new_cache(memory, mask, capacity=4) for _ in range(2))
        stepwise(model, a, prefixes(3, 2))
        stepwise(model, b, prefixes(3, 1))
        with pytest.raises(ValueError, match="same length"):
            type(a).merge([a, b])
        static = model.new_cache(memory, mask, capacity=4, static=True)
        stepwise(model, static, prefixes(3, 2))
        with pytest.raises(ValueError, match="dynamic"):
            type(a).merge([a, static])
