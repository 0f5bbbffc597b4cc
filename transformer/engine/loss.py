"""The training objective (Section 5.4): label-smoothed cross-entropy, and the plain NLL.

The loss is cross-entropy against label-smoothed targets (eps_ls = 0.1: "This hurts
perplexity, as the model learns to be more unsure, but improves accuracy and BLEU score"),
summed over the real target tokens; padding is ignored.  Perplexity is reported from the
unsmoothed negative log-likelihood, per target (sub)word token, as Table 3 does
(``evaluate.evaluate_loss`` sums both over a whole split).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..model import TransformerConfig


def loss_sum(logits, tgt_out, config: TransformerConfig) -> torch.Tensor:
    """The label-smoothed loss of a batch, summed over its real (non-pad) target tokens.

    The smoothing puts eps_ls / V on every class, the true one included, plus 1 - eps_ls on the
    true class (as ``F.cross_entropy(label_smoothing=...)``).  The terms are computed from
    ``logits.float()``: under bf16 autocast the logits are bf16, and a sum over many tokens
    must not depend on autocast's op policy.
    """
    return label_smoothed_cross_entropy(logits.float().flatten(0, 1), tgt_out.flatten(),
                                        config.label_smoothing, config.pad_id)


def label_smoothed_cross_entropy(logits: torch.Tensor, target: torch.Tensor, eps: float,
                                 ignore_index: int) -> torch.Tensor:
    """sum_i -[(1 - eps) log p_i,y_i + eps / V sum_v log p_i,v] over the rows i whose target is
    not ``ignore_index``: ``F.cross_entropy(..., label_smoothing=eps, reduction="sum")``, the
    same numbers to float rounding, in under half the time on a CPU (``_SmoothedCE``)."""
    return _SmoothedCE.apply(logits, target, eps, ignore_index)


class _SmoothedCE(torch.autograd.Function):
    """The loss with its gradient written out: d loss / d logits_i = p_i - (1 - eps) 1_y_i - eps/V
    for a kept row i, 0 for an ignored one.  Forward computes the softmax p once and keeps it;
    log p enters the loss only through log p_y = x_y - lse and sum_v log p_v = sum_v x_v -
    V lse, with lse = x_m - log p_m at the row's largest logit m (p_m >= 1/V: no underflow).
    PyTorch's own composes log_softmax, nll_loss and a sum: its backward computes the
    exponentials again and adds two (N, V) gradients."""

    @staticmethod
    def forward(ctx, logits, target, eps, ignore_index):
        p = logits.softmax(-1)  # (N, V)
        # (N, 1) log sum_v exp(x_v) = x_m - log p_m: the largest logit and the largest
        # probability sit at the same m (two max reductions: a CPU's argmax is 5x slower)
        lse = logits.amax(-1, keepdim=True) - p.amax(-1, keepdim=True).log()
        keep = target != ignore_index
        index = target.masked_fill(~keep, 0)[:, None]  # (N, 1), any valid class where ignored
        per_token = (lse - logits.gather(1, index)).squeeze(1) * (1.0 - eps)  # -(1-eps) log p_y
        if eps:  # - eps/V sum_v log p_v
            per_token = per_token + (lse.squeeze(1) - logits.sum(-1) / p.size(-1)) * eps
        ctx.save_for_backward(p, index, keep)
        ctx.eps = eps
        return (per_token * keep).sum()

    @staticmethod
    def backward(ctx, grad_loss):
        p, index, keep = ctx.saved_tensors
        # in place: no second (N, V) tensor; a second backward through the same graph fails
        # autograd's check of the saved tensor's version
        grad = p.sub_(ctx.eps / p.size(-1)) if ctx.eps else p
        grad.scatter_add_(1, index, torch.full(index.shape, ctx.eps - 1.0, dtype=grad.dtype,
                                                device=grad.device))
        return grad.mul_((grad_loss * keep).to(grad.dtype)[:, None]), None, None, None


def nll_sum(logits, tgt_out, pad_id: int) -> torch.Tensor:
    """Summed negative log-likelihood without smoothing: exp(nll / tokens) is the perplexity.

    Computed in float32 whatever the dtype of ``logits`` (training calls it outside autocast
    on the bf16 logits of the model).
    """
    return F.cross_entropy(logits.detach().float().flatten(0, 1), tgt_out.flatten(),
                           ignore_index=pad_id, reduction="sum")
