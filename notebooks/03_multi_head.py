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
# # Multi-head attention | 多头注意力
#
# **What you will learn**
#
# - the four steps of multi-head attention (project and split, attend, concatenate, project),
#   traced tensor by tensor through the package's `MultiHeadAttention`;
# - that it computes exactly what `torch.nn.MultiheadAttention` computes, once the weights are
#   copied across (and where the two APIs' mask conventions differ);
# - why `d_k` and `d_v` are separate knobs, as in rows A and B of Table 3;
# - that eight heads of width 64 cost the same parameters and FLOPs as one head of width 512,
#   and what the extra heads buy: a small task that one head cannot solve and two heads can.

# %% slideshow={"slide_type": "-"}
import matplotlib.pyplot as plt
import pandas as pd
import torch
import torch.nn.functional as F
from IPython.display import Markdown, display
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from transformer import (
    MultiHeadAttention,
    Transformer,
    TransformerConfig,
    causal_mask,
    scaled_dot_product_attention,
    sinusoidal_table,
)
from transformer.apps.profiles import banner
from transformer.apps.viz import attention_chart, attention_heatmap, save_figure

torch.set_num_threads(1)  # small workloads: one thread is fastest and unaffected by other jobs
torch.manual_seed(0)
print(banner())

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Split, attend, concatenate, project | 拆分、注意、拼接、投影
#
# $$\mathrm{MultiHead}(Q, K, V) = \mathrm{Concat}(\mathrm{head}_1, \dots, \mathrm{head}_h)\, W^O,
# \qquad \mathrm{head}_i = \mathrm{Attention}(Q W_i^Q, K W_i^K, V W_i^V)$$
#
# The `h` matrices `W_i^Q` (each `d_model × d_k`) are stored side by side as one
# `d_model × h·d_k` linear layer, so one matrix product projects all heads at once; a reshape
# then gives each head its own slice. Below we redo every step by hand with the module's own
# weights, printing the shapes.

# %% slideshow={"slide_type": "-"}
# NBVAL_CHECK_OUTPUT
d_model, h, d_k, d_v = 32, 4, 8, 8
mha = MultiHeadAttention(d_model, h, d_k, d_v).eval()
B, T_q, T_k = 2, 5, 7
query, memory = torch.randn(B, T_q, d_model), torch.randn(B, T_k, d_model)

q = mha.w_q(query).view(B, T_q, h, d_k).transpose(1, 2)  # 1. project, split into heads
k = mha.w_k(memory).view(B, T_k, h, d_k).transpose(1, 2)
v = mha.w_v(memory).view(B, T_k, h, d_v).transpose(1, 2)
heads, weights = scaled_dot_product_attention(q, k, v)  # 2. attend, every head at once
concat = heads.transpose(1, 2).reshape(B, T_q, h * d_v)  # 3. concatenate the heads
out = mha.w_o(concat)  # 4. project back to d_model
for name, tensor in [("query input", query), ("key/value input", memory), ("Q per head", q),
                     ("K per head", k), ("V per head", v), ("weights per head", weights),
                     ("head outputs", heads), ("concatenated", concat), ("output", out)]:
    print(f"{name:>17}: {tuple(tensor.shape)}")

# %% slideshow={"slide_type": "subslide"}
with torch.no_grad():
    fused_out, no_weights = mha(query, memory, memory)  # fused-kernel path (training)
    explicit_out, module_weights = mha(query, memory, memory, need_weights=True)
torch.testing.assert_close(fused_out, out)
torch.testing.assert_close(explicit_out, out)
torch.testing.assert_close(module_weights, weights)
assert no_weights is None
print("by-hand computation == MultiHeadAttention (both paths), with T_q = 5 != T_k = 7")

