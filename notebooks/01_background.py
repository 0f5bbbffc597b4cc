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
# # Background: what recurrence and convolution cost | 背景
#
# **What you will learn**
#
# - why attention was invented at all: an RNN encoder–decoder squeezes the whole source sentence
#   into one vector of fixed size, and we measure what that costs as sentences grow, beside
#   the same model with attention;
# - the three yardsticks Section 4 of the paper uses to compare layer types: work per layer,
#   sequential operations, and the longest path a signal must travel between two positions;
# - how to *measure* each of them on this machine for a self-attention layer, an LSTM, a 1-D
#   convolution of the same width `d` and restricted self-attention (Table 1's fourth row),
#   instead of taking Table 1 on trust;
# - where the trade-off lies: Table 1's rule says a self-attention layer is cheaper than a
#   recurrent one while the sequence is shorter than the model is wide (`n < d`); we count and
#   time where the crossover really lies, at a small width and at the paper's `d = 512`.
#   Whatever the length, attention needs a constant number of sequential steps and connects any
#   two positions in one hop.
#
# Everything runs on the CPU, one thread, with small sizes; the summary reports how long the
# whole notebook took.

# %% slideshow={"slide_type": "-"}
import copy
import math
import time

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from IPython.display import Markdown, display
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves
from torch.utils.flop_counter import FlopCounterMode

from transformer import MultiHeadAttention, scaled_dot_product_attention
from transformer.apps.profiles import banner
from transformer.apps.viz import save_figure

notebook_start = time.perf_counter()
torch.set_num_threads(1)  # small workloads: one thread is fastest and unaffected by other jobs
print(banner())
torch.manual_seed(0)
pd.set_option("display.width", 120)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Sequence models before the Transformer | 序列模型
#
# A translation model must turn a sequence of `n` vectors of width `d` into another such
# sequence, letting every position learn from the others. In 2017 there were two ways to do it.
#
# - **Recurrence** (LSTM, GRU) keeps a state `h_t = f(h_{t-1}, x_t)`. Step `t` cannot start
#   before step `t-1` has finished, so a sentence of 50 tokens is 50 steps in a row, and what the
#   first token said reaches the last one only through 49 updates of the state.
# - **Convolution** (ByteNet, ConvS2S) mixes each position with its `k` neighbours. All positions
#   are computed at once, but one layer sees only `k` tokens; distant tokens meet after many
#   stacked layers (a number growing linearly in `n`, or as `log_k n` with dilations).
#
# Self-attention lets every position look at every other position in one step, at the price of
# an `n x n` matrix of scores. Table 1 of the paper summarises the trade-off:
#
# | layer type | work per layer | sequential operations | maximum path length |
# |---|---|---|---|
# | self-attention | O(n² · d) | O(1) | O(1) |
# | recurrent | O(n · d²) | O(n) | O(n) |
# | convolutional | O(k · n · d²) | O(1) | O(log_k n) |
# | self-attention (restricted to r neighbours) | O(r · n · d) | O(1) | O(n / r) |
#
# After a look at why attention was introduced in the first place, we build one layer of each
# kind with the same width and measure every column.
#
# **Takeaway:** recurrence is sequential by construction; convolution is local by
# construction; attention is neither, and pays with a cost quadratic in `n`.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Why attention at all: one vector for a whole sentence | 为什么需要注意力：定长向量瓶颈
#
# Before attention, a neural translator was an *encoder–decoder* of two RNNs (Sutskever et al.
# and Cho et al., 2014). The encoder reads the source sentence; its final state, a vector of
# fixed size whatever the sentence's length, is all the decoder receives, and from it the
# decoder must write the whole translation. Bahdanau et al. (2015) let the decoder, at each
# output step, also take a weighted average of *all* the encoder's states, with weights computed
# from its own state: attention. The source then no longer has to pass through one vector. The
# Transformer keeps the attention and drops the recurrence.
#
# We measure that bottleneck on the simplest task that needs the whole source: copying a random
# sequence of digits. Two GRU encoder–decoders of width 64 (a GRU is a simpler cousin of the
# LSTM), identical except that the second one's decoder also attends over the encoder states
# (the package's `scaled_dot_product_attention`, the decoder state as query, the encoder states
# as keys and values; Bahdanau et al. computed the weights with a small network instead of a
# dot product), train on the same 240 batches of 64 sequences of lengths 4 to 16. We then
# let each copy 256 new sequences per length, from 4 up to 24, feeding back its own previous
# outputs (greedy decoding), and count the digits it gets right.

# %% slideshow={"slide_type": "subslide"}
vocab, bos, hidden_size = 10, 10, 64  # digits 0-9 to copy, a start symbol, and the GRU state size
train_lengths, test_lengths = range(4, 17), range(4, 25, 2)


class GRUEncoderDecoder(nn.Module):
    """Two GRUs; with ``attend`` the decoder also looks at every encoder state."""

    def __init__(self, attend):
        super().__init__()
        self.attend = attend
        self.embed = nn.Embedding(vocab + 1, hidden_size)
        self.encoder = nn.GRU(hidden_size, hidden_size, batch_first=True)
        self.decoder = nn.GRU(hidden_size, hidden_size, batch_first=True)
        self.out = nn.Linear(2 * hidden_size if attend else hidden_size, vocab)

    def predict(self, states, memory):
        """Logits from decoder states (b, t, hidden), and weights over the encoder's (b, n, hidden)."""
        if not self.attend:  # the source reached the decoder only through its initial state
            return self.out(states), None
        context, weights = scaled_dot_product_attention(states, memory, memory)  # query: decoder
        return self.out(torch.cat([states, context], dim=-1)), weights

    def forward(self, src, decoder_input):  # training: the decoder reads the true previous tokens
        memory, summary = self.encoder(self.embed(src))  # summary: (1, b, hidden_size) for every n
        states, _ = self.decoder(self.embed(decoder_input), summary)
        return self.predict(states, memory)[0]

    @torch.no_grad()
    def greedy(self, src):  # testing: the decoder reads its own previous outputs
        memory, state = self.encoder(self.embed(src))
        token, tokens, weights = torch.full((len(src), 1), bos), [], []
        for _ in range(src.size(1)):
            states, state = self.decoder(self.embed(token), state)
            logits, w = self.predict(states, memory)
            token = logits.argmax(dim=-1)
            tokens.append(token)
            weights.append(w)
        return torch.cat(tokens, dim=1), (torch.cat(weights, dim=1) if self.attend else None)


def copy_batch(n, size, generator):
    """Random digit sequences of length n, and the decoder's input (start symbol, then shifted)."""
    src = torch.randint(vocab, (size, n), generator=generator)
    return src, torch.cat([torch.full((size, 1), bos), src[:, :-1]], dim=1)


