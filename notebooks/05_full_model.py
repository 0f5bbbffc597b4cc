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
# # The full model | 完整模型
#
# **What you will learn**
#
# - how the pieces of notebooks 02 to 04 assemble into the encoder-decoder of Figure 1, and
#   where each parameter of the base model lives;
# - two guarantees to check on any implementation: the decoder never sees the future, and
#   padding never changes a real token's output;
# - why translation can keep each layer's keys and values from step to step (the key/value
#   cache), and what that saves;
# - why every sub-layer must output `d_model` numbers per position (the residual sum), and
#   where dropout acts, at which rate, in the base and big models;
# - residual connections with LayerNorm after the sum (post-norm, the paper) or before the
#   sub-layer (pre-norm, later work), and what that does to gradients in a deep stack;
# - weight tying between the embeddings and the output layer, and why embeddings are multiplied
#   by `√d_model`;
# - the parameter column of Table 3 recomputed for every row, beside the paper's numbers.

# %% slideshow={"slide_type": "-"}
import collections
import math
import re
import time

import matplotlib.pyplot as plt
import pandas as pd
import torch
import torch.nn.functional as F
from IPython.display import Markdown, display
from torch import nn

from transformer import (
    PAPER_ROWS,
    FeedForward,
    MultiHeadAttention,
    Transformer,
    TransformerConfig,
    sinusoidal_table,
)
from transformer.apps.profiles import banner
from transformer.apps.recipes import RECIPES
from transformer.apps.viz import save_figure
from transformer.model.layers import Residual

torch.set_num_threads(1)  # small workloads: one thread is fastest and unaffected by other jobs
print(banner())
torch.manual_seed(0)
pd.set_option("display.width", 140)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## The architecture in code | 代码中的结构
#
# `Transformer(config)` holds: one embedding matrix (shared by source, target and output layer),
# a positional encoding per stack, `N` encoder layers, `N` decoder layers, and (for pre-norm
# only) a final LayerNorm per stack. A forward pass maps source ids `(B, S)` and shifted target
# ids `(B, T)` to logits `(B, T, vocabulary)`:

# %% slideshow={"slide_type": "-"}
# NBVAL_CHECK_OUTPUT
tiny = Transformer(TransformerConfig.from_preset("tiny", dropout=0.0)).eval()
src = torch.randint(4, 1000, (2, 9))
tgt_in = torch.cat([torch.full((2, 1), tiny.config.bos_id), torch.randint(4, 1000, (2, 6))], 1)
with torch.no_grad():
    memory = tiny.encode(src)
    logits = tiny.decode(tgt_in, memory, tiny.padding_mask(src))
print("source ids       ", tuple(src.shape))
print("encoder memory   ", tuple(memory.shape))
print("target input ids ", tuple(tgt_in.shape), "(BOS + target shifted right)")
print("logits           ", tuple(logits.shape), "(one distribution over the vocabulary per target position)")


# %% [markdown] slideshow={"slide_type": "-"}
# Inside, each encoder layer is self-attention then a feed-forward network; each decoder layer
# is causal self-attention, encoder-decoder (cross) attention whose keys and values come from
# the encoder's memory, then a feed-forward network. Every sub-layer is wrapped by a `Residual`
# block (dropout, residual sum, LayerNorm). The first layer of each stack of the `tiny` model,
# sub-module by sub-module (`print(tiny.decoder[0])` shows the same as a nested tree; this
# `tiny` is built with dropout switched off, hence `p = 0.0`):

# %% slideshow={"slide_type": "subslide"}
# NBVAL_CHECK_OUTPUT
def describe(module):
    """One line on what a sub-module of an encoder or decoder layer computes."""
    if isinstance(module, MultiHeadAttention):
        return f"{module.n_heads} heads, d_k = {module.d_k}, d_v = {module.d_v}: W_Q, W_K, W_V, W_O"
    if isinstance(module, FeedForward):
        return (f"Linear {module.w_1.in_features} -> {module.w_1.out_features}, ReLU, "
                f"Linear {module.w_2.in_features} -> {module.w_2.out_features}")
    assert isinstance(module, Residual)
    return f"Dropout(p = {module.dropout.p}), residual sum, LayerNorm({module.norm.normalized_shape[0]})"


layer_table = pd.DataFrame(
    [{"layer": stack, "sub-module": name, "class": type(module).__name__,
      "what it computes": describe(module), "parameters": sum(p.numel() for p in module.parameters())}
     for stack, layer in [("encoder 1", tiny.encoder[0]), ("decoder 1", tiny.decoder[0])]
     for name, module in layer.named_children()]).set_index(["layer", "sub-module"])
print(layer_table.to_string())

# %% [markdown] slideshow={"slide_type": "-"}
# Where do the parameters of the full-size base model go? We count them without building its
# weights: `with torch.device("meta")` makes every module create its parameters on PyTorch's
# **meta device**, as tensors that have a shape and a dtype but no storage and no values. The
# model's structure is complete, so counting parameters (and even running a forward pass to
# see the shapes) costs no memory and almost no time.


# %% slideshow={"slide_type": "-"}
def count(module):
    return sum(p.numel() for p in module.parameters())


