# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3 (transformer)
#     language: python
#     name: python3
# ---

# %% [markdown] slideshow={"slide_type": "slide"}
# # Common misreadings of the paper | 常见误读
#
# **What you will learn**
#
# - ways the paper is commonly misread or mis-implemented, collected from study notes
#   circulating among students (paraphrased here, not quoted), each reproduced in a few lines
#   (the [summary](#summary--总结) counts them);
# - for each one, a *behavioural* check, a property that any correct implementation must
#   have, which the misreading fails and the package passes;
# - which mistakes are harmless (equivalent up to a permutation), which change the model, and
#   which silently break training (the model cheats by looking at the future).
#
# The habit to take away: test a component by what it must guarantee (causality, invariance to
# padding, rows summing to one, shapes for `T_q ≠ T_k`, ...), not by reading it and nodding.
# (*Padding*: filler tokens that make the sentences of a batch equally long; `T_q` and `T_k`:
# the number of queries and of keys, which differ when a decoder attends to the encoder.)

# %% slideshow={"slide_type": "-"}
import copy
import math
import time

import pandas as pd
import torch
from IPython.display import Markdown, display
from torch import nn

from transformer import (
    LearnedPositionalEmbedding,
    MultiHeadAttention,
    Transformer,
    TransformerConfig,
    scaled_dot_product_attention,
    sinusoidal_table,
)
from transformer.apps.profiles import banner

torch.set_num_threads(1)  # small workloads: one thread is fastest and unaffected by other jobs
print(banner())
torch.manual_seed(0)
results = []
check_seconds = {}  # the longest each check took on the package's implementation


def verdict(name, check, wrong, right):
    """Run ``check`` on the misreading (must fail) and on the package (must pass)."""
    try:
        check(wrong)
    except (AssertionError, RuntimeError, ValueError) as error:
        reason = f"{type(error).__name__}: {str(error).splitlines()[0][:100]}"
    else:
        raise AssertionError(f"{name}: the misreading unexpectedly passes {check.__name__}")
    start = time.perf_counter()
    check(right)  # raises if the package were wrong
    elapsed = time.perf_counter() - start
    check_seconds[check.__name__] = max(elapsed, check_seconds.get(check.__name__, 0.0))
    results.append({"misreading": name, "check": check.__name__,
                    "misreading fails": True, "package passes": True})
    print(f"{check.__name__}\n  misreading: FAILS  ({reason})\n  package:    passes")


# %% [markdown] slideshow={"slide_type": "slide"}
# ## The behavioural checks | 行为检查
#
# Each check takes an implementation and raises if a guaranteed property is violated.

# %% slideshow={"slide_type": "-"}
def check_causal(self_attention):
    """Changing token t may change outputs t, t+1, ... but never 0 … t-1; outputs are finite."""
    x = torch.randn(1, 8, 16, dtype=torch.float64)
    changed = x.clone()
    changed[:, 5] = torch.randn(16, dtype=torch.float64)
    y, y_changed = self_attention(x), self_attention(changed)
    assert torch.isfinite(y).all(), "non-finite outputs"
    leak = (y[:, :5] - y_changed[:, :5]).abs().max().item()
    assert leak < 1e-12, f"outputs before position 5 moved by {leak:.2e}: the future leaks"


def check_first_position(self_attention):
    """Decoder position 0 (BOS, the start token) sees itself: a finite output that depends on it."""
    x = torch.randn(1, 6, 16, dtype=torch.float64, requires_grad=True)
    y = self_attention(x)
    assert torch.isfinite(y).all(), "non-finite outputs: a query with no visible key"
    (grad,) = torch.autograd.grad(y[0, 0].sum(), x, allow_unused=True)
    assert grad is not None and grad[0, 0].abs().sum() > 0, \
        "output 0 ignores input 0: the position cannot see itself"


def check_rows_sum_to_one(attend):
    """Every query's weights form a distribution over the keys."""
    _, weights = attend(torch.randn(5, 8), torch.randn(7, 8), torch.randn(7, 8))
    sums = weights.sum(-1)
    assert torch.allclose(sums, torch.ones_like(sums)), f"row sums range {sums.min():.2f}…{sums.max():.2f}"


