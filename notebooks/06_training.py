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
# # Training | 训练
#
# **What you will learn**
#
# - how real sentences (Multi30k, English → German, the paper's direction) become subword ids
#   in **one vocabulary shared by both languages**, and which ids are reserved (Section 5.1);
# - why the paper counts batches in **tokens** and groups sentences of similar length, measured
#   as the share of padding this saves;
# - the **learning-rate schedule** of Section 5.3, drawn for the paper's settings, and why it
#   warms up;
# - what **label smoothing** (Section 5.4) does to the target distribution and to the loss, and
#   why the paper says it makes perplexity worse and BLEU better; then whether our own run
#   shows it, against a twin trained without smoothing;
# - how to run a real training with the package, watch it live, and read its curves back from
#   the run's JSON-lines log.
#
# Two profiles decide the size of the run (`transformer.apps.profiles`): **cpu** trains a small
# model for a fixed number of steps (a few minutes on a 2-core machine; the training cell
# prints how long it took here), **gpu** trains the paper's base model on Multi30k. The first
# line of output says which one produced the outputs stored in this notebook.

# %% slideshow={"slide_type": "-"}
import math
import textwrap
import time

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from IPython.display import Markdown, display

from transformer.apps import notebook
from transformer.apps.profiles import banner, resolve_profile
from transformer.apps.recipes import RECIPES
from transformer.apps.viz import save_figure
from transformer.data import padding_fraction
from transformer.data.batching import token_batches
from transformer.engine.bleu import sacrebleu_score
from transformer.engine.evaluate import evaluate_loss, translate
from transformer.engine.runtime import display_path, move_batch
from transformer.engine.schedule import WARMUP_STEPS, build_scheduler, transformer_lr
from transformer.engine.train import build_model_config
from transformer.model import Transformer

PROFILE = resolve_profile()  # "cpu" or "gpu": see the first line of output

# one thread: this model is too small to gain much from a second, and a run that shares the
# machine (make notebooks executes two notebooks at once) slows down badly with two
torch.set_num_threads(1)
torch.manual_seed(0)
print(banner())
pd.set_option("display.width", 120)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Data and the shared subword vocabulary | 数据与共享子词词表
#
# The paper trains on WMT 2014 English-German, 4.5 million sentence pairs. That is far too much
# for a notebook, so we use **Multi30k** (Elliott et al., 2016): 29,000 English descriptions of
# Flickr images with German translations, plus validation and test sets of about 1,000
# sentences each. It is the standard small translation benchmark; we translate English →
# German, the direction of the paper's Table 2. (If the corpus cannot be had, neither cached,
# nor downloadable, nor in a mirror, the package falls back to its embedded English → German
# number-words task and says so below.)
#
# Words are cut into **subwords** with byte-pair encoding (BPE): start from characters and
# repeatedly merge the most frequent adjacent pair, until the vocabulary has the requested size.
# Frequent words stay whole, rare words fall apart into known pieces, so no word is ever out of
# vocabulary. As in the paper, one vocabulary is learnt on **both languages together**, which
# lets the model tie its source embedding, target embedding and output projection into one
# matrix (Section 3.4). Our vocabulary has 8,000 entries; the paper's WMT one has about 37,000.

# %% slideshow={"slide_type": "subslide"}
dataset, data_note = notebook.notebook_dataset()
tokenizer = dataset.tokenizer
if dataset.name != "multi30k":
    print("NOTE: Multi30k is not available here; this notebook uses the embedded numbers task:",
          data_note)
print(f"dataset: {dataset.name}, {dataset.src_lang} -> {dataset.tgt_lang}")
for split in dataset.splits:
    print(f"  {split:>17}: {len(dataset.texts(split)[0]):6d} sentence pairs")
print(f"shared vocabulary: {tokenizer.vocab_size} subword types, for both languages")
specials = {name: getattr(tokenizer, f"{name}_id") for name in ("pad", "bos", "eos", "unk")}
print("special ids:", {k: f"{v} = {tokenizer.id_to_token(v)}" for k, v in specials.items()})
assert specials == {"pad": 0, "bos": 1, "eos": 2, "unk": 3}  # what TransformerConfig expects

# %% [markdown] slideshow={"slide_type": "-"}
# Here are three training pairs and the pieces BPE cuts them into. The `▁` marks a piece that
# starts a new word (it stands for the space in front of it), which is how `decode` puts the
# spaces back. Punctuation marks are pieces of their own, cut off before BPE learns its merges:
# otherwise `Büsche.`, `Büsche,` and `Büsche` would take three entries of the vocabulary. On
# Multi30k German → English this one change raised the cpu profile's test BLEU by about 3 points
# (beam 4) at the same number of training steps.

