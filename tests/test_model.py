"""The whole model against torch.nn.Transformer, and the properties the paper relies on."""

import helpers
import pytest
import torch
from helpers import copy_into_reference
from torch import nn

from transformer import Transformer, TransformerConfig, greedy_decode

V = 50


def small_config(**overrides) -> TransformerConfig:
    return helpers.small_config(V, **overrides)


def batch(seed=0, b=3, s=9, t=7):
    g = torch.Generator().manual_seed(seed)
    src = torch.randint(4, V, (b, s), generator=g)
    src[0, 6:] = 0  # padded sources
    src[2, 3:] = 0
    tgt_in = torch.randint(4, V, (b, t), generator=g)
    tgt_in[:, 0] = 1  # BOS
    return src, tgt_in


@pytest.mark.filterwarnings("ignore::UserWarning")  # nested-tensor notices from torch
@pytest.mark.parametrize("norm_first", [False, True])
def test_matches_torch_nn_transformer(norm_first):
    torch.manual_seed(0)
    model = Transformer(small_config(norm_first=norm_first)).double().eval()
    ref = copy_into_reference(model).double().eval()
    src, tgt_in = batch()
    pad = src == 0
    causal = nn.Transformer.generate_square_subsequent_mask(tgt_in.size(1), dtype=torch.float64)
    with torch.no_grad():
        out = ref(model.embed(src, model.src_embed, model.src_pos),
                  model.embed(tgt_in, model.tgt_embed, model.tgt_pos),
                  tgt_mask=causal, src_key_padding_mask=pad, memory_key_padding_mask=pad)
        expected = out @ model.tgt_embed.weight.T
        got = model(src, tgt_in)
    torch.testing.assert_close(got, expected, atol=1e-9, rtol=1e-9)


def test_decoder_is_causal():
    torch.manual_seed(0)
    model = Transformer(small_config()).eval()
    src, tgt_in = batch()
    changed = tgt_in.clone()
    changed[:, 4:] = torch.randint(4, V, changed[:, 4:].shape)
    with torch.no_grad():
        a, b = model(src, tgt_in), model(src, changed)
    torch.testing.assert_close(a[:, :4], b[:, :4])
    assert not torch.allclose(a[:, 4:], b[:, 4:])


def test_extra_source_padding_changes_nothing():
    torch.manual_seed(0)
    model = Transformer(small_config()).eval()
    src, tgt_in = batch()
    longer = torch.cat([src, torch.zeros(src.size(0), 5, dtype=torch.long)], dim=1)
    with torch.no_grad():
        torch.testing.assert_close(model(longer, tgt_in), model(src, tgt_in),
                                   atol=1e-5, rtol=1e-5)


def test_eval_is_deterministic_and_train_uses_dropout():
    torch.manual_seed(0)
    model = Transformer(small_config())
    src, tgt_in = batch()
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(src, tgt_in), model(src, tgt_in))
        model.train()
        assert not torch.equal(model(src, tgt_in), model(src, tgt_in))


def test_three_way_weight_tying():
    model = Transformer(small_config())
    assert model.src_embed.weight is model.tgt_embed.weight
    assert model.generator is None
    untied = Transformer(small_config(share_embeddings=False, tgt_vocab_size=60))
    assert untied.src_embed.weight is not untied.tgt_embed.weight
    assert untied(*batch()).shape == (3, 7, 60)


def test_attention_maps_are_distributions_over_real_keys():
    torch.manual_seed(0)
    model = Transformer(small_config()).eval()
    src, tgt_in = batch()
    with torch.no_grad():
        maps = model.attention_maps(src, tgt_in)
    assert maps["encoder"].shape == (2, 3, 4, 9, 9)
    assert maps["decoder_self"].shape == (2, 3, 4, 7, 7)
    assert maps["cross"].shape == (2, 3, 4, 7, 9)
    torch.testing.assert_close(maps["cross"].sum(-1), torch.ones(2, 3, 4, 7))
    assert (maps["cross"][:, 0, :, :, 6:] == 0).all()  # padded source keys get no weight
    assert (maps["decoder_self"].triu(diagonal=1) == 0).all()  # no peeking ahead