def train_copier(attend, steps=240, batch=64):
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(1)  # both models see the same batches
    model = GRUEncoderDecoder(attend)
    optimizer = torch.optim.Adam(model.parameters(), lr=4e-3)
    for _ in range(steps):
        n = int(torch.randint(train_lengths.start, train_lengths.stop, (), generator=generator))
        src, decoder_input = copy_batch(n, batch, generator)
        loss = nn.functional.cross_entropy(model(src, decoder_input).flatten(0, 1), src.flatten())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model


start = time.perf_counter()
copiers = {"GRU encoder-decoder": train_copier(attend=False),
           "GRU encoder-decoder + attention": train_copier(attend=True)}
train_seconds = time.perf_counter() - start
generator = torch.Generator().manual_seed(2)
test_sets = {n: copy_batch(n, 256, generator)[0] for n in test_lengths}
decoded = {name: {n: model.greedy(src) for n, src in test_sets.items()}
           for name, model in copiers.items()}
copy_accuracy = pd.DataFrame({name: {n: (out[n][0] == test_sets[n]).float().mean().item()
                                     for n in test_lengths}
                              for name, out in decoded.items()}).rename_axis("source length n")
plain, attending = copiers
aligned = pd.Series({n: (w.argmax(dim=-1) == torch.arange(n)).float().mean().item()
                     for n, (_, w) in decoded[attending].items()})  # largest weight on token t?
print(f"trained both models in {train_seconds:.1f} s; parameters: " + ", ".join(
    f"{name} {sum(p.numel() for p in m.parameters()):,}" for name, m in copiers.items()))
print(f"what the plain decoder receives from the encoder: {hidden_size} numbers at every n; the "
      f"attending decoder: n x {hidden_size} (e.g. {test_lengths[-1] * hidden_size:,} at "
      f"n = {test_lengths[-1]})")
print("\ntoken accuracy of greedy copying (fraction of output tokens correct), by source length:")
print(copy_accuracy.assign(**{"attention: largest weight on the token being copied": aligned})
      .round(3).to_string())

# %% slideshow={"slide_type": "subslide"}
fig, axes = plt.subplots(1, 3, figsize=(16, 5), gridspec_kw={"width_ratios": [1.3, 1, 1]},
                         layout="constrained")
axes[0].axvspan(train_lengths.start, train_lengths.stop - 1, color="grey", alpha=0.15,
                label=f"training lengths ({train_lengths.start}–{train_lengths.stop - 1})")
for name, color in zip(copiers, ["tab:blue", "tab:red"]):
    axes[0].plot(copy_accuracy.index, 100 * copy_accuracy[name], "o-", color=color, label=name)
axes[0].axhline(100 / vocab, color="k", ls=":", lw=1, label=f"chance (1 in {vocab} digits)")
axes[0].set(title="Copying a random digit sequence: accuracy by length",
            xlabel="source length n (tokens)", ylabel="token accuracy, greedy decoding (%)",
            ylim=(0, 102), xticks=list(test_lengths))
axes[0].legend(fontsize=8, loc="lower left")
longest_train, shown = train_lengths.stop - 1, test_lengths[-1]
on_targets = {}
for ax, n in zip(axes[1:], (longest_train, shown)):
    example = decoded[attending][n][1][0]  # (output step, source position), first test sequence
    looked_at = example.argmax(dim=-1)  # where each output step put its largest weight
    on_targets[n] = int((looked_at == torch.arange(n)).sum())
    image = ax.imshow(example, cmap="viridis", vmin=0, vmax=1)
    ax.set(title=f"Attention while copying one sequence, n = {n}\n"
                 f"(largest weight on the digit to copy: {on_targets[n]} of {n} steps)",
           xlabel="source position (encoder state)", ylabel="output step (digit being written)")
fig.colorbar(image, ax=axes[1:], label="attention weight (each row sums to 1)")
fig.suptitle(f"The fixed-size summary: GRU encoder–decoders with a state of {hidden_size} "
             "numbers, with and without attention")
save_figure(fig, "01_why_attention")
plt.show()

# %% slideshow={"slide_type": "-"}
astray = shown - on_targets[shown]  # steps of the right-hand example looking elsewhere
first_astray = next(t for t in range(shown) if looked_at[t] != t)
jump = int(looked_at[first_astray])
assert on_targets[longest_train] >= longest_train - 1  # the middle example: a diagonal
walk = looked_at[first_astray:first_astray + 4] - jump  # it walks on from where it jumped
assert astray > 0 and walk.tolist() == list(range(len(walk)))
acc = copy_accuracy.loc  # acc[n, name]
assert acc[4, plain] - acc[longest_train, plain] > 0.3  # the plain model degrades with n ...
assert (copy_accuracy[attending] > copy_accuracy[plain]).all()  # ... attention much less
assert acc[longest_train, attending] > 0.7 and acc[longest_train, plain] < 0.5
assert acc[shown, attending] < acc[longest_train, attending]  # but it does not extrapolate
assert np.corrcoef(aligned, copy_accuracy[attending])[0, 1] > 0.9  # errors follow misalignment
display(Markdown(
    f"Squeezed through {hidden_size} numbers, the plain model copies {acc[4, plain]:.0%} of the "
    f"digits of 4-digit sequences, {acc[8, plain]:.0%} at 8 and {acc[longest_train, plain]:.0%} at "
    f"{longest_train}, the longest length it trained on, and {acc[shown, plain]:.0%} at {shown} "
    f"(chance is {1 / vocab:.0%}). The model that attends copies {acc[4, attending]:.0%}, "
    f"{acc[8, attending]:.0%} and {acc[longest_train, attending]:.0%} of them. Its weights "
    f"(middle, n = {longest_train}) form a diagonal: at output step `t` the decoder looks at "
    "source position `t`, the digit it must write, so it no longer needs to remember the "
    "sequence in its state. Beyond the training lengths it degrades too "
    f"({acc[shown, attending]:.0%} at n = {shown}), and its errors follow its alignment: the "
    "share of steps whose largest weight falls on the digit being copied falls from "
    f"{aligned[4]:.0%} at n = 4 to {aligned[longest_train]:.0%} at n = {longest_train} and "
    f"{aligned[shown]:.0%} at n = {shown}. On the right, the decoder loses its place: at step "
    f"{first_astray} it looks at position {jump} instead of {first_astray} and walks on from "
    f"there, one position per step; {astray} of its {shown} steps look at the wrong digit. "
    "To find position `t`, the query and the keys must encode where they are, which these "
    f"GRUs learned only on lengths up to {longest_train}. Both models had the same state size and the same training; "
    f"whatever its training, the plain model's summary stays {hidden_size} numbers however long "
    "the source grows."))