# %% slideshow={"slide_type": "subslide"}
src_train, tgt_train = dataset.texts("train")
for i in (0, 1, 2):
    for side, text in ((dataset.src_lang, src_train[i]), (dataset.tgt_lang, tgt_train[i])):
        pieces = tokenizer.tokens(text)
        print(f"{side}: {text}")
        print(f"    {len(text.split())} words -> {len(pieces)} subwords: {' '.join(pieces)}")
        assert tokenizer.decode(tokenizer.encode(text)) == text  # the round trip is exact
    print()

# %% [markdown] slideshow={"slide_type": "-"}
# How much of the vocabulary does each language use? The merges were learnt on both sides at
# once, so many pieces (names, numbers, punctuation, shared word stems) serve both languages.

# %% slideshow={"slide_type": "subslide"}
examples = dataset.examples("train")  # subword ids without specials, after filtering
src_ids = np.concatenate([np.asarray(s) for s, _ in examples])
tgt_ids = np.concatenate([np.asarray(t) for _, t in examples])
used_src, used_tgt = set(np.unique(src_ids).tolist()), set(np.unique(tgt_ids).tolist())
print(f"training pairs kept after filtering: {len(examples)} "
      f"(dropped: {dataset.filter_report['train']['total'] - len(examples)})")
print(f"subword types used by {dataset.src_lang} only: {len(used_src - used_tgt)}, "
      f"by {dataset.tgt_lang} only: {len(used_tgt - used_src)}, by both: {len(used_src & used_tgt)}")
words_src = sum(len(s.split()) for s in src_train)
words_tgt = sum(len(t.split()) for t in tgt_train)
print(f"subwords per word: {dataset.src_lang} {len(src_ids) / words_src:.2f}, "
      f"{dataset.tgt_lang} {len(tgt_ids) / words_tgt:.2f} (German compounds split more often)")

# %% [markdown] slideshow={"slide_type": "-"}
# **Takeaway:** the model never sees words, only ids from one shared table of subwords. Ids 0–3
# are reserved for padding, begin-of-sentence, end-of-sentence and unknown; every sentence can
# be encoded and decoded back exactly.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Batches by token count | 按词元数组批
#
# Section 5.1: "Sentence pairs were batched together by approximate sequence length. Each
# training batch contained a set of sentence pairs containing approximately 25000 source tokens
# and 25000 target tokens." Two ideas are in that sentence.
#
# 1. **Count tokens, not sentences.** The cost of a step grows with the number of positions, so
#    a fixed token budget keeps every step about equally expensive, whether it holds many short
#    sentences or a few long ones. The package's budget `max_tokens` bounds the padded size of
#    each side: `rows × longest source ≤ max_tokens` and the same for the target.
# 2. **Group by length.** A batch is a rectangle: every row is padded to its longest sentence.
#    Mixing a 5-token sentence with a 40-token one wastes 35 positions of compute on padding.
#
# We measure the second point. `dataset.batches` sorts pairs by length before cutting; the
# alternative cuts a random order with the *same* rule (`token_batches`), so the only difference
# is the order.

# %% slideshow={"slide_type": "subslide"}
src_len = np.array([len(s) + 1 for s, _ in examples])  # + EOS
tgt_len = np.array([len(t) + 1 for _, t in examples])  # + BOS (input) or EOS (output)
by_length = np.lexsort((tgt_len, src_len))  # sort by source length, then target length
shuffled = np.random.default_rng(0).permutation(len(examples))


def pad_share(batches):
    """Share of padded positions over a list of batches (lists of example indices)."""
    real = sum(src_len[b].sum() + tgt_len[b].sum() for b in batches)
    total = sum(len(b) * (src_len[b].max() + tgt_len[b].max()) for b in batches)
    return 1 - real / total


budgets = [500, 1000, 2000, 4000, 8000, 25000]
rows = []
for budget in budgets:
    bucketed = token_batches(src_len, tgt_len, budget, by_length)
    random_ = token_batches(src_len, tgt_len, budget, shuffled)
    rows.append({"max_tokens": budget, "bucketed: batches": len(bucketed),
                 "bucketed: padding %": 100 * pad_share(bucketed),
                 "random: batches": len(random_), "random: padding %": 100 * pad_share(random_)})
padding = pd.DataFrame(rows).set_index("max_tokens")
print(padding.round(1).to_string())

# the package's own batches agree with the computation above
package_share = padding_fraction(dataset.batches("train", 2000, shuffle=False))
assert abs(package_share - padding.loc[2000, "bucketed: padding %"] / 100) < 1e-9
assert (padding["bucketed: padding %"] < padding["random: padding %"]).all()

# %% slideshow={"slide_type": "subslide"}
fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
bins = np.arange(0, max(src_len.max(), tgt_len.max()) + 2)
axes[0].hist(src_len, bins=bins, alpha=0.6, label=f"source ({dataset.src_lang}) + EOS")
axes[0].hist(tgt_len, bins=bins, alpha=0.6, label=f"target ({dataset.tgt_lang}) + EOS")
axes[0].set(title="Training sentence lengths in subwords", xlabel="length (subword tokens)",
            ylabel="sentence pairs")
