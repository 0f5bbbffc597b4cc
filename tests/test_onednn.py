"""Linear layers through oneDNN for decoding on the CPU (transformer/engine/onednn.py): the same
numbers as PyTorch's own layers to float32 rounding, packed once and again after a change,
nothing left on the model afterwards, and nothing done where it does not apply."""

import pytest
import torch
from helpers import model_and_batch, prefixes, stepwise

from transformer import greedy_decode
from transformer.engine import onednn
from transformer.engine.beam_search import beam_search
from transformer.engine.runtime import in_dtype

pytestmark = pytest.mark.skipif(not onednn.available(), reason="this PyTorch lacks oneDNN")


def step_logits(model, src, tgt):
    memory, mask = model.encode(src), model.padding_mask(src)
    return memory, stepwise(model, model.new_cache(memory, mask, capacity=tgt.size(1)), tgt)


def patched(model) -> list[str]:
    """Names of the modules whose methods the context has replaced (instance attributes)."""
    return [name for name, m in model.named_modules()
            if {"forward", "project_qkv", "project"} & set(vars(m))]


@pytest.mark.parametrize("overrides", [{}, {"share_embeddings": False}, {"d_k": 4, "d_v": 12}])
def test_packed_layers_give_pytorchs_numbers(overrides):
    model, src = model_and_batch(**overrides)
    tgt = prefixes(src.size(0), 6, seed=3)
    model.eval()
    with torch.no_grad():
        plain_memory, plain = step_logits(model, src, tgt)
        with onednn.packed_linears(model):
            assert patched(model)  # it did apply: every linear layer goes through oneDNN
            memory, packed = step_logits(model, src, tgt)
    torch.testing.assert_close(memory, plain_memory, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(packed, plain, atol=1e-5, rtol=1e-5)
    assert patched(model) == []  # the model is as it was


def test_packed_self_attention_stacks_no_weights_per_call(monkeypatch):
    """Under the context the packed stacked matrix stands in for ``fused_qkv``'s copy, which
    the encoder's self-attention then does not make at every call."""
    from transformer.model.attention import MultiHeadAttention
    model, src = model_and_batch()
    model.eval()
    calls = []
    real = MultiHeadAttention.fused_qkv
    monkeypatch.setattr(MultiHeadAttention, "fused_qkv", lambda m: calls.append(1) or real(m))
    with torch.no_grad():
        plain = model.encode(src)
        assert len(calls) == len(model.encoder)  # one stacked copy per layer, made per call
        with onednn.packed_linears(model):
            calls.clear()
            packed = model.encode(src)
            assert calls == []
    torch.testing.assert_close(packed, plain, atol=1e-5, rtol=1e-5)


def test_a_changed_parameter_is_packed_again():
    model, src = model_and_batch()
    model.eval()
    with torch.no_grad():
        with onednn.packed_linears(model):
            before = model.encode(src)
        for p in model.parameters():  # in place, as an optimizer step changes them
            p.mul_(0.5)
        plain = model.encode(src)
        with onednn.packed_linears(model):
            after = model.encode(src)
    torch.testing.assert_close(after, plain, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(after, before)


def test_weights_made_under_inference_mode_are_packed_every_time():
    with torch.inference_mode():  # such tensors keep no version count to notice a change by
        model, src = model_and_batch()
        model.eval()
        with onednn.packed_linears(model):
            first = model.encode(src)
        model.encoder[0].ffn.w_1.weight.zero_()
        with onednn.packed_linears(model):
            second = model.encode(src)
        torch.testing.assert_close(second, model.encode(src), atol=1e-5, rtol=1e-5)
    assert not torch.allclose(first, second)


def test_nothing_is_packed_where_it_does_not_apply(monkeypatch):
    model, _ = model_and_batch()
    with torch.no_grad(), onednn.packed_linears(model.train()):
        assert patched(model) == []  # training mode
    model.eval()
    with torch.enable_grad(), onednn.packed_linears(model):
        assert patched(model) == []  # gradients on
    bf16 = in_dtype(model, "bfloat16")
    with torch.no_grad(), onednn.packed_linears(bf16):
        assert patched(bf16) == []  # another dtype (bfloat16 goes to oneDNN by itself)
    with torch.no_grad(), onednn.packed_linears(model, enabled=False):
        assert patched(model) == []
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        with onednn.packed_linears(model):
            assert patched(model) == []  # CPU autocast: its bfloat16 products, not float32
    monkeypatch.setenv("TRANSFORMER_ONEDNN", "0")
    with torch.no_grad(), onednn.packed_linears(model):
        assert patched(model) == []


def test_decoders_give_the_same_outputs_with_and_without_onednn(monkeypatch):
    model, src = model_and_batch(seed=5, b=6)
    packed = greedy_decode(model, src, max_len=12), beam_search(model, src, beam_size=3)
    monkeypatch.setenv("TRANSFORMER_ONEDNN", "0")
    plain = greedy_decode(model, src, max_len=12), beam_search(model, src, beam_size=3)
    assert torch.equal(packed[0], plain[0]) and packed[1] == plain[1]
    assert patched(model) == []


def test_an_error_inside_leaves_the_model_as_it_was():
    model, src = model_and_batch()
    model.eval()
    with pytest.raises(RuntimeError, match="boom"), torch.no_grad():
        with onednn.packed_linears(model):
            raise RuntimeError("boom")
    assert patched(model) == []


def test_a_pytorch_without_the_ops_falls_back_to_its_own_layers(monkeypatch):
    model, src = model_and_batch()
    expected = greedy_decode(model, src, max_len=8)
    monkeypatch.setattr(torch.backends.mkldnn, "is_available", lambda: False)
    onednn.available.cache_clear()
    try:
        assert not onednn.available()
        model.eval()
        with torch.no_grad(), onednn.packed_linears(model):
            assert patched(model) == []
        assert torch.equal(greedy_decode(model, src, max_len=8), expected)
    finally:
        monkeypatch.undo()
        onednn.available.cache_clear()
    assert onednn.available()


def copy_model_and_data():
    from transformer import Transformer, TransformerConfig
    from transformer.data import load_dataset

    data = load_dataset("copy", n_train=100, n_val=60, n_test=10)
    torch.manual_seed(0)
    return Transformer(TransformerConfig.from_preset(
        "tiny", src_vocab_size=data.tokenizer.vocab_size,
        tgt_vocab_size=data.tokenizer.vocab_size)), data


def test_perplexity_runs_through_onednn_with_pytorchs_numbers(monkeypatch):
    """``evaluate_loss`` (validation, ``evaluate``'s perplexity) packs the linear layers too, and
    its loss and perplexity are PyTorch's own to float32 rounding."""
    from transformer.engine.evaluate import evaluate_loss

    model, data = copy_model_and_data()
    calls = []
    real = onednn._linear
    monkeypatch.setattr(onednn, "_linear", lambda *a: calls.append(1) or real(*a))
    packed = evaluate_loss(model, data, "val", max_tokens=64)
    assert calls and model.training  # it packed, and handed the model back in its mode
    monkeypatch.setenv("TRANSFORMER_ONEDNN", "0")
    plain = evaluate_loss(model, data, "val", max_tokens=64)
    assert packed["tokens"] == plain["tokens"]
    for key in ("loss", "nll", "ppl"):
        assert packed[key] == pytest.approx(plain[key], rel=1e-5)


def test_perplexity_under_autocast_keeps_autocasts_products(monkeypatch):
    """``evaluate_loss(amp=...)`` enters autocast per batch, after ``packed_linears`` would
    have checked for it: with an ``amp`` it does not pack."""
    from transformer.engine.evaluate import evaluate_loss

    model, data = copy_model_and_data()
    calls = []
    real = onednn._linear
    monkeypatch.setattr(onednn, "_linear", lambda *a: calls.append(1) or real(*a))
    evaluate_loss(model, data, "val", max_tokens=64,
                  amp=lambda: torch.autocast("cpu", dtype=torch.bfloat16))
    assert calls == []