# %% [markdown] slideshow={"slide_type": "-"}
# Note what the reshape does: each head sees a **slice of the features** of every position, not
# a slice of the sequence. All heads look at all positions; they differ in the subspace they
# compare and in the values they read.
#
# **Takeaway:** multi-head attention is `h` independent attentions on `h` learned projections,
# run as one batched matrix product, followed by one output projection that mixes the heads.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Checking against torch.nn.MultiheadAttention | 与 PyTorch 实现对照
#
# PyTorch's module stores the three input projections stacked in `in_proj_weight`
# (`3·d_model × d_model`) and the output projection in `out_proj`. Copy our weights in and the
# two modules must agree, for self-attention, cross-attention, padding and causal masks. One
# trap: PyTorch's boolean masks mean the opposite of ours. Its `key_padding_mask` and boolean
# `attn_mask` say `True` = *ignore*; ours say `True` = *may attend*.

# %% slideshow={"slide_type": "-"}
reference = nn.MultiheadAttention(d_model, h, batch_first=True).eval()
with torch.no_grad():
    reference.in_proj_weight.copy_(torch.cat([mha.w_q.weight, mha.w_k.weight, mha.w_v.weight]))
    reference.in_proj_bias.copy_(torch.cat([mha.w_q.bias, mha.w_k.bias, mha.w_v.bias]))
    reference.out_proj.weight.copy_(mha.w_o.weight)
    reference.out_proj.bias.copy_(mha.w_o.bias)

lengths = torch.tensor([7, 4])
keep = torch.arange(T_k) < lengths[:, None]  # (B, T_k): True = real token (our convention)
x = torch.randn(B, 6, d_model)
cases = {
    "self-attention": ((x, x, x), {}, {}),
    "cross-attention, T_q != T_k": ((query, memory, memory), {}, {}),
    "cross-attention + padding": ((query, memory, memory), {"mask": keep[:, None, None, :]},
                                  {"key_padding_mask": ~keep}),
    "causal self-attention": ((x, x, x), {"is_causal": True},
                              {"attn_mask": ~causal_mask(6), "is_causal": True}),
}
with torch.no_grad():
    for name, (inputs, ours_kw, theirs_kw) in cases.items():
        ours, our_weights = mha(*inputs, need_weights=True, **ours_kw)
        theirs, their_weights = reference(*inputs, average_attn_weights=False, **theirs_kw)
        torch.testing.assert_close(ours, theirs)
        torch.testing.assert_close(our_weights, their_weights)
        print(f"{name:<28} outputs and per-head weights agree "
              f"(largest difference {(ours - theirs).abs().max():.1e})")

# %% [markdown] slideshow={"slide_type": "-"}
# **Takeaway:** the package's layer is the standard one; only the storage of the projections
# and the meaning of `True` in a mask differ from PyTorch's.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## d_k and d_v are independent knobs | d_k 与 d_v 是独立的参数
#
# Queries and keys must share a width `d_k` (they meet in a dot product); values have their own
# width `d_v`, which sets the width of what each head returns. The base model uses
# `d_k = d_v = d_model / h = 64`, but Table 3 varies them:
#
# - rows **A** change the number of heads while keeping `h · d_k = h · d_v = 512`, so the
#   computation and parameters stay constant;
# - rows **B** shrink only the key size `d_k` (values stay 64 wide), which removes parameters and
#   hurts quality (perplexity 5.16 instead of 4.92 at `d_k = 16`).
#
# The paper's numbers are copied here (newstest2013 development set, per-word-piece perplexity,
# BLEU, parameters in millions). Beside them we count each row's parameters and FLOPs. FLOPs are
# counted by PyTorch's `FlopCounterMode`: inside its `with` block it sees every operation that
# runs and adds 2 FLOPs (one multiply, one add) per multiply-add of each matrix product;
# softmax, masking and additions are not counted. We ask the layer for its attention weights
# (`need_weights=True`) so that the attention core runs as two explicit matrix products,
# `Q Kᵀ` and `weights · V`: the counter does not recognise the fused kernel the CPU runs
# otherwise, and would silently leave the core out.