# %% [markdown] slideshow={"slide_type": "-"}
# **Takeaway:** an encoder–decoder that hands over one fixed-size vector loses more of the
# source the longer it is; letting the decoder attend to every encoder state removes that
# bottleneck. Attention still needed the recurrence here, to know where each position is. The
# Transformer drops the recurrence and gets positions from positional encodings instead
# ([notebook 04](04_positional_encoding.ipynb)); the rest of this notebook measures what
# recurrence costs.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Three layers of the same width | 三种同宽度的层
#
# - self-attention: the package's `MultiHeadAttention` (4 heads of width 16, so `d = 64`), both
#   on its explicit path (which materialises the weights, as in the formula) and on the fused
#   kernel `torch.nn.functional.scaled_dot_product_attention` that training uses (a *fused
#   kernel* is one compiled routine that runs a whole chain of operations, here the entire
#   formula, without handing intermediate results such as the weights back to Python);
# - an LSTM: `torch.nn.LSTM` (its CPU kernel is fused, so we also write the same recurrence as
#   a Python loop to be able to look inside it, and check the two agree);
# - a convolution: `torch.nn.Conv1d` with kernel `k = 3`;
# - for Table 1's fourth row, *restricted* self-attention, in which each query sees only the
#   `r` positions centred on its own (here `r = 9`: itself and 4 on each side). Written with a
#   band mask over the full `n × n` scores it would still cost `n² d`; to cost `r n d` it must
#   compute only the `r` scores it keeps, so we gather each query's `r` keys into a window and
#   multiply only those. Like the attention core below it has no projections, and we check it
#   against the package's `scaled_dot_product_attention` with a band mask.

# %% slideshow={"slide_type": "-"}
d = 64
attention = MultiHeadAttention(d_model=d, n_heads=4, d_k=16, d_v=16)
lstm = nn.LSTM(d, d, batch_first=True)
conv = nn.Conv1d(d, d, kernel_size=3, padding=1)


def lstm_loop(x, rnn=lstm):
    """The recurrence of nn.LSTM ``rnn`` written step by step (same weights, same result)."""
    b, n, _ = x.shape
    h, c = x.new_zeros(b, rnn.hidden_size), x.new_zeros(b, rnn.hidden_size)
    x_proj = x @ rnn.weight_ih_l0.T + rnn.bias_ih_l0 + rnn.bias_hh_l0  # all steps at once
    outputs = []
    for t in range(n):  # the part that cannot be parallelised over t
        i, f, g, o = (x_proj[:, t] + h @ rnn.weight_hh_l0.T).chunk(4, dim=-1)
        c = f.sigmoid() * c + i.sigmoid() * g.tanh()
        h = o.sigmoid() * c.tanh()
        outputs.append(h)
    return torch.stack(outputs, dim=1)


layers = {
    "self-attention": lambda x: attention(x, x, x, need_weights=True)[0],
    "self-attention (fused kernel)": lambda x: attention(x, x, x)[0],
    "LSTM": lambda x: lstm(x)[0],
    "convolution (k=3)": lambda x: conv(x.transpose(1, 2)).transpose(1, 2),
}

R = 9  # neighbourhood size r of restricted self-attention (odd: centred on the query)
restricted = f"restricted attention (core, r={R})"


def restricted_core(x, r=R, heads=4):
    """softmax(Q Kᵀ / √d_k) V, Q = K = V = x split into heads, each query seeing only the r
    positions centred on its own: 2 r n d multiply-adds instead of 2 n² d."""
    b, n, width = x.shape
    half, d_k = r // 2, width // heads
    q = x.view(b, n, heads, d_k)
    padded = nn.functional.pad(x, (0, 0, half, half)).view(b, n + 2 * half, heads, d_k)
    keys = padded.unfold(1, r, 1)  # (b, n, heads, d_k, r): the r keys around each query (a view)
    scores = torch.einsum("bnhd,bnhdr->bnhr", q, keys) / math.sqrt(d_k)
    position = torch.arange(n)[:, None] + torch.arange(r) - half  # of each key in each window
    outside = (position < 0) | (position >= n)  # the padding beyond both ends
    weights = scores.masked_fill(outside[None, :, None, :], float("-inf")).softmax(dim=-1)
    return torch.einsum("bnhr,bnhdr->bnhd", weights, keys).reshape(b, n, width)


x = torch.randn(2, 40, d)
with torch.no_grad():
    for name, layer in layers.items():
        assert layer(x).shape == x.shape, name
    gap = (lstm_loop(x) - lstm(x)[0]).abs().max().item()
    heads_x = x.view(2, 40, 4, d // 4).transpose(1, 2)  # (batch, heads, n, d_k)
    band = (torch.arange(40)[:, None] - torch.arange(40)).abs() <= R // 2  # |i - j| <= 4
    banded = scaled_dot_product_attention(heads_x, heads_x, heads_x, band)[0]
    band_gap = (restricted_core(x) - banded.transpose(1, 2).reshape(2, 40, d)).abs().max().item()
print(f"largest difference between the loop LSTM and nn.LSTM: {gap:.1e}")
print(f"largest difference between windowed restricted attention (r = {R}) and full attention "
      f"with a band mask: {band_gap:.1e}")
assert gap < 1e-5 and band_gap < 1e-5

# %% [markdown] slideshow={"slide_type": "-"}
# **Takeaway:** all these layers map `(batch, n, d)` to `(batch, n, d)`; they differ only in how
# positions exchange information.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Work per layer: counting floating-point operations | 计算量
#
# `torch.utils.flop_counter.FlopCounterMode` counts the multiply-adds of every matrix product
# and convolution that actually runs. On a log-log scale, cost `∝ n^a` is a straight line of
# slope `a`; we read `a` from consecutive sizes. For attention we count the whole layer
# (projections included, `O(n d²)`) and its core `softmax(QKᵀ/√d_k) V` alone (`O(n² d)`), and
# the restricted core (`O(r n d)`); the LSTM is counted through its loop version, since the fused
# kernel is invisible to the counter.


# %% slideshow={"slide_type": "-"}
def flops(fn, *args):
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        fn(*args)
    return counter.get_total_flops()


def attention_core(x, heads=4):
    """softmax(Q Kᵀ / √d_k) V with Q = K = V = x split into heads (no projections)."""
    d_k = x.size(-1) // heads
    q = k = v = x.view(x.size(0), x.size(1), heads, d_k).transpose(1, 2)
    return torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(d_k), dim=-1) @ v


counted = {
    "self-attention (whole layer)": layers["self-attention"],
    "self-attention (core only)": attention_core,
    restricted: restricted_core,
    "LSTM": lstm_loop,
    "convolution (k=3)": layers["convolution (k=3)"],
}
ns = [64, 128, 256, 512, 1024]
flop_table = pd.DataFrame({name: [flops(fn, torch.randn(1, n, d)) for n in ns]
                           for name, fn in counted.items()}, index=pd.Index(ns, name="n"))


