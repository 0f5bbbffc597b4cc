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
# - why self-attention, left alone, cannot tell "dog bites man" from "man bites dog", checked
#   on one attention layer and on the package's whole encoder;
# - what the sinusoid table of Section 3.5 looks like, and what its wavelengths are;
# - the property that motivated it, checked numerically: moving `k` positions along is a
#   rotation `M_k` that does not depend on where you start, and why this needs sines *and*
#   cosines;
# - how learned position embeddings (Table 3 row E) compare: nearly identical quality in the
#   paper, but a hard length limit, which the package reports with a clear error;
# - what happens, measured on two small trained models, when a sequence is longer than any seen
#   in training;
# - the four families of positional information in use today: absolute sinusoidal, absolute
#   learned, relative, and rotary (RoPE).

# %% slideshow={"slide_type": "-"}
import copy
import math
import time

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
from IPython.display import Markdown, display

from transformer import (
    LearnedPositionalEmbedding,
    MultiHeadAttention,
    SinusoidalPositionalEncoding,
    Transformer,
    TransformerConfig,
    greedy_decode,
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
order_gap = (shuffled_then_attend - attend_then_shuffle).abs().max().item()
gap = (with_positions - without_shuffle).abs().max().item()
print("one attention layer, largest |attend(shuffled x) - shuffled attend(x)|:\n"
      f"  without positions {order_gap:.1e}\n  with positions added {gap:.2f}")
assert order_gap < 1e-5  # equal up to float32 rounding
assert gap > 0.01  # order now matters

# %% [markdown] slideshow={"slide_type": "-"}
# One layer is not the whole story: could the rest of the encoder recover the order? No. Every
# other part of an encoder layer works on each position separately (the feed-forward network,
# the residual sums, and LayerNorm, which rescales each position's vector to mean 0 and
# variance 1), so it, too, commutes with a shuffle, and so does a stack of such layers. We
# check it on the package's own `Transformer` with the paper's depth (N = 6 layers per stack,
# narrow widths): one copy keeps its sinusoids, the other gets a stand-in module that adds
# nothing, with the weights otherwise identical. We shuffle the 9 source tokens and compare.

# %% slideshow={"slide_type": "-"}
class NoPositions(torch.nn.Module):
    """Stands in for the positional encoding: adds zero at every position."""

    def forward(self, length, offset=0):
        return torch.zeros(length, 1)  # broadcasts over d_model


torch.manual_seed(0)
stack_config = TransformerConfig.from_preset("tiny", n_layers=6, dropout=0.0)
with_pe = Transformer(stack_config).eval()
without_pe = copy.deepcopy(with_pe)  # the same weights
without_pe.src_pos, without_pe.tgt_pos = NoPositions(), NoPositions()

src = torch.randint(4, stack_config.src_vocab_size, (1, 9))
shuffle = torch.randperm(9)
tgt_in = torch.tensor([[stack_config.bos_id, 5, 6]])  # a fixed target prefix
stack_gaps = {}
with torch.no_grad():
    for name, model in [("no positions", without_pe), ("sinusoids", with_pe)]:
        encoder_gap = (model.encode(src[:, shuffle]) - model.encode(src)[:, shuffle]).abs().max()
        logits_gap = (model(src[:, shuffle], tgt_in) - model(src, tgt_in)).abs().max()
        stack_gaps[name] = (encoder_gap.item(), logits_gap.item())
print(f"{stack_config.n_layers}-layer encoder, 9 source tokens shuffled:")
for name, (encoder_gap, logits_gap) in stack_gaps.items():
    print(f"  {name:<13} largest |encode(shuffled) - shuffled encode| = {encoder_gap:.1e}; "
          f"largest change of the decoder's logits = {logits_gap:.1e}")
assert max(stack_gaps["no positions"]) < 1e-4  # equal up to float32 rounding
assert min(stack_gaps["sinusoids"]) > 0.1  # with positions, the shuffle changes everything

# %% slideshow={"slide_type": "-"}
(encoder_gap, logits_gap), (pe_encoder_gap, pe_logits_gap) = stack_gaps.values()
display(Markdown(
    f"Without positions the whole {stack_config.n_layers}-layer encoder only moves its outputs "
    f"along with the shuffle: they agree to within {encoder_gap:.0e}, float32 rounding. The "
    f"decoder's logits (its scores for the next word) change by at most {logits_gap:.0e}: "
    "cross-attention sums over the source positions, and a sum does not depend on the order of "
    "its terms, so the model would translate \"dog bites man\" and \"man bites dog\" "
    f"identically. With sinusoids the same shuffle changes the encoder's output by up to "
    f"{pe_encoder_gap:.1f} and the logits by up to {pe_logits_gap:.1f}."))

# %% [markdown] slideshow={"slide_type": "subslide"}
# **Takeaway:** without positional information a Transformer sees a bag of words, in every
# layer, not just the first. The encoding is added to the token embeddings at the bottom of both
# stacks.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## The sinusoid table | 正弦位置编码表
#
# $$PE_{(pos,\,2i)} = \sin\!\big(pos / 10000^{2i/d_{model}}\big), \qquad
#   PE_{(pos,\,2i+1)} = \cos\!\big(pos / 10000^{2i/d_{model}}\big)$$
#
# Here `i` numbers the **pairs** of dimensions (`i = 0 … d_model/2 - 1`), not the dimensions:
# dimensions `2i` and `2i+1` share one frequency `ω_i = 10000^(-2i/d_model)`, one holding the
# sine and the other the cosine. Wavelengths `2π/ω_i` grow geometrically from `2π` towards
# `10000 · 2π` (the last pair, `i = d_model/2 - 1`, stops below it). We check the package's table against the formula written out literally.

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
# ## Why sines and cosines in pairs | 为什么正弦与余弦要成对
#
# Would sines alone do? Take two all-sine tables: **(a)** a sine in every dimension `j`, each
# with its own frequency `10000^(-j/d_model)` (the same range of wavelengths as the paper), and
# **(b)** the paper's pairs with the cosine replaced by a second sine. The angle-addition
# formula shows what goes wrong: `sin ω(p + k) = sin(ωp) cos(ωk) + cos(ωp) sin(ωk)` needs
# `cos(ωp)`, which neither table contains.
#
# Instead of deriving `M_k`, we let the data find the best one: **least squares** picks the
# matrix `M` that makes `PE(pos) M` as close as possible to `PE(pos + k)` over all positions
# 0 … 999 (smallest sum of squared errors; `torch.linalg.lstsq`). What it cannot explain is the
# *relative residual* `‖PE(pos) M − PE(pos + k)‖ / ‖PE(pos + k)‖`: 0 when one linear map
# serves every position, 1 when the map explains nothing.

# %% slideshow={"slide_type": "-"}
positions = torch.arange(1000, dtype=torch.float64)[:, None]
dims = torch.arange(d_model, dtype=torch.float64)
encodings = {
    "sin/cos pairs (the paper)": sinusoidal_table(1000, d_model).double(),
    "(a) sine, own frequency per dim": torch.sin(positions * 10000 ** (-dims / d_model)),
    "(b) sine in both dims of a pair": torch.sin(positions * 10000 ** (-(dims // 2 * 2) / d_model)),
}
offsets = (1, 7, 50, 300)


def offset_residual(pe, k):
    """Relative residual of the best linear map from PE(pos) to PE(pos + k)."""
    before, after = pe[:-k], pe[k:]
    m = torch.linalg.lstsq(before, after, driver="gelsd").solution
    return ((before @ m - after).norm() / after.norm()).item()


residuals = {name: [offset_residual(pe, k) for k in offsets] for name, pe in encodings.items()}
norms = {name: pe.norm(dim=1) for name, pe in encodings.items()}
print(f"{'encoding':<34}" + "".join(f"{'k = ' + str(k):>10}" for k in offsets)
      + f"{'|PE(0)|':>9}{'|PE(pos)|, pos 0-999':>22}")
for name, row in residuals.items():
    print(f"{name:<34}" + "".join(f"{r:>10.1e}" for r in row)
          + f"{norms[name][0]:>9.2f}{norms[name].min():>12.2f} to {norms[name].max():.2f}")
print("(the k columns: relative residual of the best linear map PE(pos) -> PE(pos + k))")
paired, *all_sine = residuals.values()
assert max(paired) < 1e-6  # one linear map per offset, up to the table's float32 rounding
assert min(min(row) for row in all_sine) > 0.1  # no linear map does the job
assert all(norms[name][0] == 0 for name in list(encodings)[1:])  # position 0 is the zero vector

# %% slideshow={"slide_type": "-"}
worst = max(max(row) for row in all_sine)
best = min(min(row) for row in all_sine)
display(Markdown(
    f"For the paper's pairs the best linear map leaves a relative residual of at most "
    f"{max(paired):.0e}, the float32 rounding of the table: `M_k` exists. For both all-sine "
    f"tables it leaves between {best:.0%} and {worst:.0%} of the shifted table unexplained, at "
    "every offset tried. Two more defects show in the last columns: `sin 0 = 0` in every "
    "dimension, so position 0 is encoded as the zero vector and the first word gets no position "
    f"at all; and the length of the encoding varies with the position (table (a): "
    f"{norms[list(encodings)[1]].min():.2f} to {norms[list(encodings)[1]].max():.2f}), whereas "
    f"each (sin, cos) pair lies on a circle of radius 1, so every row of the paper's table has "
    f"length √(d_model/2) = {math.sqrt(d_model / 2):.0f}."))

# %% [markdown] slideshow={"slide_type": "-"}
# **Takeaway:** the cosine is what turns "k positions further" into a rotation. With sines
# alone, no single matrix shifts every position by `k`, and position 0 is encoded as nothing.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Learned embeddings versus sinusoids (Table 3, row E) | 可学习位置嵌入与正弦编码
#
# Row E replaces the sinusoids by a trained vector per position (an `nn.Embedding`, PyTorch's
# lookup table with one trainable row per index), as the later pre-trained models BERT and
# GPT-2 did. The paper found "nearly identical results". Table 3 scores the base model on the
# development set (newstest2013: held-out sentences used to compare settings, not the final
# test set) by **PPL**, perplexity, `exp` of the average per-token cross-entropy: roughly how
# many words the model is hesitating between, lower is better; and by **BLEU**, the share of
# 1- to 4-word sequences the translation has in common with a human reference (0–100, higher is
# better).

# %% slideshow={"slide_type": "-"}
table3_row_e = {"sinusoidal (base)": {"PPL": 4.92, "BLEU": 25.8},  # the paper's Table 3
                "learned (row E)": {"PPL": 4.92, "BLEU": 25.7}}
sinusoid_scores, learned_scores = table3_row_e.values()
ppl_gap = abs(sinusoid_scores["PPL"] - learned_scores["PPL"])
bleu_gap = abs(sinusoid_scores["BLEU"] - learned_scores["BLEU"])
row_e_verdict = (f"{'the same' if ppl_gap == 0 else f'{ppl_gap:.2f} apart in'} perplexity and "
                 f"{bleu_gap:.1f} BLEU apart")
display(Markdown(
    "| positions | PPL | BLEU |\n|---|---|---|\n"
    + "\n".join(f"| {name} | {v['PPL']:.2f} | {v['BLEU']:.1f} |" for name, v in table3_row_e.items())
    + f"\n\nNearly identical: {row_e_verdict}. The differences are elsewhere: a learned table "
    "costs `max_len × d_model` parameters per stack, and it simply has no row for positions "
    "beyond `max_len`. The package refuses such inputs with an explicit message rather than "
    "failing somewhere inside `nn.Embedding`."))
assert ppl_gap == 0 and bleu_gap < 0.15  # what "nearly identical" stands for here

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

# %% slideshow={"slide_type": "-"}
display(Markdown(
    f"**Takeaway:** learned and sinusoidal positions do nearly identically in the paper "
    f"({row_e_verdict}); sinusoids cost no parameters and are defined for every length, learned "
    "tables stop at `max_len`. *Defined* is not *working*: whether a model uses positions it "
    "never saw in training is measured in the next section."))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Positions beyond the training length | 超出训练长度的位置
#
# The paper chose sinusoids partly because they "may allow the model to extrapolate to sequence
# lengths longer than the ones encountered during training". We test that on a small scale.
# Two copies of one small Transformer from the package (1 layer per stack, `d_model = 32`,
# 2 heads) learn to **copy** sequences of 1 to 8 random symbols (10 symbols; the `copy` task of
# `transformer.data.tasks`, drawn here directly as token ids): one with sinusoidal positions,
# one with a learned table. Same seed, same batches, 400 steps each of the Adam optimiser
# (gradient descent with a step size adapted per weight; notebook 06 trains with it). Then
# both copy sequences of 1 to 16 symbols. The learned table gets 18 rows so that the model can
# run at all on 16 symbols; rows that training never reached keep their random initial values.
#
# Two measures, each on 200 test sequences:
#
# - **exact match**, with **greedy decoding**: the model writes its most probable next token,
#   reads it back, and repeats until it writes the end-of-sequence token EOS; a sequence counts
#   only if every symbol and the stop are right;
# - **accuracy per position** on 16-symbol inputs with **teacher forcing**: as in training, the
#   decoder is given the correct previous symbols, and we ask which of the 10 symbols it ranks
#   first at each position (EOS left out, so a model that would rather stop still names the
#   symbol it would copy). Guessing gets 1 in 10.

# %% slideshow={"slide_type": "-"}
TRAIN_LEN, TEST_LEN, N_SYMBOLS, STEPS = 8, 16, 10, 400
copy_config = TransformerConfig.from_preset(
    "tiny", n_layers=1, d_model=32, d_ff=64, n_heads=2, dropout=0.0, max_len=TEST_LEN + 2,
    src_vocab_size=4 + N_SYMBOLS, tgt_vocab_size=4 + N_SYMBOLS)  # ids 0-3: pad, BOS, EOS, unk
assert max(copy_config.pad_id, copy_config.bos_id, copy_config.eos_id, copy_config.unk_id) < 4
assert (copy_config.n_layers, copy_config.d_model, copy_config.n_heads, copy_config.max_len) == (
    1, 32, 2, 18)  # as the text says


def copy_batch(n, shortest, longest, generator):
    """n random symbol sequences of lengths in [shortest, longest]: (source, target)."""
    lengths = torch.randint(shortest, longest + 1, (n,), generator=generator)
    width = int(lengths.max())
    symbols = torch.randint(4, 4 + N_SYMBOLS, (n, width), generator=generator)
    src = symbols.masked_fill(torch.arange(width) >= lengths[:, None], copy_config.pad_id)
    tgt = torch.full((n, width + 2), copy_config.pad_id)  # BOS, the symbols, EOS, padding
    tgt[:, 0], tgt[:, 1:width + 1] = copy_config.bos_id, src
    tgt[torch.arange(n), lengths + 1] = copy_config.eos_id
    return src, tgt


copy_models, initial_tables, copy_seconds = {}, {}, {}
for kind in ("sinusoidal", "learned"):
    torch.manual_seed(0)
    batches = torch.Generator().manual_seed(0)
    model = Transformer(copy_config.replace(positional=kind))
    initial_tables[kind] = copy.deepcopy(model.src_pos.state_dict())
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-3, betas=(0.9, 0.98))
    start = time.perf_counter()
    for _step in range(STEPS):
        src, tgt = copy_batch(64, 1, TRAIN_LEN, batches)
        logits = model(src, tgt[:, :-1])
        loss = F.cross_entropy(logits.flatten(0, 1), tgt[:, 1:].flatten(),
                               ignore_index=copy_config.pad_id)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    copy_seconds[kind] = time.perf_counter() - start
    copy_models[kind] = model.eval()
    print(f"{kind:<10} positions: final training loss {loss.item():.3f} nats per token "
          f"({STEPS} steps, {copy_seconds[kind]:.1f} s)")

# %% slideshow={"slide_type": "subslide"}
exact_match, per_position, stops_early = {}, {}, {}
for kind, model in copy_models.items():
    tests = torch.Generator().manual_seed(1)  # the same test sequences for both models
    exact_match[kind] = []
    with torch.no_grad():
        for length in range(1, TEST_LEN + 1):
            src, tgt = copy_batch(200, length, length, tests)
            out = greedy_decode(model, src, max_len=length + 1)  # symbols and EOS
            want = tgt[:, 1:length + 2]
            got = torch.full_like(want, -1)
            got[:, :out.size(1)] = out[:, :want.size(1)]
            exact_match[kind].append((got == want).all(1).float().mean().item())
        # the last batch holds TEST_LEN symbols: teacher-forced accuracy at each position
        symbol_logits = model(src, tgt[:, :-1])[:, :TEST_LEN, 4:]
        per_position[kind] = ((symbol_logits.argmax(-1) + 4) == src).float().mean(0).numpy()
        stops_early[kind] = (out[:, :TEST_LEN] == copy_config.eos_id).any(1).float().mean().item()

# rows of the learned table that training never reached are exactly as initialised
learned_rows = copy_models["learned"].src_pos.embedding.weight.detach()
initial_rows = initial_tables["learned"]["embedding.weight"]
assert torch.equal(learned_rows[TRAIN_LEN:], initial_rows[TRAIN_LEN:])
assert not torch.equal(learned_rows[:TRAIN_LEN], initial_rows[:TRAIN_LEN])

fig, axes = plt.subplots(1, 2, figsize=(13, 4.3))
lengths = np.arange(1, TEST_LEN + 1)
for kind, marker in (("sinusoidal", "o-"), ("learned", "s--")):
    axes[0].plot(lengths, exact_match[kind], marker, label=f"{kind} positions")
    axes[1].plot(lengths, per_position[kind], marker, label=f"{kind} positions")
axes[1].axhline(1 / N_SYMBOLS, color="grey", lw=1, ls=":", label="chance (1 in 10)")
for ax in axes:
    ax.axvline(TRAIN_LEN + 0.5, color="k", lw=1,
               label=f"training length (1 to {TRAIN_LEN}) ends")
    ax.set_ylim(-0.03, 1.03)
    ax.legend(fontsize=8, loc="lower left")
axes[0].set(title="Whole sequence copied (greedy decoding)", xlabel="sequence length (symbols)",
            ylabel="exact match (fraction of 200 sequences)")
axes[1].set(title=f"Per position, {TEST_LEN}-symbol inputs (teacher forcing)",
            xlabel="position in the output (symbols)",
            ylabel="right symbol ranked first (fraction)")
fig.suptitle(f"Copy models trained on 1 to {TRAIN_LEN} symbols, tested up to {TEST_LEN}")
fig.tight_layout()
save_figure(fig, "04_beyond_training_length")
plt.show()

# %% slideshow={"slide_type": "-"}
inside = {k: float(np.mean(v[:TRAIN_LEN])) for k, v in exact_match.items()}
first_beyond = {k: v[TRAIN_LEN] for k, v in exact_match.items()}
far_beyond = {k: max(v[TRAIN_LEN + 1:]) for k, v in exact_match.items()}
next_position = {k: float(v[TRAIN_LEN]) for k, v in per_position.items()}
seen_positions = {k: float(v[:TRAIN_LEN].min()) for k, v in per_position.items()}
far_positions = {k: float(np.mean(v[TRAIN_LEN + 2:])) for k, v in per_position.items()}
assert min(inside.values()) > 0.9  # both learned the task on the training lengths
assert max(far_beyond.values()) < 0.05  # and neither copies sequences 2 or more symbols longer
assert max(far_positions.values()) < 0.25  # guessing level (0.1), give or take noise
sin_edge, learned_edge = next_position["sinusoidal"], next_position["learned"]
display(Markdown(
    f"On the training lengths (1 to {TRAIN_LEN} symbols) both models copy almost every sequence: "
    f"exact match {inside['sinusoidal']:.0%} with sinusoids, {inside['learned']:.0%} with the "
    f"learned table (averaged over the {TRAIN_LEN} lengths). Past them, exact match collapses: "
    f"{first_beyond['sinusoidal']:.0%} (sinusoidal) and {first_beyond['learned']:.0%} (learned) "
    f"at {TRAIN_LEN + 1} symbols, and "
    + ("none" if max(far_beyond.values()) == 0 else f"at most {max(far_beyond.values()):.0%}")
    + f" for either from {TRAIN_LEN + 2} on. Part of that is stopping too soon: on {TEST_LEN}-symbol inputs "
    f"{stops_early['sinusoidal']:.0%} (sinusoidal) and {stops_early['learned']:.0%} (learned) of "
    f"the greedy outputs write EOS before all {TEST_LEN} symbols are out. "
    f"With teacher forcing, position {TRAIN_LEN + 1} gets the right symbol "
    f"{sin_edge:.0%} of the time with sinusoids and {learned_edge:.0%} with the learned table"
    + (": the sinusoidal model keeps part of its skill one step past the training length; "
       if sin_edge > learned_edge + 0.1 else "; ")
    + f"from position {TRAIN_LEN + 3} on both are at guessing level "
    f"({far_positions['sinusoidal']:.0%} and {far_positions['learned']:.0%}; chance is "
    f"{1 / N_SYMBOLS:.0%}). A long input also disturbs the positions the models were trained "
    f"on: on {TEST_LEN}-symbol inputs, accuracy over positions 1 to {TRAIN_LEN} falls as low as "
    f"{seen_positions['sinusoidal']:.0%} (sinusoidal) and {seen_positions['learned']:.0%} "
    f"(learned). In the learned source table, the rows from symbol {TRAIN_LEN + 1} on (rows "
    f"{TRAIN_LEN} to {TEST_LEN + 1}, counting from 0) are still exactly their random initial "
    "values (checked above): no training sequence reached them."))

# %% [markdown] slideshow={"slide_type": "subslide"}
# Why do sinusoids not extrapolate here, when their table exists for every position? The table
# is fixed, but the trained matrices that read it were fitted only to its first few rows. At a
# new position the slow dimensions take values the model has never met, and what it learned
# ("output position `t` looks at source position `t`") was never asked to hold there. One
# small run proves nothing about large models, and the paper claims no more than "may" and
# reports no such measurement.
# [Notebook 07, "Quality by sentence length"](07_results.ipynb#quality-by-sentence-length--按句长看质量)
# looks at translation quality by sentence length, within the training lengths.

# %% slideshow={"slide_type": "-"}
display(Markdown(
    "**Takeaway:** \"defined for any length\" is not \"works at any length\". In this "
    "measurement neither sinusoidal nor learned positions copy sequences longer than those "
    "trained on; "
    + (f"sinusoids keep some accuracy just past the training length ({sin_edge:.0%} against "
       f"{learned_edge:.0%} at the first unseen position), and from position {TRAIN_LEN + 3} on "
       "none. " if sin_edge > learned_edge + 0.1 else
       "sinusoids do no better than the learned table even at the first unseen position. ")
    + "The learned table fails in one more, plain way: past the training length its rows are "
    "untouched random vectors, and past `max_len` it has none."))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Four kinds of positional information | 四种位置编码
#
# | kind | where position enters | parameters | longer than training? | used by |
# |---|---|---|---|---|
# | absolute sinusoidal | added to the input embeddings | none | runs at any length; failed past the training length in [our copy test](#positions-beyond-the-training-length--超出训练长度的位置) | this paper |
# | absolute learned | added to the input embeddings | `max_len × d` | untrained rows past the training length ([copy test](#positions-beyond-the-training-length--超出训练长度的位置)); no rows past `max_len` | row E, BERT, GPT-2 |
# | relative | inside attention: a term depending on `i - j` added to the scores (or keys) | one bias or vector per clipped offset | defined for any length: offsets beyond the clip share the last value (not measured here) | Shaw et al. 2018, Transformer-XL, T5 |
# | rotary (RoPE) | inside attention: rotate `q` and `k` by angles proportional to their positions | none | defined; often extended by rescaling the angles (not measured here) | RoFormer, LLaMA and most recent large language models |
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
# 5. In [the copy test](#positions-beyond-the-training-length--超出训练长度的位置), train on
#    lengths 1 to 12 and test up to 24. Does the sinusoidal model keep its edge at the first
#    unseen position? Then give the learned model `max_len=TRAIN_LEN + 1` and run it on 16
#    symbols: where does it fail, and with what message?
