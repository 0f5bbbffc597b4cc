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


def token_losses(model, src, tgt_in, tgt_out, config: TransformerConfig):
    """(summed label-smoothed loss over non-pad target tokens, logits).

    ``F.cross_entropy`` does the smoothing (eps_ls / V on every class, the true one included,
    plus 1 - eps_ls on the true class) and skips padding through ``ignore_index``.  The terms
    are computed from ``logits.float()``: under bf16/fp16 autocast the logits are half
    precision, and the sum over many tokens must not depend on autocast's op policy.
    ``logits`` are returned as the model gave them.
    """
    logits = model(src, tgt_in)  # (B, T, V)
    loss = F.cross_entropy(logits.float().flatten(0, 1), tgt_out.flatten(),
                           ignore_index=config.pad_id, label_smoothing=config.label_smoothing,
                           reduction="sum")
    return loss, logits


def nll_sum(logits, tgt_out, pad_id: int) -> torch.Tensor:
    """Summed negative log-likelihood without smoothing: exp(nll / tokens) is the perplexity.

    Computed in float32 whatever the dtype of ``logits`` (training calls it outside autocast
    on the bf16 logits of ``token_losses``).
    """
    return F.cross_entropy(logits.detach().float().flatten(0, 1), tgt_out.flatten(),
                           ignore_index=pad_id, reduction="sum")