axes[0].legend()
axes[1].plot(budgets, padding["random: padding %"], "o-", label="random order")
axes[1].plot(budgets, padding["bucketed: padding %"], "o-", label="sorted by length (package)")
axes[1].set_xscale("log")
axes[1].set(title="Padding in token-budget batches", xlabel="max_tokens per batch (log scale)",
            ylabel="padded positions (% of all positions)", ylim=(0, 70))
axes[1].legend()
fig.tight_layout()
save_figure(fig, "06_padding")
plt.show()

# %% [markdown] slideshow={"slide_type": "-"}
# With random batches about half of every tensor is padding: half the compute of each step
# would be thrown away, and each batch holds half as many sentences. Sorting by length brings
# the waste down to a few percent. (It grows with the budget because one big batch spans more
# different target lengths.) Sorting alone would feed the model all the short sentences first,
# so the package shuffles the *order of the batches* every epoch.
#
# **Takeaway:** batch by token count, grouped by length: every step costs about the same and
# almost all of it is spent on real tokens.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## The learning-rate schedule | 学习率调度
#
# Section 5.3 uses Adam with β₁ = 0.9, β₂ = 0.98, ε = 10⁻⁹ and changes the learning rate at
# every step:
#
# $$\mathit{lrate} = d_\text{model}^{-0.5} \cdot \min\left(\mathit{step}^{-0.5},\;
# \mathit{step} \cdot \mathit{warmup\_steps}^{-1.5}\right), \qquad \mathit{warmup\_steps} = 4000.$$
#
# The two terms cross at `step = warmup_steps`: before it the rate grows linearly, after it it
# decays as one over the square root of the step. The peak is
# $d_\text{model}^{-0.5} \cdot \mathit{warmup\_steps}^{-0.5}$, so wider models get smaller
# rates. `transformer.engine.schedule.transformer_lr` is the formula; `build_scheduler` hands it to a
# PyTorch optimizer.
#
# *Why warm up at all?* At step 1 Adam knows almost nothing about the size of each gradient: its
# running averages rest on one or two samples, so its per-parameter step sizes are unreliable.
# A post-norm Transformer (the paper's) is also fragile early on, when large updates to the last
# layers can push activations where LayerNorm gradients are tiny. Starting with small steps
# lets the statistics settle before the steps get big; without it the paper's base model often
# diverges or gets stuck.

# %% slideshow={"slide_type": "subslide"}
# NBVAL_CHECK_OUTPUT
steps = np.arange(1, 100_001)  # the base model trains for 100k steps
settings = [(512, 4000, "base: d_model 512, warmup 4000 (paper)"),
            (512, 1000, "d_model 512, warmup 1000"),
            (512, 8000, "d_model 512, warmup 8000"),
            (1024, 4000, "big: d_model 1024, warmup 4000")]
curves = {}
for d_model, warmup, label in settings:
    lr = np.array([transformer_lr(int(s), d_model, warmup) for s in steps])
    curves[label] = lr
    peak_step = int(steps[lr.argmax()])
    assert peak_step == warmup  # the rate peaks exactly at the end of warm-up ...
    assert math.isclose(lr.max(), d_model**-0.5 * warmup**-0.5)  # ... at this value
    print(f"{label:<40} peak {lr.max():.3e} at step {peak_step:>5}; "
          f"at step 100000: {lr[-1]:.3e}")

# build_scheduler gives optimizer update k exactly transformer_lr(k)
w = torch.nn.Parameter(torch.zeros(1))
optimizer = torch.optim.Adam([w], lr=1.0, betas=(0.9, 0.98), eps=1e-9)
scheduler = build_scheduler(optimizer, d_model=512)
applied = []
for _ in range(5):
    applied.append(optimizer.param_groups[0]["lr"])
    optimizer.step()
    scheduler.step()
assert np.allclose(applied, [transformer_lr(k, 512) for k in range(1, 6)])
print("build_scheduler: updates 1..5 use", ", ".join(f"{x:.3e}" for x in applied))

# %% slideshow={"slide_type": "-"}
run_settings = RECIPES[f"notebook-{PROFILE}"].train
run_d_model = run_settings.get("model", {}).get("d_model", 512)
run_warmup = run_settings["warmup"]
fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
for label, lr in curves.items():
    axes[0].plot(steps, lr * 1e3, label=label, lw=2 if "paper" in label else 1.2)
axes[0].axvline(WARMUP_STEPS, color="grey", ls=":", lw=1)
axes[0].set(title="Section 5.3 schedule over the base model's 100k steps",
            xlabel="optimizer step", ylabel="learning rate (×10⁻³)")
axes[0].legend(fontsize=8)
short = np.arange(1, 3001)
axes[1].plot(short, [transformer_lr(int(s), run_d_model, run_warmup) * 1e3 for s in short],
             label=f"this notebook's run: d_model {run_d_model}, warmup {run_warmup}")
axes[1].plot(short, [transformer_lr(int(s), 512, 4000) * 1e3 for s in short],
             label="paper base: d_model 512, warmup 4000")