def slopes(table):
    """Local log-log slope between consecutive rows: d log(cost) / d log(size)."""
    logs = np.log(table.astype(float))
    sizes = np.log(table.index.to_numpy(dtype=float))
    return logs.diff().div(np.diff(sizes, prepend=np.nan), axis=0).iloc[1:]


# %% [markdown] slideshow={"slide_type": "-"}
# The next cell starts with the comment `# NBVAL_CHECK_OUTPUT`, which you will meet in every
# notebook. It is a marker for [nbval](https://github.com/computationalmodelling/nbval), the
# pytest plugin with which the test suite (`make test`) re-executes every notebook: all cells
# must run without error, and a cell carrying the marker must also reproduce its stored output
# exactly (after the substitutions listed in `notebooks/sanitize.cfg`, such as timings). We mark
# only outputs that are deterministic, such as counts or seeded computations on one thread,
# never timings.

# %% slideshow={"slide_type": "subslide"}
# NBVAL_CHECK_OUTPUT
print("FLOPs of one layer, d = 64, one sequence of length n:")
print(flop_table.to_string())
print("\nslope of log(FLOPs) against log(n) between consecutive n:")
print(slopes(flop_table).round(3).to_string())

# %% slideshow={"slide_type": "-"}
whole_layer = slopes(flop_table)["self-attention (whole layer)"]
projections = flop_table["self-attention (whole layer)"] - flop_table["self-attention (core only)"]
assert ns[0] == d and projections[ns[0]] > flop_table.loc[ns[0], "self-attention (core only)"]
display(Markdown(
    f"The core of attention is exactly quadratic (slope 2). The whole layer's slope rises from "
    f"{whole_layer.iloc[0]:.2f} (between n = {ns[0]} and {ns[1]}) to {whole_layer.iloc[-1]:.2f} "
    f"(between n = {ns[-2]} and {ns[-1]}): at `n = {ns[0]} = d` its four projections, linear in "
    f"`n`, do {projections[ns[0]] / flop_table.loc[ns[0], 'self-attention (whole layer)']:.0%} "
    "of the work, and the `n² d` core takes over as `n` outgrows `d`. The LSTM, the "
    "convolution and the restricted core are exactly linear in `n`. Changing `d` at fixed `n` "
    "shows the other half of the claims: the LSTM and the convolution grow as `d²`, the "
    "attention core and the restricted core only as `d`."))

# %% slideshow={"slide_type": "subslide"}
# NBVAL_CHECK_OUTPUT
n_fixed, widths = 256, [32, 64, 128, 256]
by_width = {}
for width in widths:
    x = torch.randn(1, n_fixed, width)
    rnn = nn.LSTM(width, width, batch_first=True)
    by_width[width] = {
        "self-attention (core only)": flops(
            lambda x: torch.softmax(x @ x.transpose(-2, -1), -1) @ x, x),
        restricted: flops(restricted_core, x),
        "LSTM (16 n d²)": 16 * n_fixed * width**2,  # 4 gates, input and hidden matrices
        "convolution (k=3)": flops(nn.Conv1d(width, width, 3, padding=1), x.transpose(1, 2)),
    }
    # the formula for the LSTM agrees with the counter on the loop version at d = 64
assert by_width[64]["LSTM (16 n d²)"] == flops(lstm_loop, torch.randn(1, n_fixed, 64))
width_table = pd.DataFrame(by_width).T.rename_axis("d")
print(f"FLOPs of one layer at n = {n_fixed}, for several widths d:")
print(width_table.to_string())
print("\nslope of log(FLOPs) against log(d):")
print(slopes(width_table).round(3).to_string())

# %% slideshow={"slide_type": "-"}
n_slopes, d_slopes = slopes(flop_table), slopes(width_table)
assert np.allclose(n_slopes["self-attention (core only)"], 2.0)  # O(n² d)
assert np.allclose(d_slopes["self-attention (core only)"], 1.0)
assert (flop_table[restricted] == 4 * R * flop_table.index * d).all()  # exactly 4 r n d: O(r n d)
assert np.allclose(n_slopes[restricted], 1.0) and np.allclose(d_slopes[restricted], 1.0)
assert 1.0 < n_slopes["self-attention (whole layer)"].iloc[0] < n_slopes[
    "self-attention (whole layer)"].iloc[-1] < 2.0  # bends from the n d² to the n² d regime
for name in ("LSTM", "convolution (k=3)"):
    assert np.allclose(n_slopes[name], 1.0), name  # O(n d²) and O(k n d²): linear in n
assert np.allclose(d_slopes["LSTM (16 n d²)"], 2.0) and np.allclose(d_slopes["convolution (k=3)"], 2.0)
crossover = flop_table.index[flop_table["self-attention (core only)"] >= flop_table["LSTM"]][0]
print(f"the attention core needs as many FLOPs as the LSTM from n = {crossover} on (d = {d})")
assert crossover == 4 * d  # 4 n² d > 16 n d²  <=>  n > 4 d
restricted_saving = flop_table["LSTM"] / flop_table[restricted]
print(f"the restricted core (r = {R}) needs {restricted_saving.iloc[0]:.1f} times fewer FLOPs than "
      f"the LSTM at every n")
assert np.allclose(restricted_saving, 4 * d / R) and round(4 * d / R) == 28  # 16 n d² / (4 r n d)

# %% [markdown] slideshow={"slide_type": "subslide"}
# **Takeaway:** the work columns of Table 1 hold exactly: attention is `n² d`, recurrence and
# convolution are `n d²` (times `k`). Which of the two is cheaper depends on `n / d`: the
# attention core needs fewer FLOPs than this LSTM exactly while `n < 4d` (the assertion above
# checks `4 n² d < 16 n d²`). Restricted attention costs exactly `4 r n d`, linear in `n` like
# recurrence but with `r` where the LSTM has `4d`: with `r = 9` and `d = 64`, about 28 times
# fewer FLOPs than this LSTM at every length (printed above). Table 1's rule, `n < d`, drops
# these constants;
# [the crossover at the paper's width](#the-crossover-at-the-papers-width--论文宽度下的交叉点)
# counts and times it at `d = 512`. The paper's case for attention rests on sentences in
# translation being shorter than `d` in word pieces (its argument; this notebook uses no data).

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Sequential operations | 顺序操作数
#
# Work can be spread over many cores; a chain of operations that each need the previous result
# cannot. We measure the *critical path*: every tensor operation dispatched by PyTorch gets a
# depth one larger than the deepest of its inputs (views are free), and the deepest output is
# the number of operations that must run one after another, however many cores there are.
#
# To see every operation we subclass `TorchDispatchMode`, a PyTorch hook: inside a
# `with CriticalPath():` block, each elementary operation (a matrix product, an addition, a
# sigmoid, ...) is handed to our `__torch_dispatch__` with its inputs just before it runs, and
# we run it there and record the depth of its outputs. `FlopCounterMode` above counts FLOPs
# through the same hook.