def check_logit_spread(attend, d_k=512):
    """With unit-variance q and k, log-weights vary across keys with variance ≈ 1 at any d_k."""
    q, k = torch.randn(64, d_k, dtype=torch.float64), torch.randn(64, d_k, dtype=torch.float64)
    _, weights = attend(q, k, k)
    spread = weights.log().var(-1).mean().item()
    assert 0.8 < spread < 1.25, f"log-weight variance {spread:.4g} at d_k={d_k} (expected ≈ 1)"


def check_identity_values(attend):
    """With the identity matrix as values (and d_v ≠ d_k), attention returns its own weights."""
    q, k, v = torch.randn(4, 8), torch.randn(6, 8), torch.eye(6)
    out, weights = attend(q, k, v)
    assert out.shape == weights.shape, f"output shape {tuple(out.shape)}, weights {tuple(weights.shape)}"
    assert torch.allclose(out, weights), "output is not the weighted sum of the values"


def check_padding_ignored(attend):
    """Padded keys receive exactly zero weight."""
    keep = torch.tensor([True, True, True, False, False])  # the last two keys are padding
    _, weights = attend(torch.randn(5, 8), torch.randn(5, 8), torch.randn(5, 8), keep)
    on_padding = weights[:, ~keep].max().item()
    assert on_padding == 0, f"padding receives weight up to {on_padding:.3f}"


def check_cross_attention(layer_class):
    """A multi-head layer must accept T_q != T_k (decoder queries, encoder keys)."""
    layer = layer_class(32, 4)
    out = layer(torch.randn(2, 5, 32), torch.randn(2, 7, 32), torch.randn(2, 7, 32))
    assert out.shape == (2, 5, 32), f"output shape {tuple(out.shape)}"


def check_full_connectivity(self_attention):
    """In one self-attention layer, every output depends on every input."""
    x = torch.randn(1, 8, 32, requires_grad=True)
    jac = torch.autograd.functional.jacobian(lambda t: self_attention(t).sum(-1), x)  # (1,8,1,8,32)
    connected = jac.abs().sum(dim=(0, 2, 4)) > 0  # (outputs, inputs)
    assert connected.all(), (f"{(~connected).sum().item()} of {connected.numel()} output-input "
                             "pairs are disconnected")


def check_not_stuck_on_self(weights_of):
    """Before training, tokens should not be forced to attend to themselves."""
    weights = weights_of(torch.randn(1, 16, 64))
    on_self = (weights.argmax(-1) == torch.arange(16)).float().mean().item()
    assert on_self < 0.5, f"{on_self:.0%} of the tokens attend mostly to themselves"


def check_pe_matches_paper(pe):
    """The table equals PE(pos, 2i) = sin(pos/10000^(2i/d)), PE(pos, 2i+1) = cos(...)."""
    table = pe(50, 16)
    assert table.shape == (50, 16), f"shape {tuple(table.shape)}, expected (50, 16)"
    gap = (table.double() - sinusoidal_table(50, 16).double()).abs().max().item()
    assert gap < 1e-5, f"differs from the paper's formula by up to {gap:.2f}"


def check_pe_relative(pe):
    """PE(p)·PE(p+k) depends on k only: the property that makes offsets a fixed linear map."""
    table = pe(200, 16).double()
    gram = table @ table.T
    for k in (1, 3, 10):
        spread = gram.diagonal(k).max() - gram.diagonal(k).min()
        assert spread < 1e-4, f"PE(p)·PE(p+{k}) varies by {spread:.2f} with p"


# %% slideshow={"slide_type": "-"}
checks = {name: obj for name, obj in globals().items()
          if name.startswith("check_") and callable(obj)}
display(Markdown(
    f"**Takeaway:** these {len(checks)} short checks state the properties that attention and "
    "positional encodings must have, each as something a test can verify:\n\n"
    "| check | property |\n|---|---|\n"
    + "\n".join(f"| `{name}` | {check.__doc__.splitlines()[0]} |" for name, check in checks.items())
    + "\n\nThey are cheap enough for any test suite: the [summary](#summary--总结) reports how "
    "long the slowest took. Further checks, specific to one misreading, are defined where they "
    "are used."))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 1. The causal mask pointing the wrong way | 因果掩码方向反了