axes[1].set(title=f"The first 3000 steps ({PROFILE} profile run vs paper)",
            xlabel="optimizer step", ylabel="learning rate (×10⁻³)")
axes[1].legend(fontsize=8)
fig.tight_layout()
save_figure(fig, "06_lr_schedule")
plt.show()

# %% [markdown] slideshow={"slide_type": "subslide"}
# On the left: a longer warm-up peaks later and lower, a wider model (big) runs at a lower rate
# throughout, and all curves end close together, around 1–2 × 10⁻⁴, after 100k steps. On the
# right: a CPU run lasts only a few hundred steps, so with the paper's 4000 warm-up steps it
# would never leave the ramp. The notebook run (cpu profile) keeps the formula and shortens the
# warm-up to 400 steps; its narrower model (d_model 128) raises the peak by the same formula.
# (The gpu profile trains the base model on Multi30k with a 1000-step warm-up at half the
# paper's rate: the same peak, 7 × 10⁻⁴, as the left panel's thick curve, reached four times
# sooner, because Multi30k is 150 times smaller than WMT14.)
#
# **Takeaway:** the schedule is a linear ramp to a peak at `step = warmup_steps`, of height
# $(d_\text{model} \cdot \mathit{warmup\_steps})^{-1/2}$, then an inverse-square-root decay.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Label smoothing | 标签平滑
#
# Section 5.4: "During training, we employed label smoothing of value ε_ls = 0.1. This hurts
# perplexity, as the model learns to be more unsure, but improves accuracy and BLEU score."
#
# Without smoothing the target for each position is one-hot: all probability on the reference
# token. With smoothing (Szegedy et al., 2016) the target keeps 1 − ε of that mass and spreads ε
# evenly over all V vocabulary entries:
#
# $$q(k) = (1 - \varepsilon)\,[k = y] + \frac{\varepsilon}{V}.$$
#
# The loss is the cross-entropy $-\sum_k q(k) \log p(k)$ against this $q$. This is what
# `F.cross_entropy(..., label_smoothing=ε)` computes and what the package's trainer uses
# (`transformer/engine/loss.py`); padding positions are skipped.
#
# Two consequences follow from writing the loss as entropy plus divergence,
# $H(q, p) = H(q) + \mathrm{KL}(q \,\|\, p)$:
#
# - the best prediction is $p = q$ itself, and the **loss cannot go below $H(q)$**, the entropy
#   of the smoothed target;
# - a perfectly confident one-hot prediction is no longer ideal: it puts probability 0 on
#   tokens where $q$ has ε/V, so its loss is **infinite**.

# %% slideshow={"slide_type": "subslide"}
# NBVAL_CHECK_OUTPUT
eps = 0.1
V = 8000  # the size of our Multi30k vocabulary


def smoothed_target(y, V, eps):
    q = torch.full((V,), eps / V, dtype=torch.float64)
    q[y] += 1 - eps
    return q


def losses(p_true, V, eps):
    """(smoothed loss, plain NLL) when the model gives p_true to the reference token and spreads
    the rest evenly; computed with F.cross_entropy, as the trainer does."""
    p = torch.full((1, V), (1 - p_true) / (V - 1), dtype=torch.float64)
    p[0, 0] = p_true
    logits, target = p.log(), torch.tensor([0])
    return (F.cross_entropy(logits, target, label_smoothing=eps).item(),
            F.cross_entropy(logits, target).item())


def floor_of(V, eps):
    """H(q), the entropy of the smoothed target: the lowest reachable smoothed loss."""
    q = smoothed_target(0, V, eps)
    return -(q * q.log()).sum().item()


q = smoothed_target(0, V, eps)
floor = floor_of(V, eps)
best_loss, best_nll = losses(q[0].item(), V, eps)  # predicting q itself
print(f"V = {V}, eps = {eps}: target prob of the reference token {q[0]:.6f}, "
      f"of every other token {q[1]:.2e}")
print(f"loss floor H(q)                       = {floor:.4f} nats per token")
print(f"smoothed loss of the prediction p = q = {best_loss:.4f} nats (its NLL {best_nll:.4f}, "
      f"perplexity {math.exp(best_nll):.4f})")
assert math.isclose(best_loss, floor, rel_tol=1e-12)  # the floor is reached at p = q
print("\np(reference)   smoothed loss   NLL (no smoothing)")
for p_true in (0.5, 0.9, 0.99, 0.9999, 1 - 1e-12):
    smooth, nll = losses(p_true, V, eps)
    assert smooth >= floor
    print(f"{p_true:<14.12g} {smooth:>13.4f}   {nll:>10.6f}")
