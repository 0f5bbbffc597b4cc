"""Float32 decoding on the CPU through oneDNN: linear layers with their weights packed once.

PyTorch computes ``nn.Linear`` on the CPU with MKL's SGEMM.  oneDNN, which PyTorch also ships
(``torch.compile`` uses it for frozen models on the CPU), multiplies by a weight reordered once
into its own blocked layout, 1.2-2.6x as fast on the decoder's shapes (bench/bench_decode.py
part 3, results/bench/decode_cpu.json).  It is float32 either way: the same products, summed in
another order, so logits agree to float32 rounding.

``packed_linears(model)`` is a context in which every ``nn.Linear`` of ``model``, the
self-attention's stacked W^Q W^K W^V (``MultiHeadAttention.fused_qkv``) and the output
projection run that way.  Greedy decoding, beam search and ``evaluate_loss`` (perplexity)
enter it.  Packed weights are kept between contexts and packed again when a parameter changes
(``Tensor._version``), so decoding batch after batch packs once.  Nothing changes outside the
context: training and autograd never see it.  It does nothing on other devices or dtypes, in
training mode, with gradients enabled, under CPU autocast, where PyTorch lacks the oneDNN ops,
or with ``TRANSFORMER_ONEDNN=0`` in the environment.
"""

from __future__ import annotations

import functools
import os
import weakref
from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

from ..model import Transformer
from ..model.attention import MultiHeadAttention

# module -> ((id, version) of the tensors its packed weight was made from, packed weight)
_PACKED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


@functools.cache
def available() -> bool:
    """Whether this PyTorch has oneDNN's packed linear ops (its CPU builds for x86 and ARM do;
    they are internal ones, used by ``torch.compile``) and they compute ``F.linear``: checked
    once on a small product, so that a PyTorch where they changed falls back to its own."""
    try:
        if not torch.backends.mkldnn.is_available():
            return False
        x, weight, bias = torch.randn(3, 8), torch.randn(5, 8), torch.randn(5)
        packed = torch.ops.mkldnn._reorder_linear_weight(weight, None)
        out = torch.ops.mkldnn._linear_pointwise(x, packed, bias, "none", [], "")
        return torch.allclose(out, F.linear(x, weight, bias), atol=1e-5, rtol=1e-5)
    except (AttributeError, RuntimeError, TypeError):
        return False


def applies(model: nn.Module) -> bool:
    """Whether ``packed_linears(model)`` would pack (see the module docstring)."""
    weight = next(model.parameters(), None)
    return (os.environ.get("TRANSFORMER_ONEDNN", "1") != "0" and weight is not None
            and weight.device.type == "cpu" and weight.dtype == torch.float32
            and not model.training and not torch.is_grad_enabled()
            and not torch.is_autocast_enabled("cpu") and available())


def _packed(owner: nn.Module, *sources: torch.Tensor) -> torch.Tensor:
    """``owner``'s packed weight: the rows of ``sources`` stacked, reordered for oneDNN; made
    again only when one of them is another tensor or was changed in place.  Tensors made under
    ``torch.inference_mode`` keep no version count: theirs are packed every time."""
    key = tuple((id(t), None if t.is_inference() else t._version) for t in sources)
    held = _PACKED.get(owner)
    if held is None or held[0] != key or None in (v for _, v in key):
        weight = sources[0] if len(sources) == 1 else torch.cat(sources)
        held = key, torch.ops.mkldnn._reorder_linear_weight(weight.detach(), None)
        _PACKED[owner] = held
    return held[1]


def _linear(packed: torch.Tensor, bias: torch.Tensor | None):
    def forward(x: torch.Tensor) -> torch.Tensor:  # F.linear(x, weight, bias), through oneDNN
        return torch.ops.mkldnn._linear_pointwise(x, packed, bias, "none", [], "")
    return forward


def packed_linear(linear: nn.Linear):
    """``linear``'s forward through oneDNN, with its weight packed (once, see ``_packed``)."""
    bias = None if linear.bias is None else linear.bias.detach()
    return _linear(_packed(linear, linear.weight), bias)


@contextmanager
def packed_linears(model: Transformer, enabled: bool = True) -> Iterator[Transformer]:
    """Run ``model``'s linear layers through oneDNN for the block (when ``enabled`` and
    ``applies``)."""
    if not (enabled and applies(model)):
        yield model
        return
    patched: list[tuple[nn.Module, str]] = []

    def patch(module: nn.Module, name: str, function) -> None:
        setattr(module, name, function)  # an instance attribute: shadows the class's method
        patched.append((module, name))

    try:
        for module in model.modules():
            if isinstance(module, nn.Linear):
                patch(module, "forward", packed_linear(module))
            elif isinstance(module, MultiHeadAttention):
                patch(module, "project_qkv", _stacked_qkv(module))
        if isinstance(model, Transformer) and model.generator is None:  # tied: tgt_embed projects
            patch(model, "project", _linear(_packed(model, model.tgt_embed.weight), None))
        yield model
    finally:
        for module, name in reversed(patched):
            delattr(module, name)


def _stacked_qkv(attn: MultiHeadAttention):
    """``attn.project_qkv`` with the stacked matrix packed.  Every caller passes it what
    ``attn.fused_qkv()`` returns (the same numbers) or nothing, which means those numbers, so
    the packed copy of those stands in (and no stacked copy is made per call)."""
    parts = (attn.w_q, attn.w_k, attn.w_v)
    linear = _linear(_packed(attn, *(p.weight for p in parts)),
                     torch.cat([p.bias for p in parts]).detach())
    return lambda x, weight=None, bias=None: attn.split_qkv(linear(x))
