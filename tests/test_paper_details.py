"""Details of the paper checked against formulas written out independently in the test:
the sinusoids (Section 3.5), the sqrt(d_model) embedding scale (Section 3.4), the
label-smoothed loss (Section 5.4), and a float32 loss under bf16 autocast."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from transformer import Transformer, TransformerConfig
from transformer.engine.loss import label_smoothed_cross_entropy, loss_sum, nll_sum
from transformer.model.positional import SinusoidalPositionalEncoding, sinusoidal_table


def closed_form_table(n_positions: int, d_model: int) -> np.ndarray:
    """PE(pos, 2i) = sin(pos / 10000^(2i/d)), PE(pos, 2i+1) = cos(pos / 10000^(2i/d))."""
    table = np.zeros((n_positions, d_model))
    for pos in range(n_positions):
        for i in range(d_model // 2):
            angle = pos / 10000 ** (2 * i / d_model)
            table[pos, 2 * i] = math.sin(angle)
            table[pos, 2 * i + 1] = math.cos(angle)
    return table


@pytest.mark.parametrize("d_model", [4, 16, 512])
def test_sinusoid_table_matches_the_closed_form(d_model):
    expected = closed_form_table(300, d_model)
    table = sinusoidal_table(300, d_model)
    assert table.dtype == torch.float32 and table.shape == (300, d_model)
    np.testing.assert_allclose(table.numpy(), expected, atol=1e-6, rtol=0)
    pe = SinusoidalPositionalEncoding(d_model, max_len=50)  # grows past max_len on demand
    np.testing.assert_allclose(pe(7).numpy(), expected[:7], atol=1e-6, rtol=0)
    np.testing.assert_allclose(pe(40, offset=260).numpy(), expected[260:300], atol=1e-6, rtol=0)


def tiny_config(**overrides) -> TransformerConfig:
    fields = dict(src_vocab_size=40, tgt_vocab_size=40, n_layers=1, d_model=16, d_ff=32,
                  n_heads=2, dropout=0.3, max_len=32)
    return TransformerConfig(**{**fields, **overrides})


@pytest.mark.parametrize("positional", ["sinusoidal", "learned"])
def test_embeddings_are_scaled_by_sqrt_d_model_before_adding_positions(positional):
    torch.manual_seed(0)
    model = Transformer(tiny_config(positional=positional)).eval()  # eval: no dropout
    d = model.config.d_model
    tokens = torch.tensor([[1, 5, 9, 0, 0], [7, 7, 3, 2, 0]])
    table = model.src_embed.weight.detach()

    def no_positions(length, offset=0):
        return torch.zeros(length, d)

    with torch.no_grad():  # the token part alone: table row times sqrt(d_model), nothing else
        alone = model.embed(tokens, model.src_embed, no_positions)
        torch.testing.assert_close(alone, table[tokens] * math.sqrt(d))
        full = model.embed(tokens, model.src_embed, model.src_pos)
        positions = model.src_pos(5)
    if positional == "sinusoidal":  # the positions are added unscaled
        torch.testing.assert_close(positions, torch.from_numpy(closed_form_table(5, d)).float())
    torch.testing.assert_close(full, table[tokens] * math.sqrt(d) + positions)
    torch.testing.assert_close(full[0, 3], positions[3])  # the pad row is zero: position only


def test_label_smoothed_loss_matches_the_independent_formula():
    """sum over non-pad tokens of -[(1 - eps) log p_y + eps / V sum_v log p_v]: PyTorch spreads
    eps uniformly over all V classes, the true one included (so it gets 1 - eps + eps / V)."""
    cfg, eps, V = tiny_config(), 0.1, 40
    assert cfg.label_smoothing == eps and cfg.pad_id == 0
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 6, V, generator=g) * 3
    tgt_out = torch.randint(4, V, (3, 6), generator=g)
    tgt_out[0, 4:] = cfg.pad_id
    tgt_out[2, 1:] = cfg.pad_id

    loss = loss_sum(logits, tgt_out, cfg)

    x = logits.double().numpy()
    logp = x - x.max(-1, keepdims=True)
    logp = logp - np.log(np.exp(logp).sum(-1, keepdims=True))
    expected, nll = 0.0, 0.0
    for b in range(3):
        for t in range(6):
            y = int(tgt_out[b, t])
            if y == cfg.pad_id:
                continue
            expected -= (1 - eps) * logp[b, t, y] + eps / V * logp[b, t].sum()
            nll -= logp[b, t, y]
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    assert nll_sum(logits, tgt_out, cfg.pad_id).item() == pytest.approx(nll, rel=1e-5)
    # the same target distribution written as a cross-entropy against q = (1-eps) 1_y + eps/V
    q = np.full((V,), eps / V)
    q[int(tgt_out[0, 0])] += 1 - eps
    assert -(q * logp[0, 0]).sum() == pytest.approx(
        -(1 - eps) * logp[0, 0, int(tgt_out[0, 0])] - eps / V * logp[0, 0].sum())


def float32_reference(logits, tgt_out, cfg, smoothing):
    return F.cross_entropy(logits.detach().float().flatten(0, 1), tgt_out.flatten(),
                           ignore_index=cfg.pad_id, label_smoothing=smoothing, reduction="sum")


def test_loss_terms_are_float32_under_bf16_autocast():
    torch.manual_seed(0)
    cfg = tiny_config(dropout=0.0, src_vocab_size=400, tgt_vocab_size=400)
    model = Transformer(cfg)
    g = torch.Generator().manual_seed(1)
    src = torch.randint(4, 400, (4, 9), generator=g)
    tgt = torch.randint(4, 400, (4, 12), generator=g)
    tgt[1, 8:] = cfg.pad_id
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(src, tgt[:, :-1])
        loss = loss_sum(logits, tgt[:, 1:], cfg)
        nll = nll_sum(logits, tgt[:, 1:], cfg.pad_id)
    assert logits.dtype == torch.bfloat16  # the model did run in bf16
    assert loss.dtype == nll.dtype == torch.float32
    ref = float32_reference(logits, tgt[:, 1:], cfg, cfg.label_smoothing)
    assert loss.item() == pytest.approx(ref.item(), rel=1e-6)
    assert nll.item() == pytest.approx(float32_reference(logits, tgt[:, 1:], cfg, 0.0).item(),
                                       rel=1e-6)
    loss.backward()
    assert all(p.grad is None or p.grad.isfinite().all() for p in model.parameters())


def test_loss_of_bf16_logits_is_float32_without_autocast_too():
    """Training sums ``nll_sum`` outside autocast on bf16 logits: no autocast policy to rely on.
    A bf16 sum over thousands of tokens is off by far more than 1e-6."""
    cfg = tiny_config(src_vocab_size=1000, tgt_vocab_size=1000)
    g = torch.Generator().manual_seed(0)
    logits = (torch.randn(16, 64, 1000, generator=g) * 4).bfloat16()
    tgt_out = torch.randint(4, 1000, (16, 64), generator=g)
    loss = loss_sum(logits, tgt_out, cfg)
    nll = nll_sum(logits, tgt_out, cfg.pad_id)
    assert loss.dtype == nll.dtype == torch.float32
    assert loss.item() == pytest.approx(
        float32_reference(logits, tgt_out, cfg, cfg.label_smoothing).item(), rel=1e-6)
    assert nll.item() == pytest.approx(float32_reference(logits, tgt_out, cfg, 0.0).item(),
                                       rel=1e-6)


@pytest.mark.parametrize("eps", [0.0, 0.1, 0.3])
def test_fused_loss_and_its_gradient_equal_torch_cross_entropy(eps):
    """label_smoothed_cross_entropy writes the gradient out by hand: value and gradient against
    F.cross_entropy(label_smoothing=eps), and the gradient against central differences."""
    g = torch.Generator().manual_seed(0)
    logits = (torch.randn(12, 30, generator=g, dtype=torch.float64) * 3).requires_grad_()
    target = torch.randint(4, 30, (12,), generator=g)
    target[[2, 7]] = 0  # ignored rows get no gradient
    ours = label_smoothed_cross_entropy(logits, target, eps, 0)
    (grad,) = torch.autograd.grad(2.5 * ours, logits)
    ref = F.cross_entropy(logits, target, ignore_index=0, label_smoothing=eps, reduction="sum")
    (ref_grad,) = torch.autograd.grad(2.5 * ref, logits)
    assert ours.item() == pytest.approx(ref.item(), rel=1e-12)
    torch.testing.assert_close(grad, ref_grad, atol=1e-12, rtol=1e-12)
    assert (grad[[2, 7]] == 0).all()
    x, h = logits.detach(), 1e-6
    for i, j in [(0, 3), (1, int(target[1])), (5, 29), (11, 0)]:  # central differences
        plus, minus = x.clone(), x.clone()
        plus[i, j] += h
        minus[i, j] -= h
        numeric = (label_smoothed_cross_entropy(plus, target, eps, 0)
                   - label_smoothed_cross_entropy(minus, target, eps, 0)) / (2 * h)
        assert 2.5 * numeric.item() == pytest.approx(grad[i, j].item(), abs=1e-7)


def test_fused_loss_refuses_a_second_backward():
    """Its backward reuses the saved softmax in place: a second one must fail, not mislead."""
    logits = torch.randn(4, 9, requires_grad=True)
    loss = label_smoothed_cross_entropy(logits, torch.tensor([5, 0, 6, 7]), 0.1, 0)
    loss.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        loss.backward()