one_hot = torch.full((1, V), -float("inf"), dtype=torch.float64)
one_hot[0, 0] = 0.0  # log-probabilities of a perfectly certain prediction
perfect_smooth = F.cross_entropy(one_hot, torch.tensor([0]), label_smoothing=eps).item()
perfect_nll = F.cross_entropy(one_hot, torch.tensor([0])).item()
print(f"one-hot prediction: smoothed loss {perfect_smooth}, NLL {perfect_nll}")
assert math.isinf(perfect_smooth) and perfect_nll == 0.0
assert round(floor, 2) == 1.22 and round(1 / q[0].item(), 2) == 1.11  # quoted in the prose below

# %% slideshow={"slide_type": "subslide"}
fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
V_toy = 10
axes[0].bar(np.arange(V_toy) - 0.2, smoothed_target(3, V_toy, 0.0), width=0.4,
            label="one-hot target (ε = 0)")
axes[0].bar(np.arange(V_toy) + 0.2, smoothed_target(3, V_toy, eps), width=0.4,
            label=f"smoothed target (ε = {eps})")
axes[0].set(title=f"Target distribution, toy vocabulary of {V_toy}, reference = token 3",
            xlabel="vocabulary entry k", ylabel="target probability q(k)", xticks=range(V_toy))
axes[0].legend()
miss = np.logspace(-10, np.log10(0.7), 400)  # 1 - p(reference), from unsure to certain
axes[1].plot(miss, [-math.log(1 - m) for m in miss], label="no smoothing: −log p (→ 0)")
axes[1].plot(miss, [losses(1 - float(m), V, eps)[0] for m in miss],
             label=f"smoothed, ε = {eps} (→ ∞ as p → 1)")
axes[1].axhline(floor, color="grey", ls=":", label=f"floor H(q) = {floor:.2f} nats")
axes[1].plot([1 - q[0].item()], [floor], "ko")
axes[1].annotate(f"minimum at p = 1 − ε + ε/V ≈ {q[0]:.3f}", (1 - q[0].item(), floor),
                 xytext=(3e-2, 2.6), arrowprops=dict(arrowstyle="->"))
axes[1].set_xscale("log")
axes[1].invert_xaxis()  # more confident to the right
axes[1].set(title=f"Loss per token vs confidence (V = {V})",
            xlabel="1 − p(reference token), log scale (more confident →)",
            ylabel="loss (nats per token)", ylim=(0, 4.5))
axes[1].legend(fontsize=8)
fig.tight_layout()
save_figure(fig, "06_label_smoothing")
plt.show()

# %% [markdown] slideshow={"slide_type": "-"}
# The smoothed loss falls until p ≈ 0.9 and then climbs without bound: every factor of ten
# closer to certainty costs about ε · ln 10 ≈ 0.23 nats more. A model trained this way learns to
# keep about 10% of its probability off the top token. Since
# perplexity is measured against the one-hot reference, exp(−log p) with p ≈ 0.9 at best, the
# **perplexity goes up** (even a model that knows every answer would report about 1.11 instead
# of 1). The ranking of tokens is untouched, though, and the softer targets act as a regulariser
# against over-confident, over-fitted predictions, so **accuracy and BLEU go up**. The paper's
# own Table 3 (EN-DE, newstest2013, per-subword perplexity) shows both effects:

# %% slideshow={"slide_type": "subslide"}
# NBVAL_CHECK_OUTPUT
table3_ls = pd.DataFrame(
    {"row": ["D3", "base", "D4"], "eps_ls": [0.0, 0.1, 0.2], "PPL (dev)": [4.67, 4.92, 5.47],
     "BLEU (dev)": [25.3, 25.8, 25.7]}).set_index("row")
print("Vaswani et al. (2017), Table 3, rows with different label smoothing:")
print(table3_ls)
assert table3_ls["PPL (dev)"].is_monotonic_increasing  # more smoothing, higher perplexity
assert table3_ls.loc["base", "BLEU (dev)"] > table3_ls.loc["D3", "BLEU (dev)"]

# %% [markdown] slideshow={"slide_type": "-"}
# **Takeaway:** with ε = 0.1 and our 8,000-entry vocabulary, the training loss has a floor of
# about 1.22 nats per token and a perfectly sure prediction costs infinitely much. Read training
# losses against that floor, and read perplexities knowing smoothing inflates them.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## A real training run | 一次真实的训练
#
# `transformer.apps.notebook.notebook_run()` trains the notebook's model with the package's engine
# (`transformer.engine.train.train`: token-budget batches, Adam with the schedule above, label
# smoothing, dropout, a validation pass every few hundred steps, checkpoints) and returns it.
# Its settings depend on the profile. Both are *recipes* of `transformer/apps/recipes.py`
# (`notebook-cpu`, `notebook-gpu`), the one table of named runs, where each setting's reasons
# are written beside it. The table below is built from them (the paper's base model: dropout
# 0.1, label smoothing 0.1, warm-up 4000, 25,000 tokens per step, 100,000 steps); the cell
# after it prints the recipe of this profile with its reasons.