def parameter_breakdown(model):
    """Parameters per sub-layer and per group, each beside the formula it must equal."""
    c, enc, dec = model.config, model.encoder[0], model.decoder[0]
    d, d_ff, n = c.d_model, c.d_ff, c.n_layers
    attention, ffn, norm = 4 * d * d + 4 * d, 2 * d * d_ff + d_ff + d, 2 * d  # with biases
    rows = [  # (group, part, counted, formula, formula's value)
        ("per encoder layer", "self-attention", count(enc.self_attn), "4·d² + 4·d", attention),
        ("per encoder layer", "feed-forward", count(enc.ffn), "2·d·d_ff + d_ff + d", ffn),
        ("per encoder layer", "2 LayerNorms", count(enc.res_attn) + count(enc.res_ffn), "2 × 2·d", 2 * norm),
        ("per decoder layer", "self- + cross-attention",
         count(dec.self_attn) + count(dec.cross_attn), "2 × (4·d² + 4·d)", 2 * attention),
        ("per decoder layer", "feed-forward", count(dec.ffn), "2·d·d_ff + d_ff + d", ffn),
        ("per decoder layer", "3 LayerNorms", sum(count(r) for r in (dec.res_self, dec.res_cross, dec.res_ffn)),
         "3 × 2·d", 3 * norm),
        ("whole model", "shared embedding / output matrix", count(model.src_embed), "vocab·d",
         c.src_vocab_size * d),
        ("whole model", f"all {3 * n} attention layers",
         sum(count(m) for m in model.modules() if isinstance(m, MultiHeadAttention)),
         "3·N × (4·d² + 4·d)", 3 * n * attention),
        ("whole model", f"all {2 * n} feed-forward networks",
         sum(count(m) for m in model.modules() if isinstance(m, FeedForward)), "2·N × FFN", 2 * n * ffn),
        ("whole model", f"all {5 * n} LayerNorms", sum(count(m) for m in model.modules() if isinstance(m, Residual)),
         "5·N × 2·d", 5 * n * norm),
        ("whole model", "total", model.num_parameters(), "sum of the four above", None),
    ]
    table = pd.DataFrame(rows, columns=["group", "part", "parameters", "formula", "formula value"])
    table.loc[table["part"] == "total", "formula value"] = table["formula value"].iloc[6:10].sum()
    assert (table["parameters"] == table["formula value"]).all()  # every count matches its formula
    return table.drop(columns="formula value").set_index(["group", "part"])


# %% slideshow={"slide_type": "subslide"}
# NBVAL_CHECK_OUTPUT
base_config = TransformerConfig.from_preset("base", src_vocab_size=37000, tgt_vocab_size=37000)
with torch.device("meta"):  # the full structure, without allocating its 250 MB of weights
    base_meta = Transformer(base_config)
breakdown = parameter_breakdown(base_meta)
print(f"base model (d = d_model = {base_config.d_model}, d_ff = {base_config.d_ff}, "
      f"N = {base_config.n_layers}, 37,000-token shared vocabulary):")
print(breakdown.to_string(formatters={"parameters": "{:,}".format}))

# %% slideshow={"slide_type": "-"}
b = breakdown["parameters"]
enc_attn, enc_ffn = b["per encoder layer", "self-attention"], b["per encoder layer", "feed-forward"]
dec_attn, dec_ffn = b["per decoder layer", "self- + cross-attention"], b["per decoder layer", "feed-forward"]
all_attn = b["whole model", f"all {3 * base_config.n_layers} attention layers"]
all_ffn = b["whole model", f"all {2 * base_config.n_layers} feed-forward networks"]
embedding, total = b["whole model", "shared embedding / output matrix"], b["whole model", "total"]
assert base_config.d_ff == 4 * base_config.d_model and 0 < dec_attn - dec_ffn < 2000
display(Markdown(
    f"**Takeaway:** in the base model {embedding / total:.0%} of the parameters are the shared "
    f"embedding. Within a layer the balance differs by stack: in an encoder layer the "
    f"feed-forward network ({enc_ffn:,}) holds {enc_ffn / enc_attn:.1f} times the parameters "
    f"of the self-attention ({enc_attn:,}); in a decoder layer the two attentions "
    f"({dec_attn:,}) and the feed-forward network ({dec_ffn:,}) are equal but for biases, "
    f"since `d_ff = 4·d_model` makes `2·d_model·d_ff = 8·d_model²`, the weight count of two "
    f"attentions (the attentions are {dec_attn - dec_ffn:,} larger). Over the whole model the "
    f"{2 * base_config.n_layers} feed-forward networks hold {all_ffn / 1e6:.1f}M parameters "
    f"and the {3 * base_config.n_layers} attention layers {all_attn / 1e6:.1f}M."))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Two guarantees: no peeking, no padding effects | 两个保证：不偷看，不受填充影响
#
# - **Causality**: the logits at target position `t` may depend on target tokens `0 … t` only.
#   Change a token and only the positions from it onwards may change.
# - **Padding**: appending padding to a source sentence (as batching does) must not change any
#   real output, because the padding mask removes those keys from every attention.

# %% slideshow={"slide_type": "-"}
with torch.no_grad():
    changed = tgt_in.clone()
    changed[:, 4] = 7  # a different token at position 4
    before = tiny(src, tgt_in)
    after = tiny(src, changed)
    moved = (after - before).abs().amax(dim=(0, 2))
print("largest change in the logits per target position:",
      [f"{m:.1e}" for m in moved.tolist()])
assert torch.all(moved[:4] == 0) and torch.all(moved[4:] > 0)  # past untouched, future affected

with torch.no_grad():
    padded = torch.cat([src, torch.full((2, 5), tiny.config.pad_id)], dim=1)
    gap = (tiny(padded, tgt_in) - tiny(src, tgt_in)).abs().max().item()
    memory_gap = (tiny.encode(padded)[:, :9] - tiny.encode(src)).abs().max().item()