#
# One set of notes writes the decoder mask as `M_ij = 0` when `i ≤ j` and `-∞` when `i > j`
# (`i` the query, `j` the key). That blocks the **past** and opens the **future**: exactly the
# opposite of what the decoder needs. A model trained this way learns to copy the next word
# from its input and is useless when generating, where the future does not exist yet.

# %% slideshow={"slide_type": "-"}
def package_causal(x):
    return scaled_dot_product_attention(x, x, x, is_causal=True)[0]


def reversed_mask(x):
    t = x.size(-2)
    future_allowed = torch.ones(t, t, dtype=torch.bool).triu()  # keys j >= i: the misreading
    return scaled_dot_product_attention(x, x, x, mask=future_allowed)[0]


verdict("causal mask reversed (i ≤ j visible)", check_causal, reversed_mask, package_causal)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 2. No causal mask at all | 缺少因果掩码
#
# Another note's decoder calls the same attention as the encoder, with no mask. Training loss
# drops fast (the answer is visible); generation fails.

# %% slideshow={"slide_type": "-"}
def no_mask(x):
    return scaled_dot_product_attention(x, x, x)[0]


verdict("decoder self-attention without mask", check_causal, no_mask, package_causal)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 3. "Position i sees only positions before i" | “只能看到 i 之前的位置”
#
# Notes often say the decoder at position `i` may use positions `< i`. The mask must include
# `i` itself (`≤ i`): the input at position `i` is the previous output token, the one the
# prediction most depends on. With a strict mask the first query has no key at all: with `-∞`
# its softmax is `0/0 = NaN` (*not a number*, the floating-point result of an undefined
# operation), which then spreads to the loss. The package returns zeros for a
# query with no visible key, so there the error is silent: position 0 outputs nothing at all.
# The check asks what must hold: the first position sees itself.

# %% slideshow={"slide_type": "-"}
def strict_mask(x):
    t = x.size(-2)
    return scaled_dot_product_attention(x, x, x, mask=torch.ones(t, t).tril(-1).bool())[0]


def strict_mask_ten_lines(x):  # the usual explicit softmax: a row of -inf gives NaN
    t = x.size(-2)
    scores = x @ x.transpose(-2, -1) / math.sqrt(x.size(-1))
    scores = scores.masked_fill(~torch.ones(t, t).tril(-1).bool(), float("-inf"))
    return scores.softmax(-1) @ x


with torch.no_grad():
    x = torch.randn(1, 4, 8)
    print("strict mask, output at position 0, ten-line version:", strict_mask_ten_lines(x)[0, 0, :3].tolist())
    print("strict mask, output at position 0, package's attention:", strict_mask(x)[0, 0, :3].tolist())
verdict("strict mask (< i), explicit softmax", check_first_position, strict_mask_ten_lines,
        package_causal)
verdict("strict mask (< i), package attention", check_first_position, strict_mask,
        package_causal)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 4. Softmax over the wrong axis | softmax 的维度错了
#
# The weights of one query must sum to one over the **keys** (`dim=-1` of the `(T_q, T_k)`
# score matrix). Normalising over the queries (`dim=-2`) still runs, still gives numbers in
# `(0, 1)`, and is wrong twice: rows no longer sum to one, and with a causal mask every column
# is normalised using later queries, so the future leaks back in.

# %% slideshow={"slide_type": "-"}
def softmax_over_queries(q, k, v, mask=None):
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = scores.softmax(dim=-2)  # the misreading
    return weights @ v, weights


verdict("softmax over queries (dim=-2)", check_rows_sum_to_one, softmax_over_queries,
        scaled_dot_product_attention)


def causal_softmax_over_queries(x):
    t = x.size(-2)
    return softmax_over_queries(x, x, x, torch.ones(t, t).tril().bool())[0]


verdict("softmax over queries, causal decoder", check_causal, causal_softmax_over_queries,
        package_causal)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 5. Dividing by d_k, or not dividing at all | 除以 d_k 或不缩放