# %% slideshow={"slide_type": "-"}
def recipe_row(profile):
    cfg = notebook.notebook_config(profile, dataset)
    mc = build_model_config(cfg, dataset.tokenizer)
    stop = (f"{cfg.max_steps:,} steps" if not cfg.patience else
            f"validation loss stops improving ({cfg.patience} checks without a new best)")
    return (f"| {profile} | N = {mc.n_layers}, d_model = {mc.d_model}, d_ff = {mc.d_ff}, "
            f"h = {mc.n_heads} ({Transformer(mc).num_parameters() / 1e6:.1f}M parameters) | "
            f"{mc.dropout:g} | {mc.label_smoothing:g} | ≤ {cfg.max_tokens:,} tokens | "
            f"warm-up {cfg.warmup:,}, rate × {cfg.lr_scale:g} | {stop}, "
            f"at most {cfg.time_budget:g} min |")


display(Markdown("| profile | model | dropout | label smoothing | batches | schedule | stops after |\n"
                 "|---|---|---|---|---|---|---|\n" + "\n".join(map(recipe_row, ("cpu", "gpu")))))
#
# Everything the run does is written to its run directory under `runs/` (git-ignored, or the
# folder named by `TRANSFORMER_RUNS_DIR`):
# `config.json`, `log.jsonl` (one JSON object per logged step and per validation),
# `checkpoints/`, `summary.json`. A **finished run is reused**: executing this cell again loads
# it instead of training again (pass `retrain=True` to start afresh). On the gpu profile an
# interrupted run resumes from its last checkpoint.
#
# The progress bar shows the step, the running loss (label-smoothed, nats per target token),
# the learning rate and the throughput in target tokens per second.

# %% slideshow={"slide_type": "subslide"}
recipe = RECIPES[f"notebook-{PROFILE}"]
print(f"recipe notebook-{PROFILE}: {recipe.what}")
print(textwrap.fill(f"why: {recipe.why}", 100, subsequent_indent="     "))
print("settings: " + ", ".join(f"{k}={v}" for k, v in recipe.train.items()))
if PROFILE == "gpu":
    print("gpu profile: the base model trains until the validation loss stops improving "
          "(at most 30 minutes); this happens only once, later runs reuse it.")
t0 = time.perf_counter()
run = notebook.notebook_run()
elapsed = time.perf_counter() - t0
summary = run.summary
print(f"\n{'reused' if run.reused else 'trained'} in {elapsed:.1f} s (wall clock of this cell)")
print(f"run dir: {display_path(run.run_dir)}")
print(f"optimizer steps: {summary['steps']}, epochs: {summary['epochs']:.2f}, "
      f"target tokens seen: {summary['tokens']:,}")
print(f"training wall time: {summary['wall_time']:.0f} s, "
      f"throughput: {summary['tokens_per_s']:,.0f} target tokens/s on {summary['device']}")
print(f"parameters: {summary['parameters']:,}; checkpoints kept: "
      f"{[p.name for p in run.checkpoints()]}")
stopped = ("as its recipe asks" if summary["stopped"] != "time_budget" else
           f"cut short by its {run.config.time_budget:g}-minute time budget: this machine was "
           "slow or busy")
display(Markdown(
    f"This run: **{summary['steps']:,} steps in {summary['wall_time']:.0f} s** "
    f"({summary['wall_time'] / 60:.1f} minutes) of training on {summary['device']}, "
    f"{summary['parameters'] / 1e6:.2f}M parameters, dropout {run.model.config.dropout:g}, "
    f"label smoothing {run.model.config.label_smoothing:g}; it stopped {stopped}."))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Reading the curves | 训练曲线
#
# The run's log holds one record every few steps (`"kind": "train"`: the label-smoothed loss
# averaged since the previous record, the learning rate, the gradient norm, tokens per second)
# and one per validation (`"kind": "val"`: the smoothed loss and the perplexity, i.e.
# exp of the *unsmoothed* negative log-likelihood per target subword, on the whole validation
# set, with dropout off).

# %% slideshow={"slide_type": "-"}
train_log = pd.DataFrame(run.log("train"))
val_log = pd.DataFrame(run.log("val"))
print(f"{len(train_log)} training records, {len(val_log)} validation records; last two:")
print(train_log[["step", "loss", "lr", "grad_norm", "tokens_per_s", "epoch"]].tail(2)
      .to_string(index=False))
print(val_log[["step", "loss", "nll", "ppl"]].to_string(index=False))

mc = run.model.config  # the run's own vocabulary and smoothing give its loss floor
run_floor = floor_of(mc.tgt_vocab_size, mc.label_smoothing)
first_loss, last_loss = train_log["loss"].iloc[0], train_log["loss"].iloc[-3:].mean()
assert last_loss < first_loss - 2.0, "the training loss should fall by more than 2 nats"
assert val_log["loss"].iloc[-1] < val_log["loss"].iloc[0] or len(val_log) == 1
assert (train_log["loss"] > run_floor - 0.05).all()  # never (meaningfully) below H(q)
# the trainer follows the schedule: update k runs with transformer_lr(k)
d_model_run = run.model.config.d_model
expected_lr = [transformer_lr(int(s), d_model_run, run.config.warmup, run.config.lr_scale)
               for s in train_log["step"]]