# %% slideshow={"slide_type": "subslide"}
# NBVAL_CHECK_OUTPUT
paper = {  # row: (h, d_k, d_v, PPL, BLEU, params in millions or None = same as base)
    "base": (8, 64, 64, 4.92, 25.8, 65), "A1": (1, 512, 512, 5.29, 24.9, None),
    "A2": (4, 128, 128, 5.00, 25.5, None), "A3": (16, 32, 32, 4.91, 25.8, None),
    "A4": (32, 16, 16, 5.01, 25.4, None), "B1": (8, 16, 64, 5.16, 25.1, 58),
    "B2": (8, 32, 64, 5.01, 25.4, 60),
}


def layer_flops(module, n=32):
    """FLOPs of one self-attention call over n positions: projections and attention core."""
    x = torch.randn(1, n, 512)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        module(x, x, x, need_weights=True)  # explicit Q Kᵀ and weights·V, which the counter sees
    return counter.get_total_flops()


rows = []
for row, (heads_, dk, dv, ppl, bleu, params) in paper.items():
    config = TransformerConfig.from_preset(row)
    assert (config.n_heads, config.d_k, config.d_v) == (heads_, dk, dv)  # the package's presets
    layer = MultiHeadAttention(512, heads_, dk, dv)
    rows.append({"row": row, "h": heads_, "d_k": dk, "d_v": dv,
                 "params per attention layer": sum(p.numel() for p in layer.parameters()),
                 "MFLOPs per layer (n=32)": layer_flops(layer) / 1e6,
                 "paper PPL": ppl, "paper BLEU": bleu, "paper params (M)": params or "= base"})
table3 = pd.DataFrame(rows).set_index("row")
print(table3.to_string())

# %% slideshow={"slide_type": "-"}
base_params = table3.loc["base", "params per attention layer"]
for row in ("A1", "A2", "A3", "A4"):
    assert table3.loc[row, "params per attention layer"] == base_params  # h·d_k fixed
    assert table3.loc[row, "MFLOPs per layer (n=32)"] == table3.loc["base", "MFLOPs per layer (n=32)"]
# the count includes the core: 4 projections (2·n·512² FLOPs each) + Q Kᵀ and weights·V
assert table3.loc["base", "MFLOPs per layer (n=32)"] * 1e6 == 4 * 2 * 32 * 512**2 + 2 * 2 * 32**2 * 512
n_attention_layers = 6 + 2 * 6  # encoder self, decoder self, decoder cross
saved, paper_saved = {}, {}
for row in ("B1", "B2"):
    per_layer = base_params - table3.loc[row, "params per attention layer"]
    saved[row] = per_layer * n_attention_layers / 1e6  # millions, whole model
    paper_saved[row] = paper["base"][5] - paper[row][5]
    print(f"{row} (d_k = {paper[row][1]}) removes {per_layer:,} parameters per attention layer, "
          f"{saved[row]:.2f}M over the model's {n_attention_layers} attention layers "
          f"(paper: {paper['base'][5]}M - {paper[row][5]}M = {paper_saved[row]}M)")
    assert abs(saved[row] - paper_saved[row]) < 0.5

# the package accepts d_k != d_v: a B1 layer maps (B, T, 512) to (B, T, 512) with 16-wide keys
b1 = MultiHeadAttention(512, 8, 16, 64)
y, w = b1(torch.randn(2, 9, 512), torch.randn(2, 11, 512), torch.randn(2, 11, 512),
          need_weights=True)
assert y.shape == (2, 9, 512) and w.shape == (2, 8, 9, 11)

