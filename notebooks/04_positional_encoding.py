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
# # Positional encoding | 位置编码
#
# **What you will learn**
#
# - why self-attention, left alone, cannot tell "dog bites man" from "man bites dog";
# - what the sinusoid table of Section 3.5 looks like, and what its wavelengths are;
# - the property that motivated it, checked numerically: moving `k` positions along is a
#   rotation `M_k` that does not depend on where you start;
# - how learned position embeddings (Table 3 row E) compare: same quality in the paper, but a
#   hard length limit, which the package reports with a clear error;
# - the four families of positional information in use today: absolute sinusoidal, absolute
#   learned, relative, and rotary (RoPE).

# %% slideshow={"slide_type": "-"}
import math

import matplotlib.pyplot as plt
import numpy as np
import torch

from transformer import (
    LearnedPositionalEmbedding,
    MultiHeadAttention,
    SinusoidalPositionalEncoding,
    Transformer,
    TransformerConfig,
    sinusoidal_table,
)
from transformer.apps.profiles import banner
from transformer.apps.viz import save_figure

torch.set_num_threads(1)  # small workloads: one thread is fastest and unaffected by other jobs
torch.manual_seed(0)
print(banner())

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Attention ignores order | 注意力本身不区分顺序
#
# Self-attention compares every position with every other by content only. Shuffle the input
# and the output is shuffled the same way, nothing else changes: the layer is *permutation
# equivariant*. Adding a different vector to each position breaks the symmetry.

# %% slideshow={"slide_type": "-"}
layer = MultiHeadAttention(d_model=16, n_heads=2, d_k=8, d_v=8).eval()
x = torch.randn(1, 6, 16)  # six "words"
perm = torch.tensor([3, 0, 5, 1, 4, 2])
with torch.no_grad():
    shuffled_then_attend = layer(x[:, perm], x[:, perm], x[:, perm])[0]
    attend_then_shuffle = layer(x, x, x)[0][:, perm]
    pe = sinusoidal_table(6, 16)
    with_positions = layer(x[:, perm] + pe, x[:, perm] + pe, x[:, perm] + pe)[0]
    without_shuffle = (layer(x + pe, x + pe, x + pe)[0])[:, perm]
torch.testing.assert_close(shuffled_then_attend, attend_then_shuffle)
gap = (with_positions - without_shuffle).abs().max().item()
print(f"without positions, shuffling commutes with attention (difference 0); with positions "
      f"added, the outputs differ by up to {gap:.2f}")
assert gap > 0.01  # order now matters

# %% [markdown] slideshow={"slide_type": "-"}
# **Takeaway:** without positional information a Transformer sees a bag of words. The encoding
# is added to the token embeddings at the bottom of both stacks.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## The sinusoid table | 正弦位置编码表
#
# $$PE_{(pos,\,2i)} = \sin\!\big(pos / 10000^{2i/d_{model}}\big), \qquad
#   PE_{(pos,\,2i+1)} = \cos\!\big(pos / 10000^{2i/d_{model}}\big)$$
#
# Here `i` numbers the **pairs** of dimensions (`i = 0 … d_model/2 - 1`), not the dimensions:
# dimensions `2i` and `2i+1` share one frequency `ω_i = 10000^(-2i/d_model)`, one holding the
# sine and the other the cosine. Wavelengths `2π/ω_i` grow geometrically from `2π` towards
# `10000 · 2π` (the last pair, `i = d_model/2 - 1`, stops just short of it). We check the package's table against the formula written out literally.