assert np.allclose(train_log["lr"], expected_lr)
print(f"\ntraining loss: {first_loss:.2f} -> {last_loss:.2f} nats per target token "
      f"(floor H(q) = {run_floor:.2f}); validation perplexity: {val_log['ppl'].iloc[0]:.1f} -> "
      f"{val_log['ppl'].iloc[-1]:.1f}")

# %% slideshow={"slide_type": "subslide"}
fig, axes = plt.subplots(2, 2, figsize=(12, 8))
ax = axes[0, 0]
ax.plot(train_log["step"], train_log["loss"],
        label=f"training (running mean, dropout {mc.dropout})")
ax.plot(val_log["step"], val_log["loss"], "o-", label="validation (eval mode)")
ax.axhline(run_floor, color="grey", ls=":", label=f"floor H(q) = {run_floor:.2f}")
ax.set(title="Label-smoothed loss", xlabel="optimizer step", ylabel="loss (nats per target token)")
ax.legend()
ax = axes[0, 1]
ax.plot(val_log["step"], val_log["ppl"], "o-", color="C1")
ax.set_yscale("log")
ax.set(title="Validation perplexity (unsmoothed)", xlabel="optimizer step",
       ylabel="perplexity per target subword (log scale)")
ax = axes[1, 0]
ax.plot(train_log["step"], train_log["lr"] * 1e3, label="logged by the trainer")
ax.plot(train_log["step"], np.array(expected_lr) * 1e3, "k:", label="transformer_lr formula")
ax.set(title=f"Learning rate (d_model {d_model_run}, warmup {run.config.warmup})",
       xlabel="optimizer step", ylabel="learning rate (×10⁻³)")
ax.legend()
ax = axes[1, 1]
ax.plot(train_log["step"], train_log["tokens_per_s"], color="C2")
ax.set(title=f"Throughput on {summary['device']}", xlabel="optimizer step",
       ylabel="target tokens per second", ylim=(0, None))
fig.suptitle(f"Training run of the {PROFILE} profile ({dataset.name} "
             f"{dataset.src_lang}→{dataset.tgt_lang}, {summary['steps']} steps, "
             f"{summary['wall_time']:.0f} s)")
fig.tight_layout()
save_figure(fig, "06_training_curves")
plt.show()

# %% [markdown] slideshow={"slide_type": "subslide"}
# What to look for: the loss drops fast while the learning rate ramps up, then more slowly; the
# validation loss follows the training loss (no over-fitting yet in so short a run; on the gpu
# profile it eventually turns up, and training stops). The throughput curve shows what the
# machine delivered: the regular dips are the validation passes, whose time falls into the
# window of the next record; on a shared machine it also wobbles with the other jobs. The time
# budget is checked at every logged step, so a run can overshoot it by a few steps.
#
# A quick look at what the model learnt, with greedy decoding on three validation sentences
# ([notebook 07](07_results.ipynb#greedy-versus-beam-search--贪心搜索与束搜索) evaluates it
# properly, with beam search and BLEU):

# %% slideshow={"slide_type": "subslide"}
val_src, val_ref = dataset.texts("val")
hyps = translate(run.model, run.tokenizer, val_src[:3], beam_size=1)
for s, r, h in zip(val_src[:3], val_ref[:3], hyps):
    print(f"source:    {s}\nreference: {r}\nmodel:     {h}\n")

# %% [markdown] slideshow={"slide_type": "-"}
# **Takeaway:** the package's engine turns the recipe of Section 5 into a run you can watch and
# re-read: every number on these plots comes from `log.jsonl`, and the checkpoint it leaves is
# what notebook 07 evaluates.

# %% slideshow={"slide_type": "subslide"}
display(Markdown(
    f"On the {PROFILE} profile this run is {summary['steps']:,} steps of a "
    f"{summary['parameters'] / 1e6:.1f}M-parameter model, "
    f"{summary['tokens'] / 1e6:.2f}M target tokens in all; the paper trained a 65M-parameter "
    "model for 100,000 steps of about 25,000 target tokens each (2,500M tokens) on 8 GPUs. "
    "The outputs stored here come from the machine named in the first output line; on a "
    "shared machine the throughput wobbles with other jobs, while the step count is fixed "
    "unless the time budget cuts the run short, which the training cell would say."))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Label smoothing, measured | 标签平滑的实测
#
# Section 5.4 says smoothing "hurts perplexity ... but improves accuracy and BLEU score", and
# Table 3 shows it for the base model (rows D above). Does our run show it? We train its twin:
# the same recipe, data order and seed, with ε_ls = 0 as the only change
# (`notebook.notebook_run(model={"label_smoothing": 0.0})`, in a run directory of its own, reused
# once it exists), and score both on the whole validation set: perplexity (always unsmoothed,
# exp of the negative log-likelihood per target subword) and greedy sacreBLEU. To see *why*
# perplexity moves, we also measure how much probability each model gives its own top choice,
# averaged over the validation tokens: smoothing should make the model less sure.

