"""The training objective (Section 5.4) and its evaluation on a held-out split.

The loss is cross-entropy against label-smoothed targets (eps_ls = 0.1: "This hurts
perplexity, as the model learns to be more unsure, but improves accuracy and BLEU score"),
summed over the real target tokens; padding is ignored.  Perplexity is reported from the
unsmoothed negative log-likelihood, per target (sub)word token, as Table 3 does.
"""

from __future__ import annotations

import math
from contextlib import nullcontext

import torch
import torch.nn.functional as F

from .config import TransformerConfig
from .runtime import all_reduce


def token_losses(model, src, tgt_in, tgt_out, config: TransformerConfig):
    """(summed label-smoothed loss over non-pad target tokens, logits).

    ``F.cross_entropy`` does the smoothing (eps_ls spread over the vocabulary) and skips
    padding through ``ignore_index``; under autocast it runs in float32 by itself.
    """
    logits = model(src, tgt_in)  # (B, T, V)
    loss = F.cross_entropy(logits.flatten(0, 1), tgt_out.flatten(), ignore_index=config.pad_id,
                           label_smoothing=config.label_smoothing, reduction="sum")
    return loss, logits


def nll_sum(logits, tgt_out, pad_id: int) -> torch.Tensor:
    """Summed negative log-likelihood without smoothing: exp(nll / tokens) is the perplexity."""
    return F.cross_entropy(logits.detach().flatten(0, 1), tgt_out.flatten(), ignore_index=pad_id,
                           reduction="sum")


def to_device(batch, device: torch.device):
    """``(src, tgt_in, tgt_out)`` on ``device``; on CUDA via pinned memory, without waiting."""
    tensors = (batch.src, batch.tgt_in, batch.tgt_out)
    if device.type != "cuda":
        return tensors
    return tuple(t.pin_memory().to(device, non_blocking=True) for t in tensors)


@torch.no_grad()
def evaluate_loss(model, dataset, split: str, max_tokens: int = 4096, device=None,
                  amp=nullcontext, rank: int = 0, world_size: int = 1) -> dict:
    """Mean label-smoothed loss, NLL and perplexity per target token on ``split``.

    With several ranks each scores its shard and the sums are all-reduced.
    """
    device = torch.device(device) if device else next(model.parameters()).device
    was_training = model.training
    model.eval()
    sums, tokens = torch.zeros(2, dtype=torch.float64, device=device), 0
    for batch in dataset.batches(split, max_tokens, shuffle=False, rank=rank,
                                 world_size=world_size):
        src, tgt_in, tgt_out = to_device(batch, device)
        with amp():
            loss, logits = token_losses(model, src, tgt_in, tgt_out, model.config)
            nll = nll_sum(logits, tgt_out, model.config.pad_id)
        sums += torch.stack([loss.double(), nll.double()])
        tokens += batch.n_tgt_tokens
    model.train(was_training)
    counts = torch.tensor([float(tokens)], dtype=torch.float64, device=device)
    loss, nll, tokens = all_reduce(torch.cat([sums, counts])).tolist()
    tokens = max(tokens, 1.0)
    return {"loss": loss / tokens, "nll": nll / tokens, "ppl": math.exp(min(nll / tokens, 50.0)),
            "tokens": int(tokens)}
