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
#   the run's JSON-lines log;
# - how a step of about 25,000 target tokens fits on one GPU: **gradient accumulation**, shown
#   to give exactly the gradient of the large batch, and **bf16**, what it keeps and what it
#   loses, measured on the trained model.
#
# Two profiles decide the size of the run (`transformer.apps.profiles`): **cpu** trains a small
# model for a fixed number of steps (a few minutes on a 2-core machine; the training cell
# prints how long it took here), **gpu** trains the paper's base model on Multi30k. The first
# line of output says which one produced the outputs stored in this notebook.

# %% slideshow={"slide_type": "subslide"}
import inspect
import math
import textwrap
import time
from collections import Counter

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
from transformer.data.batching import Ragged, collate, token_batches
from transformer.engine.batch_size import measured_batch_size
from transformer.engine.bleu import sacrebleu_score
from transformer.engine.evaluate import evaluate_loss, translate
from transformer.engine.loss import loss_sum
from transformer.engine.runtime import display_path, move_batch
from transformer.engine.schedule import WARMUP_STEPS, build_scheduler, transformer_lr
from transformer.engine.train import TrainConfig, Trainer, build_model_config
from transformer.model import Transformer, TransformerConfig

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
# otherwise `Büsche.`, `Büsche,` and `Büsche` would be three different strings to learn, and
# frequent ones would take entries of the vocabulary of their own. The last lines count how
# many words of the training text occur both bare and with punctuation glued on.

# %% slideshow={"slide_type": "subslide"}
src_train, tgt_train = dataset.texts("train")
for i in (0, 1, 2):
    for side, text in ((dataset.src_lang, src_train[i]), (dataset.tgt_lang, tgt_train[i])):
        pieces = tokenizer.tokens(text)
        print(f"{side}: {text}")
        print(f"    {len(text.split())} words -> {len(pieces)} subwords: {' '.join(pieces)}")
        assert tokenizer.decode(tokenizer.encode(text)) == text  # the round trip is exact
    print()

# split at spaces only: how many words would come in several glued-on punctuation variants?
forms = Counter(w for text in src_train + tgt_train for w in text.split())
glued = sorted((w for w in forms if len(w) > 1 and w[-1] in ".,;:!?" and w[:-1] in forms),
               key=forms.get, reverse=True)
print(f"training text split at spaces only: {len(forms):,} distinct strings; {len(glued):,} of "
      f"them are a word that also occurs bare, with punctuation glued on, e.g. "
      + ", ".join(f"{w!r} ({forms[w]:,}×)" for w in glued[:3]))

# %% [markdown] slideshow={"slide_type": "-"}
# How much of the vocabulary does each language use? The merges were learnt on both sides at
# once, so many pieces (names, numbers, punctuation, shared word stems) serve both languages.

# %% slideshow={"slide_type": "-"}
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

# %% slideshow={"slide_type": "-"}
run_budget = RECIPES[f"notebook-{PROFILE}"].train["max_tokens"]
rnd, srt = padding["random: padding %"], padding["bucketed: padding %"]
run_random = 100 * pad_share(token_batches(src_len, tgt_len, run_budget, shuffled))
run_sorted = 100 * pad_share(token_batches(src_len, tgt_len, run_budget, by_length))
display(Markdown(
    f"With random batches {rnd.min():.0f}–{rnd.max():.0f}% "
    "of every tensor is padding: that share of the compute of each step is thrown away, and "
    f"each batch holds that many fewer sentences. Sorting by length brings the waste down to "
    f"{run_sorted:.1f}% at the {run_budget:,}-token budget of this notebook's run (random order: "
    f"{run_random:.1f}%). It grows with the budget, to {srt.iloc[-1]:.1f}% at "
    f"{budgets[-1]:,} tokens, because one big batch spans more different target lengths. "
    "Sorting alone would feed the model all the short sentences first, so the package "
    "shuffles the *order of the batches* every epoch."))

# %% [markdown] slideshow={"slide_type": "-"}
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

# %% slideshow={"slide_type": "-"}
def schedule_of(profile):
    """(d_model, warm-up steps, rate scale, peak rate, step limit) of a profile's recipe."""
    cfg = RECIPES[f"notebook-{profile}"].config()
    d_model = TransformerConfig.from_preset(cfg.preset, **cfg.model).d_model
    peak = transformer_lr(cfg.warmup, d_model, cfg.warmup, cfg.lr_scale)
    return d_model, cfg.warmup, cfg.lr_scale, peak, cfg.max_steps