# %% slideshow={"slide_type": "-"}
d_model, n_pos = 128, 100
table = sinusoidal_table(n_pos, d_model)
literal = np.zeros((n_pos, d_model))
for pos in range(n_pos):
    for i in range(d_model // 2):
        literal[pos, 2 * i] = math.sin(pos / 10000 ** (2 * i / d_model))
        literal[pos, 2 * i + 1] = math.cos(pos / 10000 ** (2 * i / d_model))
np.testing.assert_allclose(table.numpy(), literal, atol=1e-6)
wavelengths = 2 * math.pi * 10000 ** (np.arange(0, d_model, 2) / d_model)
print(f"table shape {tuple(table.shape)}; wavelengths of the {d_model // 2} pairs range from "
      f"{wavelengths[0]:.2f} to {wavelengths[-1]:,.0f} positions")
assert math.isclose(wavelengths[0], 2 * math.pi)
assert len(wavelengths) == 64  # the "64 different speeds" of the text below

# %% slideshow={"slide_type": "subslide"}
fig, axes = plt.subplots(1, 2, figsize=(14, 4.5), gridspec_kw={"width_ratios": [1.3, 1]})
image = axes[0].imshow(table.T, aspect="auto", cmap="RdBu", vmin=-1, vmax=1, origin="lower",
                       interpolation="nearest")
axes[0].set(title=f"Sinusoidal positional encoding, d_model = {d_model}",
            xlabel="position pos (tokens)", ylabel="dimension (2i: sine, 2i+1: cosine)")
fig.colorbar(image, ax=axes[0], label="PE value (unitless)")
for dim in (10, 11, 30, 60):
    axes[1].plot(table[:, dim], ".-", ms=3, label=f"dim {dim} ({'sin' if dim % 2 == 0 else 'cos'}, "
                                      f"wavelength {wavelengths[dim // 2]:.0f})")
axes[1].set(title="Single dimensions: each pair has its own frequency",
            xlabel="position pos (tokens)", ylabel="PE value (unitless)")
axes[1].legend(fontsize=8, loc="lower left")
fig.tight_layout()
save_figure(fig, "04_sinusoid_table")
plt.show()

# %% [markdown] slideshow={"slide_type": "-"}
# Low dimensions oscillate quickly and tell neighbours apart; high dimensions change slowly and
# tell the beginning of a long sentence from its end. Together they act like the digits of a
# clock with hands turning at 64 different speeds.
#
# **Takeaway:** each pair of dimensions is a point on a circle turning at its own speed as the
# position grows; the table needs no training and exists for every position.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Relative offsets are rotations | 相对位移就是旋转
#
# The paper chose sinusoids because "for any fixed offset `k`, `PE(pos+k)` can be represented
# as a linear function of `PE(pos)`". The angle-addition formulas give that function: each
# (sin, cos) pair is rotated by the angle `ω_i k`,
#
# $$\begin{pmatrix}\sin\omega_i(p+k)\\ \cos\omega_i(p+k)\end{pmatrix} =
#   \begin{pmatrix}\cos\omega_i k & \sin\omega_i k\\ -\sin\omega_i k & \cos\omega_i k\end{pmatrix}
#   \begin{pmatrix}\sin\omega_i p\\ \cos\omega_i p\end{pmatrix},$$
#
# so `M_k` is block-diagonal with 2×2 rotations, and `pos` appears nowhere in it.


# %% slideshow={"slide_type": "-"}
def rotation_for_offset(k, d):
    """Block-diagonal M_k with PE(pos + k) = M_k PE(pos) for every pos."""
    omega = 10000 ** (-torch.arange(0, d, 2, dtype=torch.float64) / d)
    m = torch.zeros(d, d, dtype=torch.float64)
    for i, angle in enumerate(omega * k):
        m[2 * i:2 * i + 2, 2 * i:2 * i + 2] = torch.tensor(
            [[math.cos(angle), math.sin(angle)], [-math.sin(angle), math.cos(angle)]])
    return m


long_table = sinusoidal_table(1000, d_model).double()
for k in (1, 7, 50, 300):
    m_k = rotation_for_offset(k, d_model)
    predicted = long_table[:-k] @ m_k.T  # M_k applied to every position at once
    error = (predicted - long_table[k:]).abs().max().item()
    assert error < 1e-5, (k, error)  # one matrix serves all positions 0 … 999 - k
    assert torch.allclose(m_k @ m_k.T, torch.eye(d_model, dtype=torch.float64))  # a rotation
    print(f"k = {k:>3}: max |M_k PE(pos) - PE(pos + k)| over {1000 - k} positions = {error:.1e}")
assert torch.allclose(rotation_for_offset(3, d_model) @ rotation_for_offset(4, d_model),
                      rotation_for_offset(7, d_model))  # offsets compose: M_3 M_4 = M_7

# %% [markdown] slideshow={"slide_type": "-"}
# A consequence: the dot product `PE(p) · PE(p + k) = Σ_i cos(ω_i k)` depends on the offset `k`
# only. The similarity matrix of all positions is therefore constant along its diagonals (a
# Toeplitz matrix), largest on the diagonal and decaying (with ripples) as positions separate.

# %% slideshow={"slide_type": "subslide"}
similarity = (table @ table.T).numpy()
for k in (1, 10, 40):
    diagonal = np.diagonal(similarity, offset=k)
    assert np.ptp(diagonal) < 1e-3  # the same value all along the k-th diagonal
assert similarity[0, 0] > similarity[0, 1] > similarity[0, 5]  # nearby positions are similar

learned = LearnedPositionalEmbedding(d_model, max_len=n_pos)
with torch.no_grad():
    learned_table = learned(n_pos)
    learned_similarity = (learned_table @ learned_table.T).numpy()

fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
for ax, sim, title in [(axes[0], similarity, "Sinusoids: depends only on pos' - pos"),
                       (axes[1], learned_similarity, "Learned table at initialisation: no structure")]:
    image = ax.imshow(sim / sim.max(), cmap="viridis", vmin=-0.3, vmax=1, interpolation="nearest")
    ax.set(title=title, xlabel="position pos' (tokens)", ylabel="position pos (tokens)")
    fig.colorbar(image, ax=ax, label="PE(pos)·PE(pos') / max (unitless)")
fig.suptitle("Similarity between the encodings of two positions")
fig.tight_layout()
save_figure(fig, "04_position_similarity")
plt.show()

# %% [markdown] slideshow={"slide_type": "-"}
# **Takeaway:** with sinusoids, "k positions further" is the same rotation everywhere in the
# sentence, so a layer can learn relative offsets with one linear map. A freshly initialised
# learned table has no notion of nearness at all; it must learn it from data.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Learned embeddings versus sinusoids (Table 3, row E) | 可学习位置嵌入与正弦编码
#
# Row E replaces the sinusoids by a trained vector per position, as BERT and GPT-2 later did.
# The paper reports nearly identical results (development set, base model):
#
# | positions | PPL | BLEU |
# |---|---|---|
# | sinusoidal (base) | 4.92 | 25.8 |
# | learned (row E) | 4.92 | 25.7 |
#
# The differences are elsewhere: a learned table costs `max_len × d_model` parameters per stack,
# and it simply has no row for positions beyond `max_len`. The package refuses such inputs with
# an explicit message rather than failing somewhere inside `nn.Embedding`.

# %% slideshow={"slide_type": "-"}
base_row_e = TransformerConfig.from_preset("E")
extra = 2 * base_row_e.max_len * base_row_e.d_model  # one table per stack
print(f"row E adds {extra:,} parameters ({base_row_e.max_len} positions x {base_row_e.d_model} "
      "dimensions x 2 stacks)")
assert sum(p.numel() for p in LearnedPositionalEmbedding(512, 1024).parameters()) * 2 == extra

config = TransformerConfig.from_preset("tiny", dropout=0.0, max_len=32)
learned_model = Transformer(config.replace(positional="learned")).eval()
sinusoid_model = Transformer(config).eval()
long_src = torch.randint(4, config.src_vocab_size, (1, 50))  # longer than max_len = 32
tgt_in = torch.tensor([[config.bos_id]])
try:
    learned_model(long_src, tgt_in)
    raise AssertionError("expected a ValueError")
except ValueError as error:
    message = str(error)
print("learned positions, 50 tokens, max_len 32 ->", message)
assert "beyond the learned table" in message and "max_len=32" in message

with torch.no_grad():
    logits = sinusoid_model(long_src, tgt_in)
extended = SinusoidalPositionalEncoding(config.d_model, max_len=32)(length=50)
torch.testing.assert_close(extended, sinusoidal_table(50, config.d_model))
print(f"sinusoidal positions, 50 tokens, max_len 32 -> logits of shape {tuple(logits.shape)}; "
      "the table grew to 50 rows, identical to a table built for 50")

# %% [markdown] slideshow={"slide_type": "subslide"}
# A caution about the word "extrapolate". The sinusoid table *exists* for position 500, but a
# model trained on short sentences has never combined such encodings with words; the paper
# only says sinusoids "may allow the model to extrapolate". Whether translation quality holds
# on sentences longer than any seen in training is an empirical question:
# [notebook 07, "Quality by sentence length"](07_results.ipynb#quality-by-sentence-length--按句长看质量)
# breaks BLEU down by source length for the model trained in
# [notebook 06, "A real training run"](06_training.ipynb#a-real-training-run--一次真实的训练).
#
# **Takeaway:** learned and sinusoidal positions score the same in the paper; sinusoids cost no
# parameters and are defined for every length, learned tables stop at `max_len`.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Four kinds of positional information | 四种位置编码
#
# | kind | where position enters | parameters | longer than training? | used by |
# |---|---|---|---|---|
# | absolute sinusoidal | added to the input embeddings | none | table defined; quality not guaranteed | this paper |
# | absolute learned | added to the input embeddings | `max_len × d` | impossible beyond `max_len` | row E, BERT, GPT-2 |
# | relative | inside attention: a term depending on `i - j` added to the scores (or keys) | one bias or vector per clipped offset | yes, offsets are clipped | Shaw et al. 2018, Transformer-XL, T5 |
# | rotary (RoPE) | inside attention: rotate `q` and `k` by angles proportional to their positions | none | defined; often extended by rescaling the angles | RoFormer, LLaMA and most recent LLMs |
#
# The last two put position where it is used: in the comparison between a query and a key. Both
# make the score depend on the offset `i - j` and not on absolute positions. We check that
# property on all three families, with the same content vectors placed at positions
# `(m, n)` and shifted to `(m + s, n + s)`.

# %% slideshow={"slide_type": "-"}
d = 64
W_q, W_k = torch.randn(d, d) / d**0.5, torch.randn(d, d) / d**0.5
content_q, content_k = torch.randn(d), torch.randn(d)
pe_table = sinusoidal_table(200, d)


def absolute_score(m, n):
    """Sinusoids added to the input, then projected (the paper)."""
    return ((content_q + pe_table[m]) @ W_q) @ ((content_k + pe_table[n]) @ W_k)


relative_bias = torch.randn(2 * 16 + 1)  # one learned scalar per offset, clipped to ±16


def relative_score(m, n):
    """Content score plus a bias looked up by the clipped offset (T5-style)."""
    offset = max(-16, min(16, n - m))
    return (content_q @ W_q) @ (content_k @ W_k) + relative_bias[offset + 16]


def rotate(x, position):
    """RoPE: rotate each pair (2i, 2i+1) of x by the angle position · ω_i."""
    omega = 10000 ** (-torch.arange(0, x.size(-1), 2) / x.size(-1))
    cos, sin = torch.cos(position * omega), torch.sin(position * omega)
    even, odd = x[..., 0::2], x[..., 1::2]
    return torch.stack([even * cos - odd * sin, even * sin + odd * cos], dim=-1).flatten(-2)


def rotary_score(m, n):
    return rotate(content_q @ W_q, m) @ rotate(content_k @ W_k, n)


# RoPE in complex form: multiplying the pair (a, b) = a + ib by e^{i·pos·ω}
z = torch.view_as_complex((content_q @ W_q).view(-1, 2).contiguous())
omega = 10000 ** (-torch.arange(0, d, 2) / d)
torch.testing.assert_close(torch.view_as_real(z * torch.exp(1j * 9 * omega)).flatten(),
                           rotate(content_q @ W_q, 9))

# %% slideshow={"slide_type": "-"}
# NBVAL_CHECK_OUTPUT
print(f"{'scheme':<22}{'score(3, 10)':>14}{'score(103, 110)':>17}  depends only on n - m?")
shift_invariant = {}
for name, score in [("absolute sinusoidal", absolute_score), ("relative bias", relative_score),
                    ("rotary (RoPE)", rotary_score)]:
    a, b = score(3, 10).item(), score(103, 110).item()
    shift_invariant[name] = math.isclose(a, b, rel_tol=1e-4, abs_tol=1e-4)
    print(f"{name:<22}{a:>14.2f}{b:>17.2f}  {shift_invariant[name]}")
assert shift_invariant == {"absolute sinusoidal": False, "relative bias": True,
                           "rotary (RoPE)": True}

# %% [markdown] slideshow={"slide_type": "subslide"}
# With absolute encodings the same two words get a different score when the pair moves along
# the sentence (the model must learn to undo that, and the rotation property above is what
# makes it learnable). Relative biases and rotary embeddings make the score a function of the
# offset by construction, which is one reason later models adopted them.
#
# **Takeaway:** absolute encodings (sinusoidal or learned) are added once at the input;
# relative and rotary encodings act inside every attention layer and build in shift invariance.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Exercises | 练习
#
# 1. Build `M_k` for `k = -3`. How is it related to `M_3`? Check numerically.
# 2. Replace `10000` by `100` in the table. What is the longest wavelength now, and beyond which
#    position do two positions start to share (almost) the same encoding?
# 3. Change `rotate` to rotate by `position * omega` only on the query (not the key). Is the score
#    still shift-invariant? Why does RoPE rotate both?
# 4. The paper adds the encoding to `√d_model`-scaled embeddings
#    ([notebook 05, "Embeddings: weight tying and √d_model"](05_full_model.ipynb#embeddings-weight-tying-and-d_model--嵌入权重共享与-d_model-缩放)).
#    Compute the norm of a row of the sinusoid table for `d_model = 512`. Why does that make the
#    scaling sensible?