print(f"5 padding tokens appended: logits change by at most {gap:.1e}, "
      f"encoder outputs at real positions by at most {memory_gap:.1e}")
assert gap < 1e-5 and memory_gap < 1e-5

# %% [markdown] slideshow={"slide_type": "-"}
# **Takeaway:** the decoder's causal mask and the encoder's padding mask are what make it
# legitimate to train on whole padded batches at once; both can be tested from the outside.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Generating one token at a time: the key/value cache | 逐词生成：键值缓存
#
# "At each step the model is auto-regressive, consuming the previously generated symbols as
# additional input when generating the next" (Section 3). Training sees the whole target at
# once; translating does not have it: step `t` feeds `BOS y₁ … y₍t−1₎` and keeps only the
# distribution at the last position. Rerunning the decoder over the whole prefix at every step
# repeats work, and the causality guarantee above says which work:
#
# - the output at position `i` depends on tokens `0 … i` only, so in every decoder layer the
#   **keys and values** of the earlier positions are the same at every later step: compute
#   them once and keep them (the cache);
# - the encoder-decoder keys and values depend on the source alone: once per sentence;
# - queries and outputs of earlier positions are never needed again: each step computes one new
#   query, key and value per layer and attends over the stored keys.
#
# In the package, `model.new_cache(memory, src_mask, capacity)` allocates the buffers once and
# `model.decode_step(tokens, cache)` feeds one token per row (`transformer/model/cache.py`).
# First the check that makes a cache legitimate: fed one position at a time, it must give the
# logits that the full decoder gives for the whole prefix.

# %% slideshow={"slide_type": "-"}
with torch.no_grad():
    full = tiny.decode(tgt_in, memory, tiny.padding_mask(src))  # (B, T, V): every position at once
    cache = tiny.new_cache(memory, tiny.padding_mask(src), capacity=tgt_in.size(1))
    stepped = torch.stack([tiny.decode_step(tgt_in[:, t], cache)  # (B, V) per step
                           for t in range(tgt_in.size(1))], dim=1)
step_gap = (stepped - full).abs().max().item()
layer0 = cache.layers[0]
print(f"{tgt_in.size(1)} steps of one token against one pass over {tgt_in.size(1)} tokens: "
      f"logits differ by at most {step_gap:.1e}")
print("cached per decoder layer: self-attention keys", tuple(layer0.k.shape),
      "(B, heads, positions, d_k), the same for values;")
print("                          source keys", tuple(layer0.cross_k.shape),
      "(B, heads, source length, d_k), the same for values")
assert step_gap < 1e-4

# %% [markdown] slideshow={"slide_type": "subslide"}
# What it saves: greedy decoding of 150 tokens for 16 sentences, timing every step, once
# rerunning the decoder over the prefix (as `model.decode(...)[:, -1]`: it computes, and
# projects to the vocabulary, every position and keeps the last) and once with the cache. Both
# must emit the same tokens.


# %% slideshow={"slide_type": "-"}
def greedy_step_times(model, src, n_steps, cached):
    """Seconds per step of greedy decoding, and the tokens, with or without the cache."""
    times = []
    with torch.no_grad():
        memory, src_mask = model.encode(src), model.padding_mask(src)
        cache = model.new_cache(memory, src_mask, capacity=n_steps) if cached else None
        ys = torch.full((src.size(0), 1), model.config.bos_id)
        for _ in range(n_steps):
            start = time.perf_counter()
            if cached:
                logits = model.decode_step(ys[:, -1], cache)  # one new position per row
            else:
                logits = model.decode(ys, memory, src_mask)[:, -1]  # the whole prefix again
            times.append(time.perf_counter() - start)
            ys = torch.cat([ys, logits.argmax(-1, keepdim=True)], dim=1)
    return times, ys


n_steps = 150
sources = torch.randint(4, 1000, (16, 30), generator=torch.Generator().manual_seed(0))
greedy_step_times(tiny, sources, 10, cached=False)  # warm-up
uncached_times, uncached_tokens = greedy_step_times(tiny, sources, n_steps, cached=False)
cached_times, cached_tokens = greedy_step_times(tiny, sources, n_steps, cached=True)
assert torch.equal(cached_tokens, uncached_tokens)  # the same translation, only cheaper
print(f"tiny model, 16 sentences, {n_steps} greedy steps, one thread: without the cache "
      f"{sum(uncached_times):.2f} s, with it {sum(cached_times):.2f} s "
      f"({sum(uncached_times) / sum(cached_times):.0f}x faster), identical tokens")
print(f"decoder positions computed per sentence: {n_steps * (n_steps + 1) // 2:,} without the "
      f"cache, {n_steps} with it")

# %% slideshow={"slide_type": "-"}
fig, ax = plt.subplots(figsize=(8, 4.5))
steps_axis = range(1, n_steps + 1)
ax.plot(steps_axis, [1000 * t for t in uncached_times], color="tab:red",
        label="whole prefix every step")
ax.plot(steps_axis, [1000 * t for t in cached_times], color="tab:blue",
        label="key/value cache, one position per step")
ax.set(title="Time per greedy decoding step, tiny model, batch 16 (one CPU thread)",
       xlabel="decoding step t (the prefix holds t tokens, BOS included)", ylabel="time per step (ms)")
ax.legend()
fig.tight_layout()
save_figure(fig, "05_kv_cache_step_time")
plt.show()

# %% slideshow={"slide_type": "subslide"}
base_per_token = 2 * base_config.n_layers * base_config.d_model * 4  # K and V, float32 bytes
model_bytes = 4 * base_meta.num_parameters()  # the base model's float32 weights
break_even = model_bytes / base_per_token
print(f"memory the cache costs in the base model: {base_per_token / 1024:.0f} KiB per generated "
      f"token per sentence (keys and values, {base_config.n_layers} layers x {base_config.d_model}"
      " numbers each, float32)")