# %% slideshow={"slide_type": "-"}
class CriticalPath(TorchDispatchMode):
    """Length of the longest chain of dependent (non-view) tensor operations."""

    def __init__(self):
        super().__init__()
        self.depth, self.alive = {}, []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        inputs = [t for t in tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)]
        depth = max((self.depth.get(id(t), 0) for t in inputs), default=0) + (not func.is_view)
        for t in tree_leaves(out):
            if isinstance(t, torch.Tensor):
                self.depth[id(t)] = depth
                self.alive.append(t)  # keep ids unique while we count
        return out


def critical_path(fn, n):
    x = torch.randn(1, n, d)
    with torch.no_grad(), CriticalPath() as mode:
        fn(x)
    return max(mode.depth.values())


sequential = {"self-attention": layers["self-attention"], restricted: restricted_core,
              "LSTM": lstm_loop, "convolution (k=3)": layers["convolution (k=3)"]}
path_ns = [8, 16, 32, 64, 128]
seq_table = pd.DataFrame({name: [critical_path(fn, n) for n in path_ns]
                          for name, fn in sequential.items()}, index=pd.Index(path_ns, name="n"))

# %% slideshow={"slide_type": "subslide"}
# NBVAL_CHECK_OUTPUT
print("operations that must run one after another (critical path), one layer, d = 64:")
print(seq_table.to_string())
per_step = np.diff(seq_table["LSTM"].to_numpy()) / np.diff(path_ns)
print(f"\nLSTM: {per_step[0]:.0f} dependent operations per time step, "
      f"{seq_table['LSTM'].iloc[0] - per_step[0] * path_ns[0]:.0f} outside the loop")

# %% slideshow={"slide_type": "-"}
assert np.all(per_step == per_step[0]) and per_step[0] == 7  # a fixed chain per time step ...
steps = (seq_table["LSTM"] - (seq_table["LSTM"].iloc[0] - per_step[0] * path_ns[0])) / per_step[0]
assert np.array_equal(steps.to_numpy(), np.array(path_ns))  # ... repeated n times: O(n)
assert seq_table["self-attention"].nunique() == 1  # O(1): independent of n
assert seq_table["convolution (k=3)"].nunique() == 1
assert seq_table[restricted].nunique() == 1

# %% [markdown] slideshow={"slide_type": "subslide"}
# **Takeaway:** an LSTM layer is a chain of `n` identical steps (7 dependent operations each
# in our loop), so its latency grows with `n` even on a machine with unlimited cores; attention
# (full or restricted) and convolution need a fixed number of steps.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Maximum path length | 最大路径长度
#
# How many layers (or recurrent steps) must a signal cross to go from the first position to the
# last? We test it with gradients: output `n-1` depends on input `0` exactly when the gradient of
# the one with respect to the other is non-zero. Convolution stacks use one channel and weights
# all equal to 1, so no accidental cancellation can hide a connection.


# %% slideshow={"slide_type": "-"}
def conv_layers_needed(n, k=3, dilated=False):
    """Smallest stack of kernel-k convolutions whose last output sees the first input."""
    for depth in range(1, n + 1):
        x = torch.zeros(1, 1, n, requires_grad=True)
        h = x
        for layer in range(depth):
            dilation = k**layer if dilated else 1
            h = nn.functional.conv1d(nn.functional.pad(h, ((k - 1) * dilation, 0)),
                                     torch.ones(1, 1, k), dilation=dilation)  # causal: looks left
        h[0, 0, n - 1].backward()
        if x.grad[0, 0, 0] != 0:
            return depth
    raise AssertionError("never connected")


def attention_layers_needed(n):
    x = torch.randn(1, n, d, requires_grad=True)
    layers["self-attention"](x)[0, n - 1].sum().backward()
    return 1 if x.grad[0, 0].abs().sum() > 0 else None


def restricted_layers_needed(n, r=R):
    """Smallest stack of restricted attention cores whose last output sees the first input."""
    for depth in range(1, n + 1):
        x = torch.randn(1, n, d, requires_grad=True)
        h = x
        for _ in range(depth):
            h = restricted_core(h, r)
        h[0, n - 1].sum().backward()
        if x.grad[0, 0].abs().sum() > 0:  # masked keys get exactly zero weight and gradient
            return depth
    raise AssertionError("never connected")


path_rows = []
for n in [8, 16, 32, 64]:
    path_rows.append({"n": n, "self-attention (layers)": attention_layers_needed(n),
                      f"restricted r={R} (layers)": restricted_layers_needed(n),
                      "LSTM (recurrent steps)": n - 1,
                      "convolution k=3 (layers)": conv_layers_needed(n),
                      "dilated convolution k=3 (layers)": conv_layers_needed(n, dilated=True)})
path_table = pd.DataFrame(path_rows).set_index("n")

# %% slideshow={"slide_type": "-"}
# NBVAL_CHECK_OUTPUT
print("layers (or recurrent steps) between the first input and the last output:")
print(path_table.to_string())