# %% slideshow={"slide_type": "-"}
display(Markdown(
    "**Takeaway:** with `h · d_k` held fixed, the number of heads is free: rows A cost the same "
    "parameters and FLOPs and differ only in quality (in the paper one head is clearly worse, "
    f"perplexity {paper['A1'][3]} against {paper['base'][3]}; {paper['A4'][0]} heads are "
    f"slightly worse again, {paper['A4'][3]}). Shrinking `d_k` alone (rows B) saves "
    f"{saved['B2']:.2f}M parameters at `d_k = {paper['B2'][1]}` and {saved['B1']:.2f}M at "
    f"`d_k = {paper['B1'][1]}` (the paper: {paper_saved['B2']}M and {paper_saved['B1']}M) and "
    "costs quality, which the paper reads as a sign that judging compatibility between query and "
    "key is not easy."))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Same parameters as one wide head | 与单个宽头参数量相同
#
# Eight heads of width 64 against one head of width 512: the projections are the same
# `512 × 512` matrices, cut differently, and the attention core does the same number of
# multiplications (`h · n² · d_k` either way).

# %% slideshow={"slide_type": "-"}
# NBVAL_CHECK_OUTPUT
eight, one = MultiHeadAttention(512, 8, 64, 64), MultiHeadAttention(512, 1, 512, 512)
count = {name: sum(p.numel() for p in m.parameters()) for name, m in [("8 x 64", eight), ("1 x 512", one)]}
flop = {name: layer_flops(m) for name, m in [("8 x 64", eight), ("1 x 512", one)]}
print("parameters:", count)
print("FLOPs at n = 32:", flop)
assert count["8 x 64"] == count["1 x 512"] == 4 * (512 * 512 + 512)
assert flop["8 x 64"] == flop["1 x 512"]

# %% [markdown] slideshow={"slide_type": "-"}
# What differs is the number of attention *distributions*: one head gives each query a single
# weighted average of the values; eight heads give eight, each over its own 64-dimensional
# slice. An average blurs: if a position needs information from two different places at once,
# a single head must mix them into one vector.
#
# **Takeaway:** more heads cost nothing in parameters or FLOPs; they trade the width of each
# comparison for the number of independent ones.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## A task one head cannot solve | 一个头解决不了的任务
#
# Each position of a random token sequence must report **both** its left and its right
# neighbour. The model is one attention layer (sinusoidal positions added to token embeddings,
# no residual connection) followed by two linear read-outs, one per neighbour. We train it with
# one head of width 32 and with two heads of width 16: identical parameter counts.

# %% slideshow={"slide_type": "-"}
V, T, D = 16, 12, 32