print(f"the model's own weights: {model_bytes / 2**20:.0f} MiB, as much as the cache of "
      f"{break_even:,.0f} generated tokens (e.g. 32 sentences x beam 4 x {break_even / 128:.0f} "
      "tokens each)")

# %% [markdown] slideshow={"slide_type": "-"}
# Without the cache a step's time grows with the prefix, so generating `T` tokens costs about
# `T²/2` positions; with it every step computes one position and only the attention's reading of
# the stored keys still grows. The price is memory: it grows with the batch, the beam and the
# output length, and at the sizes printed above the cache weighs as much as the model itself
# (the cross-attention keys and values of the source cost as much again per source token).
#
# **Takeaway:** the cache is exact only because of the causal mask, and it is for inference
# only: training still processes every target position at once (teacher forcing), which is
# what made the Transformer fast to train in the first place.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Every sub-layer outputs d_model numbers | 每个子层都输出 d_model 维
#
# Each sub-layer's output is added to its input, `x + Sublayer(x)`, and two tensors can only be
# added if their shapes agree. So every sub-layer (each attention, each feed-forward network)
# must return `d_model` numbers per position, whatever it does inside, and so must the
# embeddings that start the sum. Section 3.1: "all sub-layers in the model, as well as the
# embedding layers, produce outputs of dimension d_model". The vector of `d_model` numbers per
# position that runs from the embeddings to the top of each stack, each sub-layer adding to
# it, is often called the **residual stream**. Inside a sub-layer the width is free: the
# feed-forward network widens to `d_ff`, the concatenated heads are `h · d_v` wide, and its last
# matrix (`W_2`, `W_O`) brings the result back to `d_model`.
#
# First the package's `Residual` block, at the `d_model` of the base and big presets, around a
# sub-layer that keeps the width and one that halves it:

# %% slideshow={"slide_type": "-"}
# NBVAL_CHECK_OUTPUT
for preset in ("base", "big"):
    d = TransformerConfig.from_preset(preset).d_model
    block, x = Residual(d, dropout=0.0, norm_first=False), torch.randn(2, 5, d)
    print(f"{preset}: d_model = {d}, input x of shape {tuple(x.shape)}")
    print(f"  sub-layer Linear({d} -> {d}): output of shape {tuple(block(x, nn.Linear(d, d)).shape)}")
    try:
        block(x, nn.Linear(d, d // 2))
    except RuntimeError as error:
        print(f"  sub-layer Linear({d} -> {d // 2}): RuntimeError: {str(error).splitlines()[0]}")
    else:
        raise AssertionError("a narrower sub-layer's output was added to the residual stream")

# %% [markdown] slideshow={"slide_type": "subslide"}
# Then the real models: one forward pass of base and big (on the meta device, so only shapes
# are computed), with a hook recording the last dimension of every tensor that joins the
# residual stream and of two tensors inside the sub-layers (the concatenated heads, the
# feed-forward network's hidden layer).


# %% slideshow={"slide_type": "-"}
def stream_widths(config):
    """Last dimensions seen in one forward pass, by kind of tensor: {kind: [width, ...]}."""
    widths = collections.defaultdict(list)

    def record(kind, inputs=False):
        def hook(module, args, output=None):
            tensor = args[0] if inputs else (output[0] if isinstance(output, tuple) else output)
            widths[kind].append(tensor.shape[-1])
        return hook

    with torch.device("meta"):
        model = Transformer(config).eval()
        source = torch.zeros(2, 9, dtype=torch.long)  # shapes only: meta tensors hold no values
        target = torch.zeros(2, 7, dtype=torch.long)
    model.dropout.register_forward_hook(record("embedding + position sums"))
    for layer in [*model.encoder, *model.decoder]:
        layer.register_forward_hook(record("layer outputs"))
        for module in layer.children():
            if isinstance(module, (MultiHeadAttention, FeedForward)):
                module.register_forward_hook(record("sub-layer outputs"))
            if isinstance(module, MultiHeadAttention):
                module.w_o.register_forward_pre_hook(record("inside: heads concatenated", inputs=True))
            if isinstance(module, FeedForward):
                module.w_1.register_forward_hook(record("inside: FFN hidden layer"))
    model(source, target)
    return widths


rows = {}
for preset in ("base", "big"):
    config = TransformerConfig.from_preset(preset)
    seen = stream_widths(config)
    rows[preset] = {"d_model": config.d_model, **{kind: f"{len(ws)} tensors, width "
                    + " / ".join(map(str, sorted(set(ws)))) for kind, ws in seen.items()}}
    for kind in ("embedding + position sums", "sub-layer outputs", "layer outputs"):
        assert set(seen[kind]) == {config.d_model}, (preset, kind)
    assert set(seen["inside: FFN hidden layer"]) == {config.d_ff}
    assert set(seen["inside: heads concatenated"]) == {config.n_heads * config.d_v}
print(pd.DataFrame(rows).to_string())

# %% slideshow={"slide_type": "-"}
display(Markdown(
    f"Every tensor that enters the residual stream is {rows['base']['d_model']} wide in base and "
    f"{rows['big']['d_model']} wide in big; only inside the sub-layers does the width change "
    "(the feed-forward network's hidden layer is `d_ff` wide).\n\n"
    "**Takeaway:** `d_model` is the one width the whole model shares, because the residual sum "
    "adds every sub-layer's output to its input; a sub-layer may be as wide as it likes inside, "
    "as long as its last matrix maps back to `d_model`."))


# %% [markdown] slideshow={"slide_type": "slide"}
# ## Residual connections and LayerNorm: post-norm vs pre-norm | 残差连接与层归一化：后置与前置
#
# The paper wraps every sub-layer as `LayerNorm(x + Dropout(Sublayer(x)))`: the normalisation
# comes **after** the residual sum (post-norm). Later work (Wang et al. 2019, Xiong et al. 2020)
# moved it **before** the sub-layer, `x + Dropout(Sublayer(LayerNorm(x)))` (pre-norm), which
# leaves a clean identity path from the top of the stack to the bottom and needs one final
# LayerNorm per stack. The package offers both (`norm_first`).
#
# The difference shows at initialisation already. We build a 12-layer stack (encoder and
# decoder, width 64), run one batch of random tokens, and measure the gradient norm of each
# layer's parameters.

# %% slideshow={"slide_type": "-"}
def layer_gradient_norms(norm_first, n_layers=12):
    torch.manual_seed(0)
    config = TransformerConfig.from_preset("tiny", n_layers=n_layers, d_ff=256, dropout=0.0,
                                           norm_first=norm_first)
    model = Transformer(config)
    data = torch.Generator().manual_seed(1)
    src = torch.randint(4, config.src_vocab_size, (16, 20), generator=data)
    tgt = torch.randint(4, config.tgt_vocab_size, (16, 21), generator=data)
    logits = model(src, tgt[:, :-1])
    F.cross_entropy(logits.flatten(0, 1), tgt[:, 1:].flatten()).backward()

    def norm(layer):
        return torch.sqrt(sum((p.grad**2).sum() for p in layer.parameters())).item()

    return {"encoder": [norm(layer) for layer in model.encoder],
            "decoder": [norm(layer) for layer in model.decoder]}


gradients = {"post-norm (paper)": layer_gradient_norms(False),
             "pre-norm (later work)": layer_gradient_norms(True)}
table = pd.DataFrame({(kind, stack): values for kind, stacks in gradients.items()
                      for stack, values in stacks.items()}, index=range(1, 13))
table.index.name = "layer"
print("gradient L2 norm of each layer's parameters at initialisation (one batch):")
print(table.round(3).to_string())

# %% slideshow={"slide_type": "subslide"}
fig, ax = plt.subplots(figsize=(8, 4.5))
for (kind, stack), values in table.items():
    ax.semilogy(table.index, values, "o-" if stack == "decoder" else "s--",
                color="tab:red" if kind.startswith("post") else "tab:blue", label=f"{kind}, {stack}")
ax.set(title="Gradient per layer at initialisation, 12-layer encoder-decoder",
       xlabel="layer (1 = nearest the embeddings)", ylabel="gradient L2 norm (log scale)")
ax.legend(fontsize=8)
fig.tight_layout()
save_figure(fig, "05_post_vs_pre_norm")
plt.show()

# %% slideshow={"slide_type": "subslide"}
post = gradients["post-norm (paper)"]["decoder"]
pre = gradients["pre-norm (later work)"]["decoder"]
print(f"decoder, top layer / bottom layer gradient: post-norm {post[-1] / post[0]:.0f}x, "
      f"pre-norm {pre[-1] / pre[0]:.2f}x")
print(f"decoder, top layer, post-norm / pre-norm gradient: {post[-1] / pre[-1]:.1f}x")
assert post[-1] / post[0] > 10  # post-norm: gradients shrink layer after layer going down
assert max(pre) / min(pre) < 3  # pre-norm: roughly even across depth
assert post[-1] > 2 * pre[-1]  # post-norm: larger gradients near the output

# %% [markdown] slideshow={"slide_type": "subslide"}
# What the measurement shows: in the post-norm decoder every LayerNorm on the way down rescales
# the gradient, so the bottom layers receive a small fraction of what the top layers get, and
# the top layers get more than in the pre-norm model. In the pre-norm stack the residual path
# carries the gradient to every layer with no such decay. (The post-norm *encoder* looks even,
# probably because its output feeds the cross-attention of every decoder layer, so its gradient
# does not have to cross the whole decoder stack.)
#
# What it does not show is the link to the learning-rate warm-up (notebook 06). The usual
# explanation is Xiong et al. 2020, "On Layer Normalization in the Transformer Architecture":
# they derive this pattern at initialisation (large gradients for the post-norm layers near the
# output, well-behaved ones with pre-norm), argue that a full learning rate from the first step
# therefore moves those layers too far, which the warm-up prevents, and train pre-norm models
# without a warm-up. We measured gradients at initialisation only, not training with and
# without a warm-up. Most deep Transformers built since use pre-norm; post-norm models that do
# train well are often reported to end slightly better, and the reproduction keeps the paper's
# choice by default.
#
# **Takeaway:** at initialisation the post-norm decoder's gradients shrink from its top layer
# downwards, while pre-norm keeps an identity path and spreads them evenly; the warm-up the
# paper's post-norm model needs is usually explained by this imbalance.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Embeddings: weight tying and √d_model | 嵌入：权重共享与 √d_model 缩放
#
# Section 3.4: the source embedding, the target embedding and the pre-softmax linear layer are
# one matrix `E` (a shared source-target vocabulary makes this possible), and the embeddings are
# multiplied by `√d_model`. The output layer computes `logits = h Eᵀ`: a token's score is the
# dot product between the decoder's output and that token's embedding.

# %% slideshow={"slide_type": "-"}
captured = {}
hook = tiny.decoder[-1].register_forward_hook(lambda m, i, out: captured.update(h=out))
with torch.no_grad():
    logits = tiny(src, tgt_in)
hook.remove()
assert tiny.src_embed.weight is tiny.tgt_embed.weight and tiny.generator is None
torch.testing.assert_close(logits, captured["h"] @ tiny.src_embed.weight.T)

with torch.device("meta"):
    untied = Transformer(base_config.replace(share_embeddings=False))
saving = untied.num_parameters() - base_meta.num_parameters()
print(f"tying saves {saving:,} parameters in the base model "
      f"(2 x 37000 x 512; {untied.num_parameters() / 1e6:.1f}M untied vs "
      f"{base_meta.num_parameters() / 1e6:.1f}M tied)")
assert saving == 2 * 37000 * 512

# %% [markdown] slideshow={"slide_type": "-"}
# Why `√d_model`? The package initialises embedding entries with standard deviation
# `d_model^(-1/2)` (as fairseq does), so an embedding vector has length about 1. A row of the
# sinusoid table has length exactly `√(d_model/2)` (each pair contributes `sin² + cos² = 1`),
# 16 for `d_model = 512`. Added unscaled, the position would drown the word; multiplied by
# `√d_model`, the word vector has length about 22.6, comparable to the position's.

# %% slideshow={"slide_type": "-"}
# NBVAL_CHECK_OUTPUT
one_layer = Transformer(TransformerConfig.from_preset("base", n_layers=1, src_vocab_size=1000,
                                                      tgt_vocab_size=1000))
E = one_layer.src_embed.weight.detach()[4:]  # real tokens (row 0 is padding, kept at zero)
pe_norm = sinusoidal_table(50, 512).norm(dim=-1)
word_norm, scaled_norm = E.norm(dim=-1).mean().item(), (E * math.sqrt(512)).norm(dim=-1).mean().item()
print(f"mean length of an embedding row           : {word_norm:.2f}")
print(f"mean length after multiplying by √512     : {scaled_norm:.1f}")
print(f"length of every sinusoid row (√(512 / 2)) : {pe_norm.mean().item():.1f}")
assert torch.allclose(pe_norm, torch.full_like(pe_norm, 16.0))
assert abs(word_norm - 1) < 0.05 and abs(scaled_norm - math.sqrt(512)) < 1

# %% slideshow={"slide_type": "-"}
display(Markdown(
    f"**Takeaway:** one matrix serves three roles and saves {saving / 1e6:.1f}M parameters in the "
    "base model; the `√d_model` factor puts word and position on the same scale before they "
    "are added."))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Dropout: where it acts and how much | Dropout：作用位置与比率
#
# Dropout (Srivastava et al. 2014) is, with label smoothing, one of the paper's two guards
# against over-fitting (Section 5.4). During training it sets each number of a tensor to zero
# with probability `P_drop` and multiplies the survivors by `1 / (1 − P_drop)`, so that the
# expected value is unchanged; in evaluation (`model.eval()`) it does nothing. Each training step thus trains a randomly thinned network,
# and no unit can rely on one particular other unit being present.

# %% slideshow={"slide_type": "-"}
dropout_demo = nn.Dropout(0.3)  # training mode, as a new module is
thinned = dropout_demo(torch.ones(100_000))
print(f"nn.Dropout(0.3) on 100,000 ones: {(thinned == 0).float().mean():.3f} of them zeroed, "
      f"the others set to {thinned.max():.4f} = 1 / 0.7; mean {thinned.mean():.3f}")
print("in eval mode it returns its input unchanged:",
      torch.equal(dropout_demo.eval()(torch.ones(5)), torch.ones(5)))

# %% [markdown] slideshow={"slide_type": "-"}
# Section 5.4 places it in two kinds of places: on the output of each sub-layer, before it is
# added to the sub-layer's input and normalised, and on the sums of the embeddings and the
# positional encodings, in both the encoder and the decoder. To list where the package applies
# it, we put a hook on every `nn.Dropout` module of the base model and count the calls during
# one forward pass in training mode (on the meta device), grouping the layers by their place.

# %% slideshow={"slide_type": "subslide"}
# NBVAL_CHECK_OUTPUT
with torch.device("meta"):
    base_train = Transformer(base_config)  # a new module is in training mode: dropout acts
    source, target = torch.zeros(2, 9, dtype=torch.long), torch.zeros(2, 7, dtype=torch.long)
WHERE = {"dropout": "sum of embeddings and positions (one module, both stacks)",
         "encoder.#.res_attn.dropout": "encoder self-attention output",
         "encoder.#.res_ffn.dropout": "encoder feed-forward output",
         "decoder.#.res_self.dropout": "decoder self-attention output",
         "decoder.#.res_cross.dropout": "decoder cross-attention output",
         "decoder.#.res_ffn.dropout": "decoder feed-forward output"}
modules, calls = collections.Counter(), collections.Counter()
for name, module in base_train.named_modules():
    if isinstance(module, nn.Dropout):
        place = re.sub(r"\.\d+\.", ".#.", name)  # layer number -> '#'
        modules[place] += 1
        module.register_forward_hook(lambda m, args, out, place=place: calls.update([place]))
base_train(source, target)
dropout_places = pd.DataFrame({"where it acts": WHERE, "nn.Dropout modules": modules,
                               "calls per forward pass": calls})
dropout_places.index.name = "module name (# = layer)"
print(dropout_places.to_string())
n = base_config.n_layers
assert set(modules) == set(WHERE) and modules.total() == 1 + 5 * n and calls.total() == 2 + 5 * n
attention_rates = {m.dropout for m in base_train.modules() if isinstance(m, MultiHeadAttention)}
print(f"\ntotal: {modules.total()} nn.Dropout modules, {calls.total()} dropout applications per "
      f"forward pass (N = {n}: 2 embedding sums + 2 per encoder layer + 3 per decoder layer)")
print(f"dropout on the attention weights (attn_dropout) in all {3 * n} attention layers: "
      f"p = {attention_rates}")
assert attention_rates == {base_config.attn_dropout} == {0.0}

# %% [markdown] slideshow={"slide_type": "-"}
# The rates: the same `P_drop` at every one of those places, set per model. Table 3's rows D1
# and D2 vary it for the base model, and the big model uses a higher rate for English-German
# than for English-French (Section 6.1). The rates below are read from the package's presets
# and from its `big-en-fr` training recipe; perplexity and BLEU are the paper's (newstest2013,
# base-model rows of Table 3).

# %% slideshow={"slide_type": "subslide"}
# NBVAL_CHECK_OUTPUT
en_fr = RECIPES["big-en-fr"].train
models = {"base": TransformerConfig.from_preset("base"),
          "D1 (base, no dropout)": TransformerConfig.from_preset("D1"),
          "D2 (base, more dropout)": TransformerConfig.from_preset("D2"),
          "big, EN-DE": TransformerConfig.from_preset("big"),
          "big, EN-FR (recipe big-en-fr)": TransformerConfig.from_preset(en_fr["preset"], **en_fr["model"])}
paper_dev = {"base": (4.92, 25.8), "D1 (base, no dropout)": (5.77, 24.6),
             "D2 (base, more dropout)": (4.95, 25.5)}  # Table 3: dev perplexity, BLEU
rates = pd.DataFrame([{"model": name, "d_model": c.d_model, "P_drop (residual, embeddings)": c.dropout,
                       "attn_dropout": c.attn_dropout,
                       "paper PPL (dev)": paper_dev.get(name, (None, None))[0],
                       "paper BLEU (dev)": paper_dev.get(name, (None, None))[1]}
                      for name, c in models.items()]).set_index("model")
print(rates.to_string(na_rep="-"))

# %% slideshow={"slide_type": "-"}
big_de, big_fr = models["big, EN-DE"].dropout, models["big, EN-FR (recipe big-en-fr)"].dropout
with torch.device("meta"):
    big_size = Transformer(models["big, EN-DE"].replace(src_vocab_size=37000, tgt_vocab_size=37000))
size_ratio = big_size.num_parameters() / base_meta.num_parameters()
assert big_de > models["base"].dropout == big_fr and models["D1 (base, no dropout)"].dropout == 0
display(Markdown(
    f"Without dropout (row D1) the base model's development perplexity rises from "
    f"{paper_dev['base'][0]} to {paper_dev['D1 (base, no dropout)'][0]} and BLEU falls by "
    f"{paper_dev['base'][1] - paper_dev['D1 (base, no dropout)'][1]:.1f}: dropout matters. "
    f"The big model, {size_ratio:.1f} times base's parameters, is trained on English-German with "
    f"`P_drop = {big_de}`, but on English-French with {big_fr}, base's rate. The paper states "
    "the rates without a reason; the usual one is the amount of data. WMT14 English-French has "
    "about 36M sentence pairs, English-German about 4.5M (Section 5.1): eight times as many "
    "examples. A model that sees each example less often over-fits less, so it needs less "
    "regularisation, and dropout beyond that need only slows learning; the large model on the "
    "smaller corpus needs the most.\n\n"
    f"**Takeaway:** dropout acts in {calls.total()} places per forward pass of the base model: "
    f"on every sub-layer's output before the residual sum ({5 * n} places) and on the "
    "embedding-plus-position sums of both stacks (2), never on the attention weights "
    f"(`attn_dropout = {models['base'].attn_dropout}`). Its rate is a per-model choice: "
    f"{models['base'].dropout} for base, {big_de} for big on EN-DE, {big_fr} for big on "
    "EN-FR's larger corpus."))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Table 3 parameter counts, every row | 表 3 参数量
#
# We count the parameters of each row of Table 3 in two ways: with a formula, and by building
# the model (on the meta device, as above: shapes without memory, so even the big model is
# instant). Both use a shared vocabulary of 37,000 tokens with tied embeddings, as in the
# paper's EN-DE setup.


# %% slideshow={"slide_type": "-"}
def count_parameters(c: TransformerConfig) -> int:
    """Parameters of the Transformer, from the hyper-parameters alone."""
    attention = (c.d_model * c.n_heads * c.d_k + c.n_heads * c.d_k) * 2 \
        + c.d_model * c.n_heads * c.d_v + c.n_heads * c.d_v \
        + c.n_heads * c.d_v * c.d_model + c.d_model  # W_Q, W_K, W_V, W_O with biases
    ffn = 2 * c.d_model * c.d_ff + c.d_ff + c.d_model
    norm = 2 * c.d_model
    encoder_layer = attention + ffn + 2 * norm
    decoder_layer = 2 * attention + ffn + 3 * norm
    embeddings = c.src_vocab_size * c.d_model if c.share_embeddings else \
        (c.src_vocab_size + 2 * c.tgt_vocab_size) * c.d_model
    positions = 2 * c.max_len * c.d_model if c.positional == "learned" else 0
    final_norms = 2 * norm if c.norm_first else 0
    return embeddings + c.n_layers * (encoder_layer + decoder_layer) + positions + final_norms


paper_params = {"base": 65, "B1": 58, "B2": 60, "C1": 36, "C2": 50, "C3": 80, "C4": 28,
                "C5": 168, "C6": 53, "C7": 90, "big": 213}  # millions; blank rows = base
rows = []
for name in PAPER_ROWS:
    c = TransformerConfig.from_preset(name, src_vocab_size=37000, tgt_vocab_size=37000)
    with torch.device("meta"):
        built = Transformer(c).num_parameters()
    assert built == count_parameters(c), name  # formula == built model, every row
    rows.append({"row": name, "N": c.n_layers, "d_model": c.d_model, "d_ff": c.d_ff,
                 "h": c.n_heads, "d_k": c.d_k, "d_v": c.d_v, "positions": c.positional,
                 "ours (M)": built / 1e6, "paper (M)": paper_params.get(name)})
params = pd.DataFrame(rows).set_index("row")
params["ours - paper"] = params["ours (M)"] - params["paper (M)"]
base_ours, base_paper = params.loc["base", "ours (M)"], paper_params["base"]
params["Δ vs base, ours"] = params["ours (M)"] - base_ours
params["Δ vs base, paper"] = params["paper (M)"].fillna(base_paper) - base_paper

# %% slideshow={"slide_type": "-"}
# NBVAL_CHECK_OUTPUT
print("Table 3 parameter counts, millions (37,000-token shared vocabulary, tied embeddings;")
print("the paper leaves A, D and E blank, meaning 'as base'):")
print(params.round(2).to_string(na_rep="-"))

# %% slideshow={"slide_type": "-"}
# two rows built for real (weights allocated and initialised) agree with the meta count
for name in ("C4", "C1"):
    c = TransformerConfig.from_preset(name, src_vocab_size=37000, tgt_vocab_size=37000)
    assert Transformer(c).num_parameters() == count_parameters(c), name
gap = params["ours - paper"].dropna()
assert (gap.drop("big") < 0).all() and (gap.drop("big") > -4.5).all()  # a few % low: base family
width_512 = params[(params["d_model"] == 512) & params["paper (M)"].notna()]
assert (width_512["Δ vs base, ours"] - width_512["Δ vs base, paper"]).abs().max() < 1.0
assert (params["Δ vs base, ours"] - params["Δ vs base, paper"]).abs().max() < 3.5
assert params.loc[["A1", "A2", "A3", "A4", "D1", "D2", "D3", "D4"], "Δ vs base, ours"].eq(0).all()

# %% slideshow={"slide_type": "subslide"}
family = gap.drop("big")  # the rows with a paper count, big excepted
by_width = {c: params.loc[name, "ours - paper"] for name, c in (("C4", 256), ("base", 512), ("C5", 1024))}
width_512_gap = gap[params.loc[gap.index, "d_model"] == 512]
extra_tokens = [-g * 1e6 / params.loc[name, "d_model"] for name, g in family.items()]
delta_gap = params["Δ vs base, ours"] - params["Δ vs base, paper"]
display(Markdown(f"""Reading the table:

- **The gap.** Our base model has {base_ours:.1f}M parameters; the paper says {base_paper}M. Every
  row of the base family sits between {-family.max():.1f}M and {-family.min():.1f}M below the
  paper, and the gap grows with `d_model`: {-by_width[256]:.1f}M at 256 (C4),
  {-width_512_gap.max():.1f}M to {-width_512_gap.min():.1f}M at 512, {-by_width[1024]:.1f}M at
  1024 (C5). A larger vocabulary would produce such a gap, since the embedding holds
  `vocabulary × d_model` parameters: each row's gap corresponds to {min(extra_tokens):,.0f} to
  {max(extra_tokens):,.0f} more tokens than 37,000. The paper calls its vocabulary "about 37000
  tokens" and does not say how it counted. The big model goes the other way
  ({params.loc["big", "ours (M)"]:.1f}M against {paper_params["big"]}M), so no single
  vocabulary size reconciles every row: treat the paper's figures as rounded estimates.
- **The differences agree.** What each row *changes* matches closely: within
  {(delta_gap[width_512.index]).abs().max():.1f}M of the paper for every width-512 row (for
  example C3, two more layers per stack: {params.loc["C3", "Δ vs base, ours"]:+.1f}M here,
  {params.loc["C3", "Δ vs base, paper"]:+.0f}M in the paper), within
  {delta_gap[params["d_model"] != 512].abs().max():.1f}M for the rows that change `d_model`.
- **Rows A and D** change heads, dropout or label smoothing and leave the count exactly
  unchanged. **Row E** adds a learned position table of `{base_config.max_len} × 512` per stack
  ({params.loc["E", "Δ vs base, ours"]:+.2f}M), which the paper's blank cell does not show; its
  table may have been shorter.

**Takeaway:** the architecture the package builds reproduces the paper's parameter budget
row by row up to an offset that a vocabulary a few thousand tokens larger would explain (big
excepted); the formula above is all it takes to predict a configuration's size before building
it."""))


# %% [markdown] slideshow={"slide_type": "slide"}
# ## Exercises | 练习
#
# 1. Use `count_parameters` to find a configuration with `d_model = 512` and about 100M
#    parameters. Which knob (N, d_ff, h) gets you there most cheaply in FLOPs per token?
# 2. Rerun the gradient experiment with 24 layers. How does the post-norm ratio between the top
#    and the bottom decoder layer scale with depth?
# 3. Set `share_embeddings=False` and recount. Which three matrices replace the shared one?
# 4. Remove the `√d_model` factor mentally: with unscaled embeddings, what fraction of the
#    length of `embedding + position` comes from the position at `d_model = 512`?
