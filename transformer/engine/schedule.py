"""The learning-rate schedule of Section 5.3 ("Optimizer").

    lrate = d_model^-0.5 * min(step^-0.5, step * warmup_steps^-1.5)

The rate grows linearly for the first ``warmup_steps`` steps, peaks at
``(d_model * warmup_steps)^-0.5`` and then decays with the inverse square root of the step.
Steps count from 1, the first optimizer update, so step 0 never divides by zero.  Training
sets the rate of each step from ``transformer_lr`` itself (so a resumed run follows the
schedule it is given); ``build_scheduler`` offers the same rate as a PyTorch scheduler.
"""

from __future__ import annotations

import torch
from torch.optim.lr_scheduler import LambdaLR

WARMUP_STEPS = 4000  # Section 5.3


def transformer_lr(step: int, d_model: int, warmup: int = WARMUP_STEPS,
                   lr_scale: float = 1.0) -> float:
    """The paper's learning rate at optimizer step ``step`` (1-based), times ``lr_scale``."""
    if warmup <= 0:
        raise ValueError(f"warmup must be positive, got {warmup}")
    step = max(step, 1)
    return lr_scale * d_model**-0.5 * min(step**-0.5, step * warmup**-1.5)


def build_scheduler(optimizer: torch.optim.Optimizer, d_model: int, warmup: int = WARMUP_STEPS,
                    lr_scale: float = 1.0) -> LambdaLR:
    """A ``LambdaLR`` that gives ``optimizer`` the paper's rate; its base lr must be 1.0.

    ``LambdaLR`` calls the function with the number of ``scheduler.step()`` calls so far
    (0 before the first update), so update k (1-based) runs with ``transformer_lr(k)``.
    """
    for group in optimizer.param_groups:
        if group.get("initial_lr", group["lr"]) != 1.0:
            raise ValueError("build_scheduler sets the rate: create the optimizer with lr=1.0")
    return LambdaLR(optimizer, lambda n: transformer_lr(n + 1, d_model, warmup, lr_scale))