cpu_d, cpu_warm, cpu_scale, cpu_peak, cpu_steps = schedule_of("cpu")
gpu_d, gpu_warm, gpu_scale, gpu_peak, _ = schedule_of("gpu")
ends = [lr[-1] for lr in curves.values()]
display(Markdown(
    "On the left: a longer warm-up peaks later and lower, a wider model (big) runs at a lower "
    f"rate throughout, and all curves end close together, between {min(ends) * 1e4:.1f} and "
    f"{max(ends) * 1e4:.1f} × 10⁻⁴, after 100k steps. On the right: the cpu profile's run "
    f"stops after {cpu_steps:,} steps, so with the paper's {WARMUP_STEPS:,} warm-up steps it "
    f"would never leave the ramp. It keeps the formula and shortens the warm-up to "
    f"{cpu_warm:,} steps (rate × {cpu_scale:g}); its narrower model (d_model {cpu_d}) raises "
    f"the peak by the same formula, to {cpu_peak:.1e}. The gpu profile trains the base model "
    f"(d_model {gpu_d}) on Multi30k with a warm-up of {gpu_warm:,} steps at rate × "
    f"{gpu_scale:g}: a peak of {gpu_peak:.1e} at step {gpu_warm:,}"
    + (", the left panel's thick curve, the paper's own schedule." if
       (gpu_d, gpu_warm, gpu_scale) == (512, WARMUP_STEPS, 1.0) else ".")))

# %% [markdown] slideshow={"slide_type": "subslide"}
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
# smoothing, dropout, a validation pass every `eval_every` steps, checkpoints) and returns it.
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

# %% [markdown] slideshow={"slide_type": "subslide"}
# Everything the run does is written to its run directory under `runs/` (git-ignored, or the
# folder named by `TRANSFORMER_RUNS_DIR`): `config.json`, `log.jsonl` (one JSON object per
# logged step and per validation), `checkpoints/`, `summary.json`. A **finished run is
# reused**: executing this cell again loads it instead of training again (pass `retrain=True`
# to start afresh). On the gpu profile an interrupted run resumes from its last checkpoint.
#
# When the run trains, its first line describes the batch of one optimizer step in the
# engine's words. A **rank** is one training process; with several GPUs there is one per GPU,
# each with its own share of the data, and "per step and rank" means "what each process does
# for one optimizer step". A **micro-batch** is what one rank puts through the model at once:
# at most `max_tokens` source and at most `max_tokens` target positions, padding included.
# **Accumulation** means running several micro-batches forward and backward, adding up their
# gradients, and only then taking one optimizer step. On the cpu profile "1 micro-batch(es) of
# <= 1024 tokens per step and rank" says the run takes a step after every micro-batch, and
# "N per epoch" counts the micro-batches in one pass over the training data.
# [Fitting 25,000 tokens on one GPU](#fitting-25000-tokens-per-step-on-one-gpu--梯度累积与-bf16)
# below shows why accumulating gives the gradient of one big batch.
#
# Then a progress bar shows the step, the running loss (label-smoothed, nats per target
# token), the learning rate and the throughput in target tokens per second.

# %% slideshow={"slide_type": "subslide"}
recipe = RECIPES[f"notebook-{PROFILE}"]
print(f"recipe notebook-{PROFILE}: {recipe.what}")
print(textwrap.fill(f"why: {recipe.why}", 100, subsequent_indent="     "))
print("settings: " + ", ".join(f"{k}={v}" for k, v in recipe.train.items()))
if PROFILE == "gpu":
    print(f"gpu profile: the base model trains until the validation loss stops improving "
          f"(at most {recipe.config().time_budget:g} minutes); this happens only once, later "
          "runs reuse it.")
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
# validation loss follows the training loss (no over-fitting yet in so short a run; a longer
# run that sees the data many times would see it turn up, and the gpu profile's early
# stopping would end the run there). The throughput curve shows what the
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
# ## Fitting 25,000 tokens per step on one GPU | 梯度累积与 bf16
#
# The paper's step holds about 25,000 target tokens (and as many source tokens), spread over 8
# GPUs, about 3,100 on each. Backpropagation keeps every layer's activations until the backward
# pass, and their memory grows with the tokens of a batch, so one GPU may not hold 25,000 at
# once. Two tools make it fit, and the package's trainer uses both on a GPU.
#
# **Gradient accumulation.** The loss of a step is the mean per-token loss over all its target
# tokens, and a sum can be computed in pieces. Cut the step into k micro-batches, backpropagate
# each one's *summed* loss divided by the target-token count of the *whole step*, and let
# PyTorch add the gradients up (`.backward()` adds into each parameter's `.grad` until it is
# zeroed); then take one optimizer step. That is what `Trainer.step` in
# `transformer/engine/train.py` does: `scale = 1.0 / n_tokens`, with `n_tokens` the target
# tokens of all the step's micro-batches. The result is the large batch's gradient, not an
# approximation; it costs time (k passes one after another), not memory. First, what the
# package plans for the paper's batch on Multi30k, with its default cap on a micro-batch:

# %% slideshow={"slide_type": "subslide"}
paper_batch = TrainConfig()  # the defaults are the paper's: 25,000 target tokens per step
for world in (1, 8):
    plan = measured_batch_size(dataset, paper_batch.tokens_per_step, world,
                               paper_batch.max_tokens)
    print(f"{world} GPU(s): {plan.describe()}")
step_code = inspect.getsource(Trainer.step)  # the trainer's own normalisation, quoted above
assert "scale = 1.0 / n_tokens" in step_code and "(loss * scale).backward()" in step_code

# %% [markdown] slideshow={"slide_type": "-"}
# Now the check: a tiny model (the package's `tiny` preset, dropout off so that both
# computations see the same network), 32 training pairs, and the gradient of their mean
# per-token loss computed three ways: as one batch; as 4 micro-batches of 8 pairs, scaled as
# the trainer scales them; and, for contrast, as the average of the 4 micro-batches' own mean
# losses, which weights a token of a short micro-batch more than one of a long micro-batch.

# %% slideshow={"slide_type": "-"}
torch.manual_seed(0)
toy_config = TransformerConfig.from_preset("tiny", src_vocab_size=tokenizer.vocab_size,
                                           tgt_vocab_size=tokenizer.vocab_size, dropout=0.0)
toy = Transformer(toy_config)
picked = np.random.default_rng(0).choice(len(examples), 32, replace=False)
picked = picked[np.argsort(tgt_len[picked], kind="stable")]  # similar lengths together
pair_src = Ragged.from_lists([examples[i][0] for i in picked])
pair_tgt = Ragged.from_lists([examples[i][1] for i in picked])
whole = collate(np.arange(len(picked)), pair_src, pair_tgt)
K = 4
micro = [collate(rows, pair_src, pair_tgt) for rows in np.array_split(np.arange(len(picked)), K)]
step_tokens = sum(b.n_tgt_tokens for b in micro)
assert step_tokens == whole.n_tgt_tokens


def gradient(batches, weight):
    """All parameters' gradients after backpropagating weight(b) * (summed loss of b) for b."""
    toy.zero_grad(set_to_none=True)
    for b in batches:
        (loss_sum(toy(b.src, b.tgt_in), b.tgt_out, toy_config) * weight(b)).backward()
    return torch.cat([p.grad.flatten() for p in toy.parameters() if p.grad is not None])


g_batch = gradient([whole], lambda b: 1 / whole.n_tgt_tokens)
g_accumulated = gradient(micro, lambda b: 1 / step_tokens)  # Trainer.step's scaling
g_mean_of_means = gradient(micro, lambda b: 1 / (K * b.n_tgt_tokens))
diff_acc = (g_accumulated - g_batch).abs().max().item()
diff_means = (g_mean_of_means - g_batch).abs().max().item()
print(f"tiny model: N={toy_config.n_layers}, d_model={toy_config.d_model}, "
      f"{toy.num_parameters():,} parameters, dropout {toy_config.dropout:g}")
print(f"one batch of {len(picked)} pairs: {whole.n_tgt_tokens} target tokens, "
      f"target tensor padded to {tuple(whole.tgt_out.shape)}")
print(f"{K} micro-batches: {[b.n_tgt_tokens for b in micro]} target tokens, padded to "
      + ", ".join(str(tuple(b.tgt_out.shape)) for b in micro))
print(f"largest gradient entry (one batch): {g_batch.abs().max():.3g}")
print(f"max |difference| from one batch: accumulated {diff_acc:.1e}, "
      f"mean of the micro-batch means {diff_means:.1e}")
assert torch.allclose(g_accumulated, g_batch, rtol=1e-4, atol=1e-7)  # float32 rounding only
assert diff_means > 1000 * diff_acc

# %% slideshow={"slide_type": "-"}
padded_whole = whole.tgt_out.numel()
padded_micro = sum(b.tgt_out.numel() for b in micro)
display(Markdown(
    f"Accumulated over {K} micro-batches, the gradient differs from the one-batch gradient by "
    f"at most {diff_acc:.1e}, against entries up to {g_batch.abs().max():.2g}: float32 "
    "rounding, from adding the same numbers in another order. Averaging the micro-batches' "
    f"own means instead is off by up to {diff_means:.1e}: a different gradient, not a "
    "rounding error. Each micro-batch is also padded only to its own longest sentence: "
    f"{padded_micro} target positions in all instead of {padded_whole}."))

