"""The learning-rate schedule of Section 5.3."""

import math

import pytest
import torch

from transformer.engine.schedule import build_scheduler, transformer_lr


def test_formula_warmup_peak_and_decay():
    d, w = 512, 4000
    assert transformer_lr(1, d, w) == pytest.approx(d**-0.5 * w**-1.5)
    assert transformer_lr(w, d, w) == pytest.approx((d * w) ** -0.5)  # the peak, ~7.0e-4
    assert transformer_lr(w, d, w) == pytest.approx(6.99e-4, rel=1e-3)
    assert transformer_lr(4 * w, d, w) == pytest.approx(transformer_lr(w, d, w) / 2)
    rates = [transformer_lr(s, d, w) for s in range(1, 3 * w)]
    assert max(rates) == rates[w - 1]  # linear up to step w, then down
    assert all(a < b for a, b in zip(rates[: w - 1], rates[1:w]))
    assert all(a > b for a, b in zip(rates[w - 1:], rates[w:]))


def test_step_zero_does_not_divide_by_zero_and_scale_multiplies():
    assert math.isfinite(transformer_lr(0, 256))
    assert transformer_lr(0, 256) == transformer_lr(1, 256)
    assert transformer_lr(100, 256, 50, lr_scale=0.5) == pytest.approx(
        0.5 * transformer_lr(100, 256, 50))
    with pytest.raises(ValueError):
        transformer_lr(1, 512, warmup=0)


def test_lambda_lr_gives_update_k_the_rate_of_step_k():
    p = torch.nn.Parameter(torch.zeros(3))
    opt = torch.optim.Adam([p], lr=1.0, betas=(0.9, 0.98), eps=1e-9)
    sched = build_scheduler(opt, d_model=64, warmup=10, lr_scale=2.0)
    for k in range(1, 30):
        assert opt.param_groups[0]["lr"] == pytest.approx(transformer_lr(k, 64, 10, 2.0))
        p.grad = torch.ones(3)
        opt.step()
        sched.step()


def test_scheduler_refuses_an_optimizer_with_another_base_lr():
    opt = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=1e-3)
    with pytest.raises(ValueError, match="lr=1.0"):
        build_scheduler(opt, d_model=512)