# %% slideshow={"slide_type": "-"}
for n, row in path_table.iterrows():
    assert row["self-attention (layers)"] == 1  # O(1)
    assert row["convolution k=3 (layers)"] == math.ceil((n - 1) / 2)  # O(n/k) without dilation
    assert row["dilated convolution k=3 (layers)"] == math.ceil(math.log(n, 3))  # O(log_k n)
    assert row[f"restricted r={R} (layers)"] == math.ceil((n - 1) / (R // 2))  # O(n/r)

# %% [markdown] slideshow={"slide_type": "subslide"}
# The LSTM column is `n - 1` by construction: the first input enters the state at step 0 and
# must survive `n - 1` updates before the last output is read (the loop above makes that
# visible). Short paths matter because gradients and information degrade along long ones; the
# paper argues that long-range dependencies are easier to learn when the path is short.
# Restricted attention with a window of `r` positions moves information at most `(r-1)/2`
# positions per layer (4 for `r = 9`), so the path takes `(n-1)/((r-1)/2)` layers: `O(n/r)`,
# the price of its linear cost.
#
# **Takeaway:** one attention layer joins every pair of positions; restricted attention needs
# `(n-1)/((r-1)/2)` layers, a plain convolution `(n-1)/(k-1)`, a dilated one `log_k n`, and
# recurrence `n - 1` steps.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Time and memory on this machine | 实测时间与内存
#
# Counting is exact; the clock is not. We time the forward pass of each layer (best of 5, one
# thread) and measure the memory a training step must keep for the backward pass: every tensor
# autograd saves, each storage counted once, weights excluded. That activation memory is what
# limits batch size and sequence length in practice.

# %% slideshow={"slide_type": "-"}
parameter_storages = {p.untyped_storage().data_ptr()
                      for module in (attention, lstm, conv) for p in module.parameters()}


def activation_bytes(fn, x):
    saved = {}

    def pack(t):
        storage = t.untyped_storage()
        if storage.data_ptr() not in parameter_storages:
            saved[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn(x)
    return sum(saved.values())


def seconds(fn, x, repeats=5):
    with torch.no_grad():
        fn(x)  # warm-up
        best = math.inf
        for _ in range(repeats):
            start = time.perf_counter()
            fn(x)
            best = min(best, time.perf_counter() - start)
    return best


def slower_from(table, name, other="LSTM"):
    """Smallest n from which ``name`` took longer than ``other`` at every n measured (or None)."""
    slower = (table[name] > table[other]).to_numpy()
    return next((n for i, n in enumerate(table.index) if slower[i:].all()), None)


measure_ns = [32, 64, 128, 256, 512, 1024, 2048]
timing, memory = {}, {}
for n in measure_ns:
    x = torch.randn(1, n, d, requires_grad=True)
    timing[n] = {name: 1e3 * seconds(fn, x) for name, fn in layers.items()}
    memory[n] = {name: activation_bytes(fn, x) / 2**20 for name, fn in layers.items()}
timing = pd.DataFrame(timing).T.rename_axis("n")
memory = pd.DataFrame(memory).T.rename_axis("n")
print("forward time per layer, milliseconds (best of 5, 1 thread):")
print(timing.round(3).to_string())
print("\nactivation memory saved for backward, MiB:")
print(memory.round(3).to_string())

# %% slideshow={"slide_type": "subslide"}
fig, axes = plt.subplots(1, 3, figsize=(14, 4.2))
colors = dict(zip(layers, ["tab:red", "tab:orange", "tab:blue", "tab:green"]))
colors[restricted] = "tab:brown"
for ax, table, unit in [(axes[0], timing, "forward time per layer (ms)"),
                        (axes[1], memory, "activation memory for backward (MiB)")]:
    for name in layers:
        ax.loglog(table.index, table[name], "o-", color=colors[name], label=name)
    anchor = table.iloc[-1].max()
    n_ref = np.array([measure_ns[2], measure_ns[-1]], dtype=float)
    for power, style in [(1, ":"), (2, "--")]:
        ax.loglog(n_ref, anchor * (n_ref / n_ref[-1]) ** power, "k" + style, lw=1,
                  label=f"slope {power} (∝ n^{power})")
    ax.set_xlabel("sequence length n (tokens)")
    ax.set_ylabel(unit)
    ax.legend(fontsize=8)
axes[0].set_title("Time grows as n² for attention, n for the others")
axes[1].set_title("Memory: the stored n×n matrix dominates")
for name in sequential:
    axes[2].plot(seq_table.index, seq_table[name], "o-", color=colors[name], label=name)
axes[2].set_xlabel("sequence length n (tokens)")
axes[2].set_ylabel("dependent operations (critical path)")
axes[2].set_title("Sequential operations: O(n) only for the LSTM")
axes[2].legend(fontsize=8)
fig.suptitle(f"Table 1 measured: one layer of width d = {d} on this CPU", y=1.02)
fig.tight_layout()
save_figure(fig, "01_table1_measured")
plt.show()

# %% [markdown] slideshow={"slide_type": "-"}
# Slopes over the upper half of the lengths (least-squares fit of `log cost` on `log n`):

# %% slideshow={"slide_type": "-"}
def fitted_slope(series, last=4):
    return np.polyfit(np.log(series.index[-last:]), np.log(series.to_numpy()[-last:]), 1)[0]


fit = pd.DataFrame({"time slope": {name: fitted_slope(timing[name]) for name in layers},
                    "memory slope": {name: fitted_slope(memory[name]) for name in layers}})
print("fitted exponent a in cost ∝ n^a, n from 256 to 2048:")
print(fit.round(2).to_string())
assert 1.8 < fit.loc["self-attention", "memory slope"] < 2.05  # the stored n x n matrices
assert 0.9 < fit.loc["self-attention (fused kernel)", "memory slope"] < 1.1  # none stored
assert 0.9 < fit.loc["LSTM", "memory slope"] < 1.1  # one state per step
assert 0.95 < fit.loc["convolution (k=3)", "memory slope"] < 1.05
# clocks are noisy on a shared machine: only the ordering is asserted
for name in ("self-attention", "self-attention (fused kernel)"):
    assert fit.loc[name, "time slope"] > fit.loc["LSTM", "time slope"] + 0.4, name

# %% slideshow={"slide_type": "subslide"}
def from_n(n):
    return "at no length we timed" if n is None else f"from `n = {n}` on"


explicit_slope = fit.loc["self-attention", "time slope"]
display(Markdown(
    "Three things the O() table does not say are visible here.\n\n"
    f"- Constants: on one CPU thread the fused LSTM kernel is fast. At `d = {d}` the explicit "
    f"attention layer took longer than the LSTM {from_n(slower_from(timing, 'self-attention'))}, "
    f"the fused kernel {from_n(slower_from(timing, 'self-attention (fused kernel)'))}. The "
    "paper's argument is about parallel hardware and sentence-length `n`, not about long "
    "sequences on one core.\n"
    "- Memory: written as in the formula, attention stores its `n × n` weights for the backward "
    f"pass (fitted slope {fit.loc['self-attention', 'memory slope']:.2f}). The fused kernel "
    "recomputes them during the backward pass instead and keeps only `O(n)` per head (slope "
    f"{fit.loc['self-attention (fused kernel)', 'memory slope']:.2f}). That is the idea behind "
    "FlashAttention: the quadratic *memory* can be avoided, the quadratic *work* cannot.\n"
    f"- The explicit path's fitted time slope is {explicit_slope:.2f}"
    + (", above the 2 of its FLOP count: its time jumps once the `n × n` matrices no longer fit "
       "in the CPU caches, a reminder that O() hides the memory hierarchy." if explicit_slope > 2
       else ". On a machine with smaller caches it can exceed 2, as the time jumps once the "
            "`n × n` matrices no longer fit in them: O() hides the memory hierarchy.")))

# %% [markdown] slideshow={"slide_type": "-"}
# **Takeaway:** measured slopes match the table (about 2 for attention's work and stored
# weights, 1 for the others); attention buys its O(1) sequential steps and O(1) path length
# with quadratic cost.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## The crossover at the paper's width | 论文宽度下的交叉点
#
# Section 4 of the paper turns the work column of Table 1 into a rule: a self-attention layer
# costs less than a recurrent layer when the sequence length `n` is below the width `d`, the
# usual case in translation, where sentences cut into word pieces are mostly shorter than
# `d = 512` (the paper's argument). The rule compares `n² d` with `n d²`, which cross at
# `n = d`, and leaves out the constants: an LSTM has four gates, each with an input and a
# recurrent matrix (`16 n d²` FLOPs), and a whole attention layer has four projections around
# its core (`8 n d² + 4 n² d`). Everything above used `d = 64`; here we count and time the layers
# at the paper's width, `d = 512`, with 8 heads of 64 as in the base model.
#
# FLOPs are counted on PyTorch's `meta` device, whose tensors have shapes but no data: the
# counter sees every matrix product and nothing is computed, so long sequences cost nothing.
# The LSTM loop still dispatches several operations per step there, which is slow for long
# sequences, so it is counted at one length and scaled by `n`, as the exact slope 1 measured
# above allows.

# %% slideshow={"slide_type": "subslide"}
d_paper = 512
attention_512 = MultiHeadAttention(d_model=d_paper, n_heads=8, d_k=64, d_v=64)
lstm_512 = nn.LSTM(d_paper, d_paper, batch_first=True)
meta_attention, meta_lstm = copy.deepcopy(attention_512).to("meta"), copy.deepcopy(lstm_512).to("meta")


def whole_layer_512(module):
    return lambda x: module(x, x, x, need_weights=True)[0]


n_counted = 128
lstm_per_token = flops(lambda x: lstm_loop(x, meta_lstm),
                       torch.empty(1, n_counted, d_paper, device="meta")) / n_counted
# the meta count is the real count: checked once on real tensors
x = torch.randn(1, n_counted, d_paper)
assert flops(whole_layer_512(attention_512), x) == flops(
    whole_layer_512(meta_attention), x.to("meta"))
assert lstm_per_token == 16 * d_paper**2  # 4 gates x (input + recurrent) matrices x 2 FLOPs

cross_ns = [128, 256, 512, 1024, 2048, 4096, 8192]
flops_512 = pd.DataFrame({n: {
    "self-attention (whole layer)": flops(whole_layer_512(meta_attention),
                                          torch.empty(1, n, d_paper, device="meta")),
    "self-attention (core only)": flops(lambda x: attention_core(x, heads=8),
                                        torch.empty(1, n, d_paper, device="meta")),
    "LSTM": lstm_per_token * n,
} for n in cross_ns}).T.rename_axis("n")
for name in ("self-attention (whole layer)", "self-attention (core only)"):
    flops_512[f"{name} / LSTM"] = flops_512[name] / flops_512["LSTM"]


def costlier_from(table, name, other="LSTM"):
    """Smallest n from which ``name`` needs at least as many FLOPs as ``other`` (or None)."""
    return slower_from(table.assign(**{other: table[other] - 0.5}), name, other)


flop_cross_layer = costlier_from(flops_512, "self-attention (whole layer)")
flop_cross_core = costlier_from(flops_512, "self-attention (core only)")
print(f"FLOPs of one layer at d = {d_paper}, one sequence of length n (GFLOP), "
      "and the ratio attention / LSTM:")
print(flops_512.div([1e9] * 3 + [1] * 2).round(3).to_string())
print(f"\nthe whole attention layer needs at least as many FLOPs as the LSTM from n = "
      f"{flop_cross_layer} on, the attention core from n = {flop_cross_core} on")

# %% slideshow={"slide_type": "-"}
n_arr = flops_512.index.to_numpy(dtype=float)
assert np.array_equal(flops_512["self-attention (whole layer)"],
                      8 * n_arr * d_paper**2 + 4 * n_arr**2 * d_paper)  # projections + core
assert flop_cross_layer == 2 * d_paper  # 8 n d² + 4 n² d >= 16 n d²  <=>  n >= 2d
assert flop_cross_core == 4 * d_paper  # 4 n² d >= 16 n d²  <=>  n >= 4d
below_d = flops_512.index < d_paper
assert (flops_512.loc[below_d, "self-attention (whole layer) / LSTM"] < 1).all()  # the rule holds

# %% [markdown] slideshow={"slide_type": "-"}
# Now the clock: the forward pass of each layer at `d = 512`, for a few lengths around the
# crossover, one sequence, one thread, best of 5 after a warm-up. The LSTM is PyTorch's fused
# kernel, as in the timings above.

# %% slideshow={"slide_type": "subslide"}
time_ns = [128, 256, 512, 1024, 2048]
timed_512 = {"self-attention": whole_layer_512(attention_512),
             "self-attention (fused kernel)": lambda x: attention_512(x, x, x)[0],
             "LSTM": lambda x: lstm_512(x)[0]}
timing_512 = pd.DataFrame({n: {name: 1e3 * seconds(fn, torch.randn(1, n, d_paper))
                               for name, fn in timed_512.items()}
                           for n in time_ns}).T.rename_axis("n")
for name in ("self-attention", "self-attention (fused kernel)"):
    timing_512[f"{name} / LSTM"] = timing_512[name] / timing_512["LSTM"]
time_cross = {name: slower_from(timing_512, name)
              for name in ("self-attention", "self-attention (fused kernel)")}
print(f"forward time per layer at d = {d_paper}, milliseconds (best of 5, 1 thread), "
      "and the ratio attention / LSTM:")
print(timing_512.round(2).to_string())

# %% slideshow={"slide_type": "subslide"}
fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
for name, color in [("self-attention (whole layer)", "tab:red"),
                    ("self-attention (core only)", "tab:purple"), ("LSTM", "tab:blue")]:
    axes[0].loglog(flops_512.index, flops_512[name], "o-", color=color, label=name)
for name in ("self-attention", "self-attention (fused kernel)", "LSTM"):
    axes[1].loglog(timing_512.index, timing_512[name], "o-", color=colors[name], label=name)
for ax, lengths in zip(axes, (cross_ns, time_ns)):
    ax.axvline(d_paper, color="grey", ls="--", lw=1, label=f"n = d = {d_paper} (Table 1's rule)")
    ax.set_xticks(lengths, [str(n) for n in lengths])
    ax.set_xticks([], minor=True)
    ax.set_xlabel("sequence length n (tokens)")
    ax.legend(fontsize=8)
axes[0].axvline(flop_cross_layer, color="tab:red", ls=":", lw=1,
                label=f"counted crossover, whole layer (n = {flop_cross_layer})")
axes[0].legend(fontsize=8)
axes[0].set(title="Counted: FLOPs of one layer", ylabel="FLOPs per layer (one sequence)")
axes[1].set(title="Timed: forward pass on this CPU (1 thread)",
            ylabel="forward time per layer (ms)")
fig.suptitle(f"Self-attention against an LSTM at the paper's width d = {d_paper}", y=1.02)
fig.tight_layout()
save_figure(fig, "01_crossover_d512")
plt.show()


# %% slideshow={"slide_type": "-"}
def timed_phrase(name):
    """Where the timed attention layer ``name`` overtook the LSTM, in words."""
    n = time_cross[name]
    if n is None:
        return f"took less time than the LSTM at every length timed, up to `n = {time_ns[-1]}`"
    if n == time_ns[0]:
        return f"took longer than the LSTM at every length timed, from `n = {time_ns[0]}`"
    before = time_ns[time_ns.index(n) - 1]
    return f"took longer than the LSTM from `n = {n}` on, less up to `n = {before}`"


short = timing_512.index < d_paper
faster_below_d = [name for name in time_cross
                  if (timing_512.loc[short, f"{name} / LSTM"] < 1).all()]
agreement = {2: "both attention layers took less time than the LSTM, as the rule says",
             1: f"only the {''.join(faster_below_d)} layer took less time than the LSTM at all of "
                "them; the clock agrees with the rule only partly",
             0: "neither attention layer took less time than the LSTM at all of them: the clock "
                "does not agree with the rule on this machine"}[len(faster_below_d)]
ratio_at_d = flops_512.loc[d_paper, "self-attention (whole layer) / LSTM"]
display(Markdown(
    f"**Counted.** At `d = {d_paper}` the whole self-attention layer needs fewer FLOPs than the "
    f"LSTM for every `n` below {flop_cross_layer} (`= 2d`), and its core alone catches up only "
    f"at `n = {flop_cross_core}` (`= 4d`). At `n = d` the layer needs {ratio_at_d:.2f} times the "
    "LSTM's FLOPs. The count therefore agrees with Table 1's rule, and is more generous to "
    f"attention than the rule: attention is cheaper at every `n < d`, and stays cheaper up to "
    f"`2d`, because the LSTM's constant (16) is larger than attention's (8 and 4).\n\n"
    f"**Timed** (this CPU, one thread, one sequence). The explicit attention layer "
    f"{timed_phrase('self-attention')}; the fused kernel "
    f"{timed_phrase('self-attention (fused kernel)')}. At the lengths timed below `n = d` "
    f"({', '.join(str(n) for n in timing_512.index[short])}), {agreement}. The clock "
    f"need not cross where the count does (`n = {flop_cross_layer}`): the explicit layer also "
    "writes and reads its `n × n` weights, memory traffic that FLOPs do not count, while an LSTM "
    "fed one sequence multiplies matrices by vectors, one step at a time, which uses a CPU less "
    "well than attention's matrix products. Both effects depend on the hardware and the batch "
    "size, which is why only the count is asserted."))

# %% [markdown] slideshow={"slide_type": "-"}
# **Takeaway:** at the paper's width, Table 1's rule holds with room to spare: by count, a
# self-attention layer is cheaper than an LSTM up to `n = 2d` (asserted above), not just
# `n = d`. Where the clock crosses depends on the machine, the batch size and the kernel; the
# paragraph above says where it crossed on this one.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Summary: Table 1 beside our measurements | 总结：表 1 对照

# %% slideshow={"slide_type": "-"}
lstm_steps = path_table.loc[64, "LSTM (recurrent steps)"]


def clock_at(name):
    n = time_cross[name]
    return f"at no length up to `n = {time_ns[-1]}`" if n is None else f"from `n = {n}` on"


display(Markdown(f"""
| layer type | paper: work | measured FLOP exponent in n | paper: sequential ops | measured critical path | paper: max path | measured path (n = 64) |
|---|---|---|---|---|---|---|
| self-attention | O(n² d) | 2 (core); {whole_layer.iloc[0]:.2f} → {whole_layer.iloc[-1]:.2f} with projections | O(1) | constant ({seq_table["self-attention"].iloc[0]}) | O(1) | {path_table.loc[64, "self-attention (layers)"]} layer |
| recurrent (LSTM) | O(n d²) | {n_slopes["LSTM"].mean():.0f} in n, {d_slopes["LSTM (16 n d²)"].mean():.0f} in d | O(n) | {per_step[0]:.0f} n + {seq_table["LSTM"].iloc[0] - per_step[0] * path_ns[0]:.0f} | O(n) | {lstm_steps} steps |
| convolutional (k = 3) | O(k n d²) | {n_slopes["convolution (k=3)"].mean():.0f} in n, {d_slopes["convolution (k=3)"].mean():.0f} in d | O(1) | constant ({seq_table["convolution (k=3)"].iloc[0]}) | O(log_k n) dilated | {path_table.loc[64, "convolution k=3 (layers)"]} layers plain, {path_table.loc[64, "dilated convolution k=3 (layers)"]} dilated |
| self-attention restricted (r = {R}) | O(r n d) | {n_slopes[restricted].mean():.0f} in n, {d_slopes[restricted].mean():.0f} in d (exactly 4 r n d, core) | O(1) | constant ({seq_table[restricted].iloc[0]}) | O(n/r) | {path_table.loc[64, f"restricted r={R} (layers)"]} layers |

Table 1's rule, self-attention cheaper than recurrence while `n < d`, measured at `d = {d_paper}`:
the FLOP count puts the crossover with the LSTM at `n = {flop_cross_layer}` for the whole layer
(`n = {flop_cross_core}` for its core). On this CPU's clock the explicit layer took longer
than the LSTM {clock_at("self-attention")}, the fused kernel {clock_at("self-attention (fused kernel)")}.

The code cells of this notebook ran in {time.perf_counter() - notebook_start:.0f} s on this
machine (starting the kernel not included).
"""))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Exercises | 练习
#
# 1. Set `d = 256` and rerun. Where does the FLOP crossover between the attention core and the
#    LSTM move? Check it against the formula `n = 4d`.
# 2. Remove `torch.set_num_threads(1)` and time again. Which layer gains most from a second
#    core, and why does the LSTM gain least?
# 3. Write restricted self-attention the simple way, as full attention with a band mask (as in
#    the check of `restricted_core` above), and count its FLOPs. Does the mask change the count?
#    Then find the window `r` at which `restricted_core` costs as many FLOPs as the whole
#    attention core at `n = 64`, and how many layers its maximum path then needs.
# 4. The path-length test used causal convolutions. Repeat it with centred ("same")
#    convolutions: how many layers does the last output need to see the first input now?
# 5. Count a plain tanh RNN (`nn.RNN`: one input and one recurrent matrix, no gates) written as
#    a loop. Where does its FLOP count meet the attention core's, and the whole attention
#    layer's? Compare with Table 1's `n = d`.