# %% [markdown] slideshow={"slide_type": "subslide"}
# **bf16.** A float32 number has 1 sign bit, 8 exponent bits, which set its range, and 23
# mantissa bits, which set its precision (about 7 significant decimal digits). **bfloat16**
# ("brain floating point", from Google Brain) keeps the sign and all 8 exponent bits and cuts
# the mantissa to 7 bits: the range of float32 with 2 to 3 significant digits. float16 splits
# its 16 bits the other way, 5 exponent and 10 mantissa bits: more precise than bf16, but its
# largest value is 65,504, so float16 training must rescale the loss to keep gradients from
# overflowing or vanishing, and bf16 training need not. On GPUs that have it (NVIDIA's since
# the A100), a 16-bit matrix product runs on tensor cores many times faster than in float32,
# and the activations kept for the backward pass take half the memory. `torch.finfo` gives
# each format's numbers; the last lines round four values into each format.

# %% slideshow={"slide_type": "-"}
# NBVAL_CHECK_OUTPUT
formats = {"float32": (torch.float32, 8, 23), "bfloat16": (torch.bfloat16, 8, 7),
           "float16": (torch.float16, 5, 10)}
rows = []
for name, (dtype, exponent_bits, mantissa_bits) in formats.items():
    info = torch.finfo(dtype)
    assert info.bits == 1 + exponent_bits + mantissa_bits and info.eps == 2.0**-mantissa_bits
    rows.append({"format": name, "bits": info.bits, "exponent bits": exponent_bits,
                 "mantissa bits": mantissa_bits, "eps (1 to next number)": info.eps,
                 "largest": info.max, "smallest normal": info.tiny})
print(pd.DataFrame(rows).set_index("format").to_string(float_format="{:.3g}".format))
exact = [1 / 3, 1 + 1 / 256, 70_000.0, 1e-6]  # Python floats (64 bits)
values = torch.tensor(exact, dtype=torch.float64)
print("\nvalue:    " + "".join(f"{x:>14.8g}" for x in exact))
for name, (dtype, _, _) in formats.items():
    print(f"{name + ':':<10}" + "".join(f"{x:>14.8g}" for x in values.to(dtype).double().tolist()))
as_bf16, as_fp16 = values.to(torch.bfloat16).double(), values.to(torch.float16).double()
assert as_bf16[1] == 1 and as_bf16[2] == 70_144 and torch.isinf(as_fp16[2])  # quoted below

# %% [markdown] slideshow={"slide_type": "subslide"}
# bf16 rounds 1 + 1/256 to 1 and 1/3 to its third digit, but keeps 70,000 in range (as
# 70,144), where float16 overflows to infinity. Under
# `torch.autocast(..., dtype=torch.bfloat16)` the weights stay float32: autocast runs matrix
# products in bf16 and leaves some precision-sensitive operations in float32 (PyTorch keeps a
# list per device). The package trains this way on GPUs
# (`TrainConfig.amp`), computes the loss from `logits.float()` (`transformer/engine/loss.py`)
# and lets Adam update float32 weights, so that small updates are not rounded away. What does
# bf16 change in the trained model's predictions? One validation batch, both ways:

# %% slideshow={"slide_type": "-"}
probe = dataset.batches("val", 2000, shuffle=False)
probe = probe[len(probe) // 2]
with torch.no_grad():
    logits32 = run.model(probe.src, probe.tgt_in).float()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits16 = run.model(probe.src, probe.tgt_in)
real = probe.tgt_out != run.model.config.pad_id
gap = (logits16.float() - logits32)[real].abs()
same = (logits16.float().argmax(-1) == logits32.argmax(-1))[real]
top2 = logits32.topk(2, dim=-1).values
margin = (top2[..., 0] - top2[..., 1])[real]  # float32's lead of its top token over the next
nll32, nll16 = (F.cross_entropy(x.float()[real], probe.tgt_out[real]).item()
                for x in (logits32, logits16))
print(f"validation batch: {int(real.sum()):,} target tokens; weights "
      f"{next(run.model.parameters()).dtype}, logits under autocast {logits16.dtype}")
print(f"|logit bf16 - float32|: mean {gap.mean():.4f}, max {gap.max():.3f} "
      f"(float32 logits: standard deviation {logits32[real].std():.2f})")
print(f"top-1 token the same at {int(same.sum()):,} of {len(same):,} positions "
      f"({100 * same.float().mean():.1f}%)")
if (~same).any():
    print(f"float32's lead of its top token over the second: mean {margin[~same].mean():.3f} "
          f"where the two disagree, median {margin.median():.3f} over all positions")
print(f"NLL per target token: float32 {nll32:.4f}, bf16 {nll16:.4f}")
assert same.float().mean() > 0.97 and abs(nll16 - nll32) < 0.05

# %% slideshow={"slide_type": "-"}
flipped = int((~same).sum())
near_ties = flipped == 0 or margin[~same].mean() < margin.median() / 4
display(Markdown(
    f"bf16 moves the logits by {gap.mean():.4f} on average, changes the top token at "
    f"{flipped} of {len(same):,} positions and the loss per token by {abs(nll16 - nll32):.1e}. "
    + (f"Where the top token changed, float32 had put its top two tokens "
       f"{margin[~same].mean():.3f} apart on average, against a median lead of "
       f"{margin.median():.2f}: near-ties, which any rounding can tip. " if flipped else "")
    + ("bf16's rounding is small next to the differences the model has learnt between "
       "tokens." if near_ties else "Some of the changed tokens were not near-ties: look at "
       "them before trusting bf16 on this model.")))

# %% [markdown] slideshow={"slide_type": "-"}
# **Takeaway:** gradient accumulation computes exactly the gradient of a batch too big for
# memory, paying in time; bf16 keeps float32's range, gives up most of its precision (7
# mantissa bits instead of 23), and so halves memory and speeds up matrix products while
# changing only near-tied predictions. Together they let one GPU take the paper's
# 25,000-token steps.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Label smoothing, measured | 标签平滑的实测
#
# Section 5.4 says smoothing "hurts perplexity ... but improves accuracy and BLEU score", and
# Table 3 shows it for the base model (rows D above). Does our run show it? We train its twin:
# the same recipe, data order and seed, with ε_ls = 0 as the only change
# (`notebook.notebook_run(model={"label_smoothing": 0.0})`, in a run directory of its own, reused
# once it exists), and score both on the whole validation set: perplexity (always unsmoothed,
# exp of the negative log-likelihood per target subword) and greedy sacreBLEU (BLEU, the
# n-gram overlap of the translations with the references, as the standard `sacrebleu` tool
# counts it on plain text;
# [notebook 07](07_results.ipynb#three-ways-to-count-bleu--bleu-的三种算法) compares the ways
# of counting it). To see *why*
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
    "only more seeds can tell ([exercise 4](#exercises--练习); "
    "[notebook 07's small Table 3](07_results.ipynb#table-3-at-cpu-scale--表-3-的小规模重跑) "
    "shows how far seeds scatter on another task). The paper's own gap is 0.5 BLEU "
    "(25.3 → 25.8), also from one run each."))

# %% [markdown] slideshow={"slide_type": "-"}
# **Takeaway:** to test a claim like Section 5.4's, change one setting and keep the recipe,
# data order, seed and step count; then read confidence, perplexity and BLEU separately:
# smoothing acts on the first directly and on the others only through it.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Exercises | 练习
#
# 1. Compute the loss floor $H(q)$ for ε = 0.1 with V = 37,000 (the paper's vocabulary). Does the
#    floor grow or shrink with V, and why?
# 2. Set `warmup=4000` in the `notebook-cpu` recipe (`transformer/apps/recipes.py`) and retrain
#    (`notebook.notebook_run(retrain=True)`). How far does the loss get in the same number of
#    steps, and why?
# 3. Re-run the padding measurement with batches sorted by *target* length only. Which side's
#    padding grows?
# 4. Add a third run to the label-smoothing comparison with ε_ls = 0.2 (Table 3, row D4):
#    `notebook.notebook_run(model={"label_smoothing": 0.2})`. Then train all three again with
#    another `seed` (a `TrainConfig` field): which differences keep their sign?
# 5. The paper's batches hold about 25,000 target tokens. How many of our Multi30k training
#    pairs is that, and how many such steps make one epoch?
# 6. Repeat the gradient-accumulation check with `dropout=0.1` in the tiny model (seed each
#    computation the same way). Why do the gradients no longer agree, and why does that not
#    make accumulation wrong?
# 7. Run the bf16 comparison with `dtype=torch.float16` in `torch.autocast`. Do the logits
#    change more or less than with bf16, and which of the formats' numbers above explains it?