class Neighbours(nn.Module):
    def __init__(self, n_heads):
        super().__init__()
        self.embed = nn.Embedding(V, D)
        self.register_buffer("positions", sinusoidal_table(T, D))
        self.attention = MultiHeadAttention(D, n_heads, D // n_heads, D // n_heads)
        self.left, self.right = nn.Linear(D, V), nn.Linear(D, V)

    def forward(self, tokens, need_weights=False):
        x = self.embed(tokens) + self.positions
        out, weights = self.attention(x, x, x, need_weights=need_weights)
        return self.left(out), self.right(out), weights


def loss_and_accuracy(model, tokens):
    left, right, _ = model(tokens)
    left, right = left[:, 1:-1], right[:, 1:-1]  # positions that have both neighbours
    targets = tokens[:, :-2], tokens[:, 2:]
    loss = sum(F.cross_entropy(logits.reshape(-1, V), t.reshape(-1))
               for logits, t in zip((left, right), targets))
    accuracy = sum((logits.argmax(-1) == t).float().mean()
                   for logits, t in zip((left, right), targets)) / 2
    return loss, accuracy.item()


results, models = {}, {}
for n_heads in (1, 2):
    torch.manual_seed(0)
    data = torch.Generator().manual_seed(0)
    model = Neighbours(n_heads)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _step in range(500):
        loss, _ = loss_and_accuracy(model, torch.randint(0, V, (128, T), generator=data))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        _, accuracy = loss_and_accuracy(model, torch.randint(0, V, (2000, T), generator=data))
    models[n_heads] = model
    results[n_heads] = (sum(p.numel() for p in model.parameters()), accuracy)
    print(f"{n_heads} head(s) of width {D // n_heads}: {results[n_heads][0]} parameters, "
          f"held-out accuracy {accuracy:.3f} (both neighbours, 500 steps)")
assert results[1][0] == results[2][0]  # same size
assert results[2][1] > 0.95 and 0.4 < results[1][1] < 0.65  # two heads solve it, one gets about half

# %% slideshow={"slide_type": "subslide"}
example = torch.randint(0, V, (1, T), generator=torch.Generator().manual_seed(1))
fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
with torch.no_grad():
    _, _, w1 = models[1](example, need_weights=True)
    _, _, w2 = models[2](example, need_weights=True)
labels = [str(t) for t in example[0].tolist()]
attention_heatmap(w1[0, 0], labels, labels, ax=axes[0], vmax=1,
                  title=f"1 head: spread over both neighbours (accuracy {results[1][1]:.2f})")
for head in range(2):
    attention_heatmap(w2[0, head], labels, labels, ax=axes[head + 1], vmax=1,
                      title=f"2 heads, head {head + 1} (accuracy {results[2][1]:.2f})")
for ax in axes:
    ax.set_xlabel("key position (token id)")
    ax.set_ylabel("query position (token id)")
fig.suptitle("Report both neighbours: one head must average them, two heads divide the work")
fig.tight_layout()
save_figure(fig, "03_heads_divide_work")
plt.show()

# %% slideshow={"slide_type": "-"}
def preferred_offset(w):
    """Key offset (key - query) receiving the most weight on average."""
    return max((-1, 0, 1), key=lambda o: w.diagonal(o).mean().item())


offsets = sorted(preferred_offset(w2[0, head]) for head in range(2))
one_head = {o: round(w1[0, 0].diagonal(o).mean().item(), 2) for o in (-1, 0, 1)}
print("two-head model: the heads prefer key offsets", offsets)
print("one-head model: mean weight on offsets -1 / 0 / +1:", one_head)
assert offsets == [-1, 1]

# %% [markdown] slideshow={"slide_type": "subslide"}
# The two-head model splits the job: one head attends to the left neighbour, the other to the
# right, and the read-outs take each from its own slice. The one-head model spreads its weight
# over both neighbours, so its output is a blend of the two tokens in which "left" and "right"
# can no longer be told apart; it gets about half the answers right.
#
# **Takeaway:** heads are not an ensemble of copies; they are separate routes. A layer needs at
# least as many heads as things each position must fetch from different places at once.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## What heads attend to | 不同的头关注什么
#
# `transformer.apps.viz.attention_chart` draws every layer and head of a model's attention maps with
# a layer drop-down and a head slider (hover for the weights). Layers and heads are numbered from
# 1, as in the paper (tensor index 0 is layer 1, head 1). The chart needs no internet: its
# JavaScript is stored with the notebook, and where scripts do not run (GitHub, a notebook
# JupyterLab does not trust yet) it shows as a static image of layer 1, head 1; run the notebook,
# or use "Trust Notebook", to get the selectors. Here it shows the package's
# `tiny` Transformer **with random weights**, so that a trained model's maps can later be told
# apart from what initialisation alone produces.

# %% slideshow={"slide_type": "subslide"}
torch.manual_seed(0)
tiny = Transformer(TransformerConfig.from_preset("tiny", dropout=0.0)).eval()
words = "the animal did not cross the street because it was too tired".split()
src = torch.tensor([[4 + i for i in range(len(words))]])
with torch.no_grad():
    maps = tiny.attention_maps(src, torch.tensor([[tiny.config.bos_id]]))
print("encoder maps (layers, batch, heads, queries, keys):", tuple(maps["encoder"].shape))
attention_chart(maps["encoder"][:, 0], words,
                title="Untrained tiny model, encoder self-attention (choose layer and head)")

# %% slideshow={"slide_type": "-"}
def top_keys(seed):
    """For each layer, head and query of an untrained tiny model: the weight on its top key
    and which key that is."""
    torch.manual_seed(seed)
    model = Transformer(TransformerConfig.from_preset("tiny", dropout=0.0)).eval()
    with torch.no_grad():
        weights = model.attention_maps(src, torch.tensor([[model.config.bos_id]]))["encoder"][:, 0]
    return weights.max(dim=-1)  # (layers, heads, queries): values, indices


peak, choice = top_keys(0)  # the model drawn above
_, other_choice = top_keys(1)  # the same architecture, another random draw
uniform = 1 / len(words)
agreement = (choice == other_choice).float().mean().item()
for layer in range(peak.size(0)):
    print(f"untrained, encoder layer {layer + 1}: weight on the top key, mean over queries, per "
          f"head: {[round(v, 2) for v in peak[layer].mean(-1).tolist()]} (uniform: {uniform:.2f})")
print(f"queries whose top key is the same under seeds 0 and 1: {agreement:.0%} "
      f"(chance: {uniform:.0%})")
inner = torch.arange(1, T - 1)  # queries that have both neighbours
with torch.no_grad():  # 500 fresh sequences for the trained two-head neighbour model
    _, _, w_many = models[2](torch.randint(0, V, (500, T), generator=torch.Generator().manual_seed(2)),
                             need_weights=True)
top_offset = w_many[:, :, inner].argmax(-1) - inner  # (sequences, heads, queries)
on_neighbour = [(top_offset[:, head] == offset).float().mean().item()
                for head, offset in enumerate(preferred_offset(w2[0, head]) for head in range(2))]
print("trained two-head neighbour model, 500 sequences: queries whose top key is the head's "
      "neighbour, per head:", [f"{v:.0%}" for v in on_neighbour])
assert peak.mean() > 2 * uniform and agreement < 2 * uniform and min(on_neighbour) > 0.85

# %% [markdown] slideshow={"slide_type": "subslide"}
# Random heads are not flat: random projections already make some keys score higher than
# others, so the heads in the chart look different from each other. But which key a head
# favours is an accident of the draw: initialised with another seed, the same head agrees on
# the top key for hardly more queries than chance would. In the neighbour model above, training
# made each head's top key the same neighbour for nearly every query.

# %% slideshow={"slide_type": "-"}
display(Markdown(
    f"In numbers: with random weights a query gives its top key {peak.mean():.2f} of its "
    f"weight on average ({peak.mean() / uniform:.1f} times the uniform {uniform:.2f}); the two "
    f"seeds agree on the top key for {agreement:.0%} of the queries against {uniform:.0%} by "
    f"chance; in the trained neighbour model each head's top key is its neighbour for at least "
    f"{min(on_neighbour):.0%} of the queries. "
    "[Notebook 07](07_results.ipynb#attention-maps--注意力图) draws the same chart for the "
    "translation model trained in notebook 06. That model is small and briefly trained, and its "
    "heads are less crisp than the paper's Figures 3 to 5, which show heads following "
    "long-distance dependencies, resolving `its` and tracking sentence structure.\n\n"
    "**Takeaway:** distinct-looking heads are not yet specialised heads: compare a map against "
    "an untrained model's, and against another seed, before reading a role into it."))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Exercises | 练习
#
# 1. Train the neighbour task with 4 heads of width 8. Do two heads stay idle, or do all four
#    share the work? Plot them.
# 2. Change the task so that each position must report the tokens two to the left, one to the
#    left and one to the right. How many heads does it need?
# 3. In the comparison with `torch.nn.MultiheadAttention`, pass our mask `keep` directly as
#    `key_padding_mask`. What do you get, and why?
# 4. Row B1 keeps `d_v = 64` but uses `d_k = 16`. Write the parameter count of one attention
#    layer as a formula in `d_model, h, d_k, d_v` and check it against the table above.