#
# [Notebook 02, "Why divide by √d_k"](02_attention.ipynb#why-divide-by-d_k--为什么除以-d_k)
# measured why the factor is `1/√d_k`: it keeps the scores at unit variance. One set of notes
# drops it altogether: at large `d_k` the scores' variance grows to `d_k` and the softmax
# *saturates* (one weight near 1, the rest near 0, and gradients through it near zero);
# dividing by `d_k` instead shrinks the scores to variance `1/d_k` and flattens attention
# towards uniform. The check reads the spread of the log-weights, which equals the spread of
# the scaled scores.

# %% slideshow={"slide_type": "-"}
def divide_by_dk(q, k, v, mask=None):
    weights = (q @ k.transpose(-2, -1) / q.size(-1)).softmax(-1)  # d_k, not √d_k
    return weights @ v, weights


def no_scaling(q, k, v, mask=None):
    weights = (q @ k.transpose(-2, -1)).softmax(-1)
    return weights @ v, weights


verdict("scores divided by d_k", check_logit_spread, divide_by_dk, scaled_dot_product_attention)
verdict("scores not scaled", check_logit_spread, no_scaling, scaled_dot_product_attention)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 6. Weighting the keys instead of the values | 用权重去加权键而不是值
#
# One description says the weights are multiplied with the **keys** and the result then
# "combined with the values". Keys only decide *where* to look; the output is the weighted sum
# of the **values**. The check uses identity values: a correct attention then returns its own
# weights, and a `d_v` different from `d_k` exposes the confusion by shape alone.

# %% slideshow={"slide_type": "-"}
def weights_times_keys(q, k, v, mask=None):
    weights = (q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))).softmax(-1)
    return weights @ k, weights  # the misreading


verdict("weights applied to the keys", check_identity_values, weights_times_keys,
        scaled_dot_product_attention)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 7. Masking the queries instead of the scores | 掩码加在查询上而不是分数上
#
# One implementation fills the **query** vectors at padded positions with a large negative
# number. Masking must act on the scores of padded **keys**, before the softmax. Masking
# queries leaves every padded key fully visible (and corrupts the padded queries' own rows).

# %% slideshow={"slide_type": "-"}
def mask_on_queries(q, k, v, keep=None):
    if keep is not None:
        q = q.masked_fill(~keep[:, None], -1e9)  # the misreading: mask the queries
    weights = (q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))).softmax(-1)
    return weights @ v, weights


verdict("mask applied to the queries", check_padding_ignored, mask_on_queries,
        scaled_dot_product_attention)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 8. Multi-head code that assumes T_q = T_k | 假设查询与键长度相同的多头实现
#
# A widely copied multi-head layer reshapes keys and values with the **query's** sequence
# length. Self-attention never notices, since there all three have the same length; the
# encoder-decoder attention of every translation model breaks, because a 5-word target attends
# to a 7-word source. (Another note states that `Q` and `K` both have shape `(L, d_k)`: the
# same misreading, on paper.)

# %% slideshow={"slide_type": "-"}
class EqualLengthMultiHead(nn.Module):
    """The misreading: keys and values are reshaped with the query's length."""

    def __init__(self, d_model, n_heads):
        super().__init__()
        self.h, self.d = n_heads, d_model // n_heads
        self.q, self.k, self.v, self.o = (nn.Linear(d_model, d_model) for _ in range(4))

    def forward(self, query, key, value):
        b, t, _ = query.shape
        q = self.q(query).view(b, t, self.h, self.d).transpose(1, 2)
        k = self.k(key).view(b, t, self.h, self.d).transpose(1, 2)  # t is the query length
        v = self.v(value).view(b, t, self.h, self.d).transpose(1, 2)
        out = scaled_dot_product_attention(q, k, v)[0]
        return self.o(out.transpose(1, 2).reshape(b, t, self.h * self.d))