# %% slideshow={"slide_type": "subslide"}
@torch.no_grad()
def mean_top_probability(m, split="val"):
    """Mean over target tokens of the model's largest next-token probability (teacher forcing)."""
    total, count = 0.0, 0
    device = next(m.parameters()).device
    for batch in dataset.batches(split, 4000, shuffle=False):
        src, tgt_in, tgt_out = move_batch(batch, device)
        top = m(src, tgt_in).float().softmax(-1).amax(-1)
        keep = tgt_out != m.config.pad_id
        total, count = total + top[keep].sum().item(), count + keep.sum().item()
    return total / count


t0 = time.perf_counter()
twin = notebook.notebook_run(model={"label_smoothing": 0.0})
print(f"twin {'reused' if twin.reused else 'trained'} in {time.perf_counter() - t0:.0f} s "
      f"(wall clock of this cell): {twin.summary['steps']} steps, "
      f"label smoothing {twin.model.config.label_smoothing:g}")

# %% slideshow={"slide_type": "subslide"}
val_sources, val_references = dataset.texts("val")
smoothing = []
for label, r in ((f"ε_ls = {run.model.config.label_smoothing:g} (the run above)", run),
                 ("ε_ls = 0 (its twin)", twin)):
    hyps = translate(r.model, r.tokenizer, val_sources, beam_size=1)
    smoothing.append({"run": label, "steps": r.summary["steps"],
                      "val perplexity": evaluate_loss(r.model, dataset, "val")["ppl"],
                      "val sacreBLEU (greedy)": sacrebleu_score(hyps, val_references)[0],
                      "mean top-token probability": mean_top_probability(r.model)})
smoothing = pd.DataFrame(smoothing).set_index("run")
print(f"validation set: {len(val_sources):,} sentences")
print(smoothing.round(3).to_string())
smoothed, plain = smoothing.iloc[0], smoothing.iloc[1]
fair = smoothed["steps"] == plain["steps"]  # the same number of updates (no time-budget cut)
assert not fair or smoothed["mean top-token probability"] < plain["mean top-token probability"]

# %% slideshow={"slide_type": "-"}
ppl_worse = smoothed["val perplexity"] > plain["val perplexity"]
bleu_gain = smoothed["val sacreBLEU (greedy)"] - plain["val sacreBLEU (greedy)"]
display(Markdown(
    ("" if fair else
     f"**Caution:** the two runs made {smoothed['steps']} and {plain['steps']} updates (a time "
     "budget cut one short on a busy machine), so the comparison below is not like for like; "
     "re-run both with `retrain=True` on a quieter machine.\n\n")
    + f"- **Confidence.** With smoothing the model gives its top choice "
    f"{smoothed['mean top-token probability']:.3f} of its probability on average, without "
    f"{plain['mean top-token probability']:.3f}: smoothing makes it less sure, as intended.\n"
    f"- **Perplexity.** {smoothed['val perplexity']:.2f} with smoothing, "
    f"{plain['val perplexity']:.2f} without: "
    + ("worse with smoothing, as the paper says." if ppl_worse else
       "*better* with smoothing here, unlike the paper: in a run this short the regularising "
       "effect outweighs the cost of the softer targets.") + "\n"
    f"- **BLEU.** {smoothed['val sacreBLEU (greedy)']:.2f} with smoothing, "
    f"{plain['val sacreBLEU (greedy)']:.2f} without ({bleu_gain:+.2f}): "
    + ("better with smoothing, as the paper says" if bleu_gain > 0 else
       "not better with smoothing here, so this run does **not** reproduce the paper's BLEU "
       "gain") + ". This is one pair of runs: how much of the gap is the noise of training "
    "only more seeds can tell (exercise 4; notebook 07's small Table 3 shows how far seeds "
    "scatter on another task). The paper's own gap is 0.5 BLEU (25.3 → 25.8), also from one "
    "run each."))
# ## Exercises | 练习
#
# 1. Compute the loss floor $H(q)$ for ε = 0.1 with V = 37,000 (the paper's vocabulary). Does the
#    floor grow or shrink with V, and why?
# 2. Set `warmup=4000` in the `notebook-cpu` recipe (`transformer/apps/recipes.py`) and retrain
#    (`notebook.notebook_run(retrain=True)`). How far does the loss get in the same number of steps, and why?
# 3. Re-run the padding measurement with batches sorted by *target* length only. Which side's
#    padding grows?
# 4. Add a third run to the label-smoothing comparison with ε_ls = 0.2 (Table 3, row D4):
#    `notebook.notebook_run(model={"label_smoothing": 0.2})`. Then train all three again with
#    another `seed` (a `TrainConfig` field): which differences keep their sign?
# 5. The paper's batches hold about 25,000 target tokens. How many of our Multi30k training
#    pairs is that, and how many such steps make one epoch?