def test_learned_positions_refuse_beyond_max_len():
    model = Transformer(small_config(positional="learned", max_len=8)).eval()
    with pytest.raises(ValueError, match="max_len"):
        model(torch.ones(1, 9, dtype=torch.long), torch.ones(1, 3, dtype=torch.long))
    sinusoid = Transformer(small_config(max_len=8)).eval()  # sinusoids extend past max_len
    long_src = torch.ones(1, 20, dtype=torch.long)
    assert sinusoid(long_src, torch.ones(1, 3, dtype=torch.long)).isfinite().all()


@pytest.mark.parametrize("share_embeddings", [True, False])
def test_init_zeroes_only_the_token_pad_row_not_a_position(share_embeddings):
    """Table 3 row E: position 0 of a learned table is the first token, not padding; only the
    token embeddings' <pad> row starts (and stays, padding_idx) at zero."""
    torch.manual_seed(0)
    c = small_config(positional="learned", share_embeddings=share_embeddings, tgt_vocab_size=V)
    model = Transformer(c)
    for table in (model.src_pos.embedding.weight, model.tgt_pos.embedding.weight):
        assert table.shape == (c.max_len, c.d_model)
        assert (table.abs().sum(1) > 0).all(), "a row of the positional table is all zero"
        assert table.std().item() == pytest.approx(c.d_model**-0.5, rel=0.1)
    assert model.src_pos.embedding.weight is not model.tgt_pos.embedding.weight
    for embed in (model.src_embed, model.tgt_embed):
        assert embed.padding_idx == c.pad_id
        assert (embed.weight[c.pad_id] == 0).all()
        assert (embed.weight[c.pad_id + 1:].abs().sum(1) > 0).all()
    model.reset_parameters()  # re-initialising keeps the same rule
    assert (model.src_pos.embedding.weight[0] != 0).any()
    assert (model.src_embed.weight[c.pad_id] == 0).all()


def test_greedy_pads_after_eos():
    torch.manual_seed(0)
    model = Transformer(small_config()).eval()
    src, _ = batch()
    out = greedy_decode(model, src, max_len=12)
    assert out.shape[0] == 3 and out.shape[1] <= 12
    for row in out.tolist():
        if 2 in row:
            assert all(t == 0 for t in row[row.index(2) + 1:])
    assert torch.equal(out, greedy_decode(model, src, max_len=12, use_cache=False))


# ---- the GPU switches of train.py, exercised on the CPU ---------------------------------------

def test_model_compiles_to_one_graph_and_matches_eager():
    """``--compile``: the training forward traces without a graph break (fullgraph=True makes a
    break an error) and keeps working when batch shapes change, as token batches do."""
    torch.manual_seed(0)
    model = Transformer(small_config(dropout=0.0))
    compiled = torch.compile(model, backend="aot_eager", fullgraph=True)
    for shape in [dict(b=3, s=9, t=7), dict(b=5, s=6, t=8)]:
        src, tgt_in = batch(**shape)
        out = compiled(src, tgt_in)
        grads = torch.autograd.grad(out.square().sum(), list(model.parameters()))
        ref = model(src, tgt_in)
        ref_grads = torch.autograd.grad(ref.square().sum(), list(model.parameters()))
        assert torch.allclose(out, ref, atol=1e-5)
        assert all(torch.allclose(g, r, atol=1e-4) for g, r in zip(grads, ref_grads))


def test_bf16_autocast_runs_and_stays_close_to_float32():
    """bf16 autocast (train.py's default on CUDA): matmuls in bf16, the loss within 1%."""
    torch.manual_seed(0)
    model = Transformer(small_config(dropout=0.0))
    src, tgt_in = batch()
    targets = torch.roll(tgt_in, -1, 1)

    def loss_of(logits):
        return nn.functional.cross_entropy(logits.float().flatten(0, 1), targets.flatten(),
                                           ignore_index=0, label_smoothing=0.1)

    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(src, tgt_in)
        loss = loss_of(logits)
    loss.backward()
    assert logits.dtype == torch.bfloat16
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    assert loss.item() == pytest.approx(loss_of(model(src, tgt_in)).item(), rel=1e-2)