class PackageMultiHead(nn.Module):
    def __init__(self, d_model, n_heads):
        super().__init__()
        self.layer = MultiHeadAttention(d_model, n_heads, d_model // n_heads, d_model // n_heads)

    def forward(self, query, key, value):
        return self.layer(query, key, value)[0]


# on self-attention the two agree once the weights are copied: tests of self-attention alone pass
wrong, right = EqualLengthMultiHead(32, 4), PackageMultiHead(32, 4)
for mine, theirs in zip((wrong.q, wrong.k, wrong.v, wrong.o),
                        (right.layer.w_q, right.layer.w_k, right.layer.w_v, right.layer.w_o)):
    mine.load_state_dict(theirs.state_dict())
x = torch.randn(2, 6, 32)
torch.testing.assert_close(wrong(x, x, x), right(x, x, x))
print("self-attention: the misreading and the package agree exactly")
verdict("multi-head assumes T_q = T_k", check_cross_attention, EqualLengthMultiHead,
        PackageMultiHead)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 9. Heads that split the sequence | 把序列切给不同的头
#
# A description of multi-head attention says the *input sequence* is cut into pieces, one per
# head. Heads split the **features** (each head gets its own projection of every position),
# never the positions: every head sees the whole sentence. Splitting the sequence turns one
# layer into several disconnected local attentions.

# %% slideshow={"slide_type": "-"}
def heads_split_sequence(x, h=4):
    chunks = x.chunk(h, dim=1)  # the misreading: each head gets a slice of the positions
    return torch.cat([scaled_dot_product_attention(c, c, c)[0] for c in chunks], dim=1)


package_layer = MultiHeadAttention(32, 4, 8, 8)
verdict("heads split the sequence", check_full_connectivity, heads_split_sequence,
        lambda x: package_layer(x, x, x)[0])

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 10. "Q = K = V" taken literally | 把 “Q = K = V” 当真
#
# Summaries of self-attention write `Q = K = V = X`. They mean that all three come from the
# same sequence; each is still its own learned projection (`X W^Q`, `X W^K`, `X W^V`). Without
# projections the score of a token with itself is `|x|²`, almost always the largest, so every
# token attends mainly to itself and the layer can hardly move information.

# %% slideshow={"slide_type": "-"}
def no_projections(x):
    return scaled_dot_product_attention(x, x, x)[1][0]


def with_projections(x):
    return package_layer64(x, x, x, need_weights=True)[1][0].mean(0)  # averaged over heads


package_layer64 = MultiHeadAttention(64, 4, 16, 16)
verdict("Q = K = V without projections", check_not_stuck_on_self, no_projections,
        with_projections)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 11. Positional-encoding formulas | 位置编码公式
#
# The formula indexes **pairs** of dimensions: dimensions `2i` and `2i+1` share the frequency
# `10000^(-2i/d)`. Notes that describe `i` as "the dimension" invite three variants, plus a
# fourth seen in one note, which sums the sines into one number per position, and a fifth that
# looks like a harmless simplification: sines only.
#
# | variant | what it does | verdict |
# |---|---|---|
# | sines in the first half, cosines in the second | the paper's columns in another order | **equivalent** up to a fixed permutation |
# | exponent `i/d` instead of `2i/d` (pair index `i`) | frequencies from `1` down to `10000^(-1/2)` only | a valid sinusoidal code, **not the paper's**: at `d = 512` the longest wavelength is about 620 positions instead of about 60,600 |
# | loop over dimensions `j`, exponent `2j/d`, cosine with `2(j+1)/d` | sine and cosine of a pair get different frequencies, and the highest ones vanish | **wrong**: the relative-offset property is lost |
# | `Σ_i sin(pos / 10000^(2i/d))` | one scalar per position | **wrong**: not a vector, no cosines |
# | a sine in every dimension, no cosines | position 0 becomes the zero vector; no linear map shifts positions by `k` | **wrong**: [notebook 04, "Why sines and cosines in pairs"](04_positional_encoding.ipynb#why-sines-and-cosines-in-pairs--为什么正弦与余弦要成对) measures the failure |

# %% slideshow={"slide_type": "subslide"}
def pe_halves(n, d):
    pos = torch.arange(n, dtype=torch.float64)[:, None]
    angle = pos / 10000 ** (torch.arange(0, d, 2, dtype=torch.float64) / d)
    return torch.cat([angle.sin(), angle.cos()], dim=-1)


def pe_i_not_2i(n, d):
    pos = torch.arange(n, dtype=torch.float64)[:, None]
    angle = pos / 10000 ** (torch.arange(d // 2, dtype=torch.float64) / d)  # i/d
    return torch.stack([angle.sin(), angle.cos()], dim=-1).flatten(1)


def pe_dimension_loop(n, d):
    table = torch.zeros(n, d, dtype=torch.float64)
    for pos in range(n):
        for j in range(0, d, 2):
            table[pos, j] = math.sin(pos / 10000 ** (2 * j / d))
            table[pos, j + 1] = math.cos(pos / 10000 ** (2 * (j + 1) / d))
    return table


def pe_scalar_sum(n, d):
    pos = torch.arange(n, dtype=torch.float64)[:, None]
    return (pos / 10000 ** (2 * torch.arange(d // 2) / d)).sin().sum(-1)


def pe_sines_only(n, d):
    pos = torch.arange(n, dtype=torch.float64)[:, None]
    return (pos / 10000 ** (torch.arange(d, dtype=torch.float64) / d)).sin()  # no cosines


verdict("PE: sin/cos halves", check_pe_matches_paper, pe_halves, sinusoidal_table)
interleave = torch.arange(16).view(2, 8).T.flatten()  # column order 0, 8, 1, 9, ...
torch.testing.assert_close(pe_halves(50, 16)[:, interleave].float(), sinusoidal_table(50, 16))
check_pe_relative(pe_halves)
print("  …but equal to the paper's table after a fixed column permutation, and it keeps the "
      "relative-offset property: harmless, since the next layer is a learned linear map")

verdict("PE: exponent i/d instead of 2i/d", check_pe_matches_paper, pe_i_not_2i, sinusoidal_table)
check_pe_relative(pe_i_not_2i)
longest = 2 * math.pi * 10000 ** ((16 // 2 - 1) / 16)
print(f"  …still has the relative-offset property, but its longest wavelength at d = 16 is "
      f"{longest:.0f} positions instead of {2 * math.pi * 10000 ** (14 / 16):,.0f}: a different model")
# the table above quotes d = 512: about 620 positions for the i/d variant, about 60,600 for the paper
assert round(2 * math.pi * 10000 ** ((512 // 2 - 1) / 512), -1) == 620
assert round(2 * math.pi * 10000 ** (510 / 512), -2) == 60_600

verdict("PE: per-dimension loop", check_pe_relative, pe_dimension_loop, sinusoidal_table)
verdict("PE: sum of sines", check_pe_matches_paper, pe_scalar_sum, sinusoidal_table)
verdict("PE: sines only", check_pe_relative, pe_sines_only, sinusoidal_table)
assert pe_sines_only(5, 16)[0].abs().max() == 0  # position 0 is the zero vector

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 12. Learned positions sized by the vocabulary | 按词表大小建位置表
#
# One implementation creates its learned position table with one row per **vocabulary entry**
# and adds the whole table to every batch. Positions are indexed by the place in the sentence,
# up to a maximum length; the table must be sliced to the batch's length. The check: add
# positions to a batch of 10 tokens.

# %% slideshow={"slide_type": "-"}
def check_any_batch_length(add_positions):
    """Positions can be added to a batch of any length up to the maximum."""
    x = torch.randn(2, 10, 16)
    assert add_positions(x).shape == x.shape


vocabulary_sized = nn.Parameter(torch.zeros(1, 1000, 16))  # the misreading: 1000 = vocabulary
learned = LearnedPositionalEmbedding(16, max_len=64)
verdict("position table sized by the vocabulary", check_any_batch_length,
        lambda x: x + vocabulary_sized, lambda x: x + learned(x.size(1)))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 13. No padding mask in encoder-decoder attention | 交叉注意力缺少填充掩码
#
# A comparison table in one set of notes lists the encoder-decoder attention as "no mask". It
# needs no *causal* mask, but it does need the source **padding** mask: otherwise the
# translation of a sentence depends on how many padding tokens its batch happened to need. The
# check compares the decoder's *logits* (its scores for every possible next word, before the
# softmax) with and without padding.

# %% slideshow={"slide_type": "-"}
config = TransformerConfig.from_preset("tiny", dropout=0.0)
model = Transformer(config).eval()


def check_padding_invisible(translate_logits):
    """Appending padding to the source must not change the decoder's logits."""
    src = torch.randint(4, config.src_vocab_size, (1, 6))
    padded = torch.cat([src, torch.full((1, 4), config.pad_id)], dim=1)
    tgt_in = torch.tensor([[config.bos_id, 9, 10]])
    with torch.no_grad():
        gap = (translate_logits(src, tgt_in) - translate_logits(padded, tgt_in)).abs().max().item()
    assert gap < 1e-5, f"4 padding tokens change the logits by up to {gap:.3f}"


def cross_attention_without_mask(src, tgt_in):
    return model.decode(tgt_in, model.encode(src), src_mask=None)  # keys include the padding


verdict("no padding mask in cross-attention", check_padding_invisible,
        cross_attention_without_mask, model)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 14. Pre-norm without the final LayerNorm | 前置归一化却忘了最后的 LayerNorm
#
# Post-norm (the paper) ends every sub-layer with a LayerNorm, so the stack's output is
# normalised. Pre-norm normalises the *input* of each sub-layer and leaves the residual stream
# (the running sum `x + Sublayer(x) + …` that each layer adds to) itself growing with depth;
# it needs one extra LayerNorm at the end of each stack. Forgetting it (easy when converting a
# post-norm implementation) feeds an un-normalised, depth-dependent scale to the decoder and
# the output layer.

# %% slideshow={"slide_type": "-"}
def check_stack_output_normalised(transformer):
    """The encoder's output has unit scale per position, whatever the depth."""
    src = torch.randint(4, config.src_vocab_size, (4, 16))
    with torch.no_grad():
        scale = transformer.encode(src).std(-1).mean().item()
    assert 0.9 < scale < 1.1, f"encoder output std {scale:.2f} (expected ≈ 1)"


torch.manual_seed(0)
deep_pre_norm = Transformer(config.replace(n_layers=12, norm_first=True)).eval()
forgot_final_norm = copy.deepcopy(deep_pre_norm)
forgot_final_norm.encoder_norm = nn.Identity()
verdict("pre-norm without final LayerNorm", check_stack_output_normalised, forgot_final_norm,
        deep_pre_norm)
check_stack_output_normalised(Transformer(config.replace(n_layers=12)).eval())  # post-norm too

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 15. Toy numbers that do not add up | 对不上的示例数字
#
# A worked example in one set of notes gives scores `(2.0, 0.2, 1.0)` for three words and
# quotes the softmax as "roughly" `(0.62, 0.10, 0.28)`. The actual softmax is
# `(0.65, 0.11, 0.24)`. Small, but the example is about how the weights come out, so compute
# them. (The same example also skips the division by `√d_k`, which is fine only if the numbers
# are taken to be already scaled.)

# %% slideshow={"slide_type": "-"}
def check_quoted_weights(quoted):
    actual = torch.softmax(torch.tensor([2.0, 0.2, 1.0]), dim=0)
    gap = (torch.tensor(quoted) - actual).abs().max().item()
    assert gap < 0.005, f"quoted {quoted}, actual {[round(a, 2) for a in actual.tolist()]}"


actual = [round(w, 2) for w in torch.softmax(torch.tensor([2.0, 0.2, 1.0]), 0).tolist()]
assert actual == [0.65, 0.11, 0.24]  # the values the text gives
verdict("hand-computed softmax", check_quoted_weights, [0.62, 0.10, 0.28],
        [round(w, 3) for w in torch.softmax(torch.tensor([2.0, 0.2, 1.0]), 0).tolist()])

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Misreadings of the text | 对原文的误读
#
# Some errors are in the prose rather than the code. Each is followed by what the paper (or a
# measurement in these notebooks) says.
#
# | the notes say | what holds |
# |---|---|
# | the Transformer uses convolutional networks as its building block | Section 2 names ByteNet and ConvS2S as convolutional predecessors; the Transformer has neither recurrence nor convolution |
# | attention scores are `vᵀ tanh(W₁Q + W₂K + b)` | that is additive (Bahdanau) attention, which the paper mentions as the alternative it did *not* use; the Transformer uses scaled dot products |
# | an RNN needs `O(1)` memory | at inference it keeps one state; training must store a state per step: [notebook 01, "Time and memory on this machine"](01_background.ipynb#time-and-memory-on-this-machine--实测时间与内存) measured the LSTM's activation memory growing linearly in `n` |
# | dropout is applied to the attention weights | the paper describes dropout (zeroing a random fraction `P_drop` of the values during training) on each sub-layer's output and on the embedding sums (P_drop = 0.1); the package's `attn_dropout` defaults to 0 (checked below) |
# | sinusoids let a model trained on 512 tokens run on 1024 | *run*, yes: the table extends to any length, and [notebook 04, "Learned embeddings versus sinusoids"](04_positional_encoding.ipynb#learned-embeddings-versus-sinusoids-table-3-row-e--可学习位置嵌入与正弦编码) runs a sinusoidal model past its `max_len` where a learned table raises an error. *Work*, not shown: the paper only says sinusoids *may* help extrapolate, and in [notebook 04, "Positions beyond the training length"](04_positional_encoding.ipynb#positions-beyond-the-training-length--超出训练长度的位置) small copy models trained on short sequences fail on longer sequences with sinusoidal and learned positions alike |
# | a model without residual connections or LayerNorm (one note's "Transformer" stacks attention and linear layers only) | each sub-layer is `LayerNorm(x + Sublayer(x))`; [notebook 05, "Residual connections and LayerNorm"](05_full_model.ipynb#residual-connections-and-layernorm-post-norm-vs-pre-norm--残差连接与层归一化后置与前置) shows how much the normalisation placement alone changes gradients |
# | a reference list that gets the paper's author list wrong and repeats entries dozens of times | the authors are Vaswani, Shazeer, Parmar, Uszkoreit, Jones, Gomez, Kaiser and Polosukhin (arXiv:1706.03762): check generated references against the source |
# | the model is called 变压器 | that word is the electrical transformer; Chinese texts usually keep the English name "Transformer" |
#
# **Takeaway:** read the paper, then test the property; a plausible sentence in a summary is not
# evidence.

# %% slideshow={"slide_type": "-"}
default_attn_dropout = TransformerConfig.__dataclass_fields__["attn_dropout"].default
base_attn_dropout = TransformerConfig.from_preset("base").attn_dropout
print(f"the package's attn_dropout: default {default_attn_dropout}, base preset {base_attn_dropout}")
assert default_attn_dropout == base_attn_dropout == 0.0  # as the table says

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Summary | 总结

# %% slideshow={"slide_type": "-"}
# NBVAL_CHECK_OUTPUT
summary = pd.DataFrame(results)
print(f"{len(summary)} misreadings, each failing a check the package passes:")
print(summary.to_string(index=False))
assert summary["misreading fails"].all() and summary["package passes"].all()
assert len(summary) >= 15

# %% slideshow={"slide_type": "subslide"}
slowest = max(check_seconds, key=check_seconds.get)
display(Markdown(
    f"The code above reproduces {len(summary)} misreadings, each caught by one of "
    f"{summary['check'].nunique()} different checks; the table of misreadings of the text adds "
    "those that are not code. On the package's implementation the "
    f"slowest check, `{slowest}`, took {1e3 * check_seconds[slowest]:.0f} ms on this machine, "
    f"and all {len(check_seconds)}, each run once, {1e3 * sum(check_seconds.values()):.0f} ms "
    "in total."))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Exercises | 练习
#
# 1. Write `check_causal` for the package's full `Transformer` (change one target token, compare
#    the logits) and run it on a model whose decoder self-attention you patch to `is_causal=False`.
# 2. The "exponent `i/d`" encoding passes `check_pe_relative`. Design a check that tells it apart
#    from the paper's table without comparing to the formula directly (hint: how similar are
#    `PE(0)` and `PE(600)`?).
# 3. Find a misreading in these notebooks' own simplifications (for example, the hand-built
#    pronoun example in
#    [notebook 02, "It was too tired / too wide"](02_attention.ipynb#it-was-too-tired--too-wide-what-attention-computes--指代消解的例子))
#    and write the check that would expose it.
