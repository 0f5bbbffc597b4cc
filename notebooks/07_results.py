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
# # Results | 结果
#
# **What you will learn**
#
# - how beam search with a length penalty (Section 6.1) differs from greedy decoding, in
#   model score, in BLEU and in time, measured on the model trained in notebook 06;
# - how BLEU is counted, why the same translations get different BLEU scores under different
#   conventions, and how to report a score so that others can compare it (sacreBLEU signatures);
# - what checkpoint averaging (Section 6.1) does, on our run's own checkpoints;
# - where our numbers (from averaged checkpoints, as the paper's) stand beside the paper's
#   Table 2 and beside published small-data results, and why they cannot be compared directly;
# - what the paper's training cost would be on one GPU of today, from this project's own
#   benchmark;
# - how translation quality changes with sentence length;
# - a small-scale rerun of some rows of Table 3 (number of heads, learned positions) over three
#   seeds, and which of its differences are larger than the noise between seeds;
# - how to look at every attention head of the trained model, as the paper's Figures 3–5 do,
#   and what the trained model (English → German) does with the "it was too tired / too wide"
#   example of notebook 02.
#
# This notebook evaluates the run of notebook 06. If that run is missing, the cpu profile
# trains it here (a few minutes); the gpu profile says what to run instead of training here.
# Layers and heads are numbered from 1, as in the paper.

# %% slideshow={"slide_type": "subslide"}
import contextlib
import copy
import io
import json
import logging
import time
from pathlib import Path

import altair as alt
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from IPython.display import Markdown, display

import transformer
from transformer import Transformer, TransformerConfig
from transformer.apps import notebook
from transformer.apps.profiles import banner, resolve_profile
from transformer.apps.reproduce import default_runs_dir
from transformer.apps.viz import attention_chart, attention_heatmap, save_figure
from transformer.data import load_dataset
from transformer.engine.beam_search import beam_search, length_penalty
from transformer.engine.bleu import (
    chrf_score,
    compound_split,
    moses_tokenize,
    sacrebleu_score,
    tokenize,
    tokenized_bleu,
)
from transformer.engine.checkpoint import (
    average_checkpoints,
    build_model,
    checkpoints_up_to,
    load_checkpoint,
)
from transformer.engine.evaluate import evaluate_loss, padded_batches, translate
from transformer.engine.greedy import greedy_decode
from transformer.engine.rundir import best_val_step
from transformer.engine.train import TrainConfig

PROFILE = resolve_profile()  # "cpu" or "gpu": see the first line of output

torch.set_num_threads(1)  # decoding and tiny models gain nothing from more; robust when shared
print(banner())
torch.manual_seed(0)
pd.set_option("display.width", 140)
pd.set_option("display.max_columns", 20)
pd.set_option("display.max_colwidth", 60)
alt.data_transformers.disable_max_rows()  # attention charts of big models exceed 5000 rows
# tokenized BLEU hands sacreBLEU text that is already tokenized, on purpose; silence its warning
logging.getLogger("sacrebleu").setLevel(logging.ERROR)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## The trained model | 训练好的模型
#
# `notebook.notebook_run` finds the run that notebook 06 trained (same settings, same run
# directory under `runs/`) and loads its final checkpoint. On the cpu profile we score the
# **first 200 sentences** of the Multi30k test set `test_2016_flickr` (of 1,000), to keep this
# notebook within a few minutes; the gpu profile scores all of them. Like the paper's Table 2,
# the model translates English into German.

# %% slideshow={"slide_type": "-"}
# if notebook 06 is training this very run now (make notebooks executes both at once), this
# waits for it to finish, then loads it; the line saying so is left out of the output
with contextlib.redirect_stdout(io.StringIO()) as said:
    run = notebook.notebook_run(train_if_missing=(PROFILE == "cpu"))
print("".join(line for line in said.getvalue().splitlines(keepends=True)
              if not line.rstrip().endswith("; waiting for it to end")), end="")
model, tokenizer, dataset = run.model, run.tokenizer, run.dataset
device = next(model.parameters()).device
c = model.config
if dataset.name != "multi30k":
    print("NOTE: Multi30k is not available; evaluating on the numbers task:", run.data_note)
test_split = dataset.resolve("test")
all_sources, all_references = dataset.texts(test_split)
N_TEST = 200 if PROFILE == "cpu" else len(all_sources)
sources, references = all_sources[:N_TEST], all_references[:N_TEST]
print(f"model: N={c.n_layers}, d_model={c.d_model}, d_ff={c.d_ff}, h={c.n_heads}, "
      f"{model.num_parameters():,} parameters; trained {run.summary['steps']} steps "
      f"({run.summary['wall_time']:.0f} s) on {run.summary['device']}; evaluating "
      f"{run.checkpoint.name}")
print(f"evaluation set: {dataset.name} {dataset.src_lang}->{dataset.tgt_lang}, split "
      f"{test_split}, the first {len(sources)} of {len(all_sources)} sentences")

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Greedy versus beam search | 贪心搜索与束搜索
#
# The decoder gives a distribution over the next token; a translation is a path through these
# choices. **Greedy** decoding takes the most probable token at every step. **Beam search**
# keeps the K most probable prefixes at every step and extends each; a hypothesis that ends with
# EOS is set aside as finished. Finished hypotheses of different lengths are compared with the
# length penalty of Wu et al. (2016), because a raw log-probability only falls as tokens are
# added and would favour short outputs:
#
# $$\mathrm{score}(Y) = \frac{\log P(Y \mid X)}{\mathrm{lp}(Y)}, \qquad
# \mathrm{lp}(Y) = \left(\frac{5 + |Y|}{6}\right)^{\alpha}.$$
#
# Section 6.1: beam size 4, α = 0.6, at most input length + 50 output tokens, stopping early
# when possible. Below we decode the test sentences both ways with the package's
# `greedy_decode` and `beam_search`, batched by length as `transformer.engine.evaluate.translate`
# does, and time them.
#
# The scores are BLEU, the overlap of a translation's word n-grams with the reference's
# ([Three ways to count BLEU](#three-ways-to-count-bleu--bleu-的三种算法) below explains
# it and the "tok." columns). **sacreBLEU** is the standard tool that counts it on plain,
# detokenized text, and prints a *signature* that names its settings: `tok:13a` is its
# default tokenizer, named after `mteval-v13a.pl`, the scoring script of the WMT evaluations,
# whose rules it copies (punctuation split off the words, the rest left as written).

# %% slideshow={"slide_type": "subslide"}
ALPHA = 0.6
src_ids = [tokenizer.encode(s) + [c.eos_id] for s in sources]  # source = subwords + EOS


def padded(rows):
    out = torch.full((len(rows), max(map(len, rows))), c.pad_id, dtype=torch.long)
    for r, ids in enumerate(rows):
        out[r, : len(ids)] = torch.tensor(ids)
    return out.to(device)


@torch.no_grad()
def decode_all(beam_size):
    """Hypotheses (subword ids, no BOS/EOS) for every source; with beam search also the
    score that beam search ranked the winner by."""
    hyps, scores = [None] * len(src_ids), [None] * len(src_ids)
    for batch, src in padded_batches(src_ids, 4000, c.pad_id, device):
        if beam_size == 1:
            lengths = (src != c.pad_id).sum(1).tolist()
            out = greedy_decode(model, src, max_len=max(lengths) + 50).tolist()
            for i, row, n in zip(batch, out, lengths):
                row = row[: n + 50]
                hyps[i] = row[: row.index(c.eos_id)] if c.eos_id in row else row
        else:
            nbest = beam_search(model, src, beam_size=beam_size, alpha=ALPHA,
                                return_scores=True)
            for i, found in zip(batch, nbest):
                hyps[i], scores[i] = found[0][0], found[0][1]
    return hyps, scores


decoded, seconds = {}, {}
for name, k in (("greedy", 1), ("beam 4", 4)):
    start = time.perf_counter()
    decoded[name] = decode_all(k)
    seconds[name] = time.perf_counter() - start
outputs = {name: [tokenizer.decode(h) for h in hyps] for name, (hyps, _) in decoded.items()}
# the same outputs as the package's translate(), checked on a few sentences
assert outputs["beam 4"][:8] == translate(model, tokenizer, sources[:8], beam_size=4)
assert outputs["greedy"][:8] == translate(model, tokenizer, sources[:8], beam_size=1)

rows = []
for name, hyps in outputs.items():
    sacre, signature = sacrebleu_score(hyps, references)
    rows.append({"decoding": name, "sacreBLEU": sacre,
                 "tokenized BLEU": tokenized_bleu(hyps, references, lang=dataset.tgt_lang)[0],
                 "tokenized BLEU, compounds split": tokenized_bleu(
                     hyps, references, split_compounds=True, lang=dataset.tgt_lang)[0],
                 "tokenized BLEU, lowercased": tokenized_bleu(hyps, references, lowercase=True,
                                                              lang=dataset.tgt_lang)[0],
                 "seconds": seconds[name], "sentences/s": len(hyps) / seconds[name],
                 "mean output words": np.mean([len(h.split()) for h in hyps])})
bleu_table = pd.DataFrame(rows).set_index("decoding")
SHORT = {"tokenized BLEU": "tok.", "tokenized BLEU, compounds split": "tok. split",
         "tokenized BLEU, lowercased": "tok. lc"}
print(f"{dataset.name} {test_split}, first {len(sources)} sentences, {device}:")
print(bleu_table.rename(columns=SHORT).round(2).to_string())
print("tok. = tokenized BLEU (Moses tokens), split = compounds split, lc = lowercased")
print(f"\nsacreBLEU signature: {signature}")
print(f"mean reference words: {np.mean([len(r.split()) for r in references]):.2f}")

# %% [markdown] slideshow={"slide_type": "-"}
# Beam search looks for a translation the model itself scores higher. Is that what it finds? We
# score each greedy output with the criterion beam search ranks by, log P(Y, EOS | X) / lp, from
# one teacher-forced pass of the model, and compare with the score of beam search's winner.
# Rescoring the beam winners the same way must give back the scores beam search reported: that
# checks the scoring function.

# %% slideshow={"slide_type": "-"}
@torch.no_grad()
def model_scores(hyps, chunk=64):
    """log P(Y, EOS | X) / lp(|Y| + 1) for each hypothesis, by teacher forcing."""
    out = []
    for start in range(0, len(hyps), chunk):
        rows = range(start, min(start + chunk, len(hyps)))
        src = padded([src_ids[i] for i in rows])
        tgt_in = padded([[c.bos_id] + hyps[i] for i in rows])
        tgt_out = padded([hyps[i] + [c.eos_id] for i in rows])
        logp = model(src, tgt_in).float().log_softmax(-1)
        picked = logp.gather(-1, tgt_out.unsqueeze(-1)).squeeze(-1)
        picked = picked.masked_fill(tgt_out == c.pad_id, 0.0).sum(1)
        lengths = (tgt_out != c.pad_id).sum(1)
        out += (picked / length_penalty(lengths.float(), ALPHA)).tolist()
    return np.array(out)


greedy_score = model_scores(decoded["greedy"][0])
beam_score = np.array(decoded["beam 4"][1])
rescored_beam = model_scores(decoded["beam 4"][0])
ended = np.array([len(h) + 1 <= len(s) + 50 for h, s in zip(decoded["beam 4"][0], src_ids)])
print(f"rescoring reproduces beam search's own scores: max difference "
      f"{np.abs(rescored_beam - beam_score)[ended].max():.1e}")
assert np.allclose(rescored_beam[ended], beam_score[ended], atol=1e-3)

better = beam_score >= greedy_score - 1e-4
print(f"beam 4 finds a score >= greedy's for {better.sum()} of {len(better)} sentences "
      f"({(beam_score > greedy_score + 1e-4).sum()} strictly higher, "
      f"{(~better).sum()} lower: search errors of the beam)")
print(f"mean score: greedy {greedy_score.mean():.3f}, beam 4 {beam_score.mean():.3f} "
      "(log-probability per length-penalty unit)")
assert better.mean() >= 0.8 and beam_score.mean() > greedy_score.mean()

worse = [i for i in np.argsort(greedy_score - beam_score)[::-1] if not better[i]]
if worse:  # the clearest case where beam search missed greedy's better-scoring output
    i = worse[0]
    print(f"\nlargest search error, test sentence {i}: {sources[i]}")
    print(f"  greedy ({greedy_score[i]:.2f}): {outputs['greedy'][i]}")
    print(f"  beam 4 ({beam_score[i]:.2f}): {outputs['beam 4'][i][:200]}")

# %% slideshow={"slide_type": "subslide"}
fig, axes = plt.subplots(1, 2, figsize=(12, 4.6))
lo = min(greedy_score.min(), beam_score.min())
axes[0].scatter(greedy_score, beam_score, s=12, alpha=0.6)
axes[0].plot([lo, 0], [lo, 0], "k:", lw=1, label="equal score")
axes[0].set(title="Model score per sentence: beam 4 vs greedy",
            xlabel="greedy: log P(Y|X) / lp(Y)", ylabel="beam 4: log P(Y|X) / lp(Y)")
axes[0].legend()
bars = axes[1].bar(bleu_table.index, bleu_table["sacreBLEU"], color=["C0", "C1"])
for bar, (_, row) in zip(bars, bleu_table.iterrows()):
    axes[1].annotate(f"{row['sacreBLEU']:.1f} BLEU\n{row['seconds']:.1f} s",
                     (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                     ha="center", va="bottom")
axes[1].set(title=f"sacreBLEU on {len(sources)} test sentences ({PROFILE} profile)",
            xlabel="decoding", ylabel="sacreBLEU (detokenized, 13a)",
            ylim=(0, max(bleu_table["sacreBLEU"]) * 1.3 + 1))
fig.tight_layout()
save_figure(fig, "07_greedy_vs_beam")
plt.show()

# %% [markdown] slideshow={"slide_type": "subslide"}
# Points above the diagonal are sentences where beam search found a translation the model
# prefers; on the diagonal both found the same one. Beam search is **not** guaranteed to beat
# greedy: if at some step K other prefixes score higher than greedy's prefix, greedy's path
# leaves the beam and never comes back, and the continuations of those other prefixes can end
# up worse (points below the diagonal, printed above). For a well-trained model this is rare; for
# a weak model, whose distributions are flat and whose long outputs repeat themselves, less so.
#
# Whether a higher *model* score means a higher BLEU depends on the model and on the sentences.
# A weak model, like the cpu profile's, can gain from the beam because greedy decoding lets it
# wander into repetitions ("ein blaues Hemd in einem blauen Hemd ...") that beam search,
# comparing whole hypotheses, more often avoids; but on a sample of a few hundred short
# sentences the difference is noisy and can come out either way. The paper reports no greedy
# baseline; it tuned beam size and α on the development set. What happened in this run:

# %% slideshow={"slide_type": "-"}
shown = bleu_table.round(2)  # the numbers as the table above prints them
gain = shown.loc["beam 4", "sacreBLEU"] - shown.loc["greedy", "sacreBLEU"]
slower = bleu_table.loc["beam 4", "seconds"] / bleu_table.loc["greedy", "seconds"]
display(Markdown(
    f"On these {len(sources)} sentences beam 4 scores **{gain:+.2f} sacreBLEU** against greedy "
    f"({shown.loc['greedy', 'sacreBLEU']:.2f} → {shown.loc['beam 4', 'sacreBLEU']:.2f}); "
    f"it finds a higher model score for {(beam_score > greedy_score + 1e-4).sum()} sentences and "
    f"a lower one for {(~better).sum()}. Mean output length: greedy "
    f"{shown.loc['greedy', 'mean output words']:.2f} words, beam 4 "
    f"{shown.loc['beam 4', 'mean output words']:.2f}, references "
    f"{np.mean([len(r.split()) for r in references]):.2f}. Beam 4 took {slower:.1f}× the time "
    "of greedy decoding."))

# %% [markdown] slideshow={"slide_type": "-"}
# Why not 4×? Beam search does K times the work per step, but this implementation drops each
# sentence from the batch as soon as its search has ended, while batched greedy decoding keeps
# every sentence of a batch running until the longest one has ended.
#
# **Takeaway:** beam search is a better *search* for the model's preferred output; how much BLEU
# it buys depends on how good the model is, and what it costs depends on the implementation.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Three ways to count BLEU | BLEU 的三种算法
#
# BLEU is the geometric mean of the 1- to 4-gram precisions of the output against the
# reference, times a penalty for outputs shorter than the references. What counts as a token is
# not part of the definition, and the choice moves the score by points:
#
# - **sacreBLEU** (Post, 2018) takes detokenized text, tokenizes it itself with `13a` (the
#   rules of `mteval-v13a.pl`, the WMT evaluations' scoring script: punctuation is split off
#   the words) and prints a *signature* naming every choice. This is today's reporting
#   standard.
# - **Tokenized BLEU**, what the paper reports: both sides are tokenized first with the Moses
#   tokenizer (Moses, the statistical translation toolkit of 2007, ships the scripts most
#   translation papers used), and for English→German hyphenated compounds are split
#   (`Mann-Rennen` → `Mann ##AT##-##AT## Rennen`: `##AT##` marks a hyphen that was inside a
#   word, so that the hyphen becomes a token of its own and `Mann` and `Rennen` can each match
#   the reference), which gives partial credit inside compounds. Then BLEU is counted on those
#   tokens by `multi-bleu.perl`, Moses's Perl script that scores text that is already
#   tokenized, exactly as given (no smoothing). This is tensor2tensor's `get_ende_bleu.sh`
#   (tensor2tensor: the paper authors' own code); `transformer.engine.bleu.tokenized_bleu`
#   follows it with `sacremoses`, the Python port of the Moses scripts. Moses tokens differ
#   from `13a`'s: it splits `'s` and `n't` off words and writes `&`, quotes and apostrophes as
#   HTML entities (`&amp;`, `&quot;`, `&apos;`).
# - **Lowercased tokenized BLEU** (`multi-bleu.perl -lc`, which lowercases A–Z only), common
#   in Multi30k papers.
#
# One invented example, scored every way:

# %% slideshow={"slide_type": "subslide"}
# NBVAL_CHECK_OUTPUT
hyp = ["Ein Mann fährt mit dem Mountain-Bike einen Hügel hinunter.",
       "Zwei Hunde spielen im Schnee."]
ref = ["Ein Mann fährt mit seinem Mountain-Bike einen steilen Hügel hinunter.",
       "zwei Hunde spielen im Schnee."]
print("13a tokens:      ", tokenize(hyp[0]))
print("Moses tokens:    ", moses_tokenize(hyp[0], "de"))
print("compounds split: ", compound_split(moses_tokenize(hyp[0], "de")))
score, sig = sacrebleu_score(hyp, ref)
print(f"\nsacreBLEU (13a, mixed case)           {score:6.2f}   {sig}")
ways = {"sacreBLEU": score}
for label, kwargs in (("tokenized BLEU                       ", {}),
                      ("tokenized BLEU, compounds split      ", {"split_compounds": True}),
                      ("tokenized BLEU, lowercased           ", {"lowercase": True})):
    value, desc = tokenized_bleu(hyp, ref, lang="de", **kwargs)
    ways[label.strip()] = value
    print(f"{label} {value:6.2f}   {desc}")
untokenized, _ = sacrebleu_score(hyp, ref, tokenize="none")
ways["no tokenization"] = untokenized
print(f"no tokenization at all (wrong)        {untokenized:6.2f}   "
      "('Hügel' and 'hinunter.' as found in the text)")
assert tokenized_bleu(hyp, ref, lowercase=True, lang="de")[0] > score  # 'zwei' matches 'Zwei'
assert (tokenized_bleu(hyp, ref, split_compounds=True, lang="de")[0]
        > tokenized_bleu(hyp, ref, lang="de")[0])
assert untokenized < score

# %% slideshow={"slide_type": "-"}
display(Markdown(
    f"{len(ways)} numbers for the same two sentences, from {min(ways.values()):.2f} to "
    f"{max(ways.values()):.2f}. Splitting compounds adds matching n-grams around the hyphen; "
    "lowercasing forgives `zwei`/`Zwei`; skipping tokenization glues punctuation to words and "
    "loses matches. A BLEU score without its conventions is not a result."))

# %% [markdown] slideshow={"slide_type": "-"}
# **Takeaway:** always say which BLEU: detokenized sacreBLEU with its signature, or tokenized
# BLEU with its tokenizer, casing and compound splitting. Only numbers counted the same way on
# the same test set can be compared.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Checkpoint averaging | 检查点平均
#
# Section 6.1: "For the base models, we used a single model obtained by averaging the last 5
# checkpoints, which were written at 10-minute intervals." Averaging the *weights* (not the
# predictions) of nearby checkpoints smooths out the noise of the last updates, a cheap
# ensemble that costs nothing at decoding time. It only makes sense for checkpoints of one run
# close together in training, where the weights still sit in the same basin.
#
# Our run kept its last few checkpoints (how often is a setting of its recipe, printed below).
# We take up to 5 of them, ending with the one this notebook evaluates (the best
# validation loss; on the cpu profile the last), average the last 2, 3, ... of those with
# `transformer.engine.checkpoint.average_checkpoints`, and compare validation perplexity with
# the evaluated checkpoint alone. The average with the lowest validation perplexity (chosen on
# validation data, not on the test sentences) then translates the test sentences, greedy and
# with beam 4: that is the model the comparison with the paper uses next, as the paper
# compares averaged models.

# %% slideshow={"slide_type": "subslide"}
paths = checkpoints_up_to(run.run_dir, best_val_step(run.run_dir), 5)
assert paths[-1] == run.checkpoint  # they end with the checkpoint evaluated above
print(f"checkpoints kept (one every {run.config.save_every} steps):",
      [p.name for p in run.checkpoints()])
print("checkpoints used here:", [p.name for p in paths])
val_split = dataset.resolve("val")


def with_weights(state_dict):
    twin = copy.deepcopy(model)
    twin.load_state_dict(state_dict)
    return twin.eval()


averaging = []
if len(paths) >= 2:
    for p in paths:
        step = load_checkpoint(p)["step"]
        ppl = evaluate_loss(with_weights(load_checkpoint(p)["model"]), dataset, val_split)["ppl"]
        averaging.append({"model": f"checkpoint at step {step}", "checkpoints": 1,
                          "val perplexity": ppl})
    for k in range(2, len(paths) + 1):
        averaged = average_checkpoints(paths[-k:])
        if k == 2:  # the average is the element-wise mean of the weights
            a, b = (load_checkpoint(p)["model"] for p in paths[-2:])
            name = next(n for n, v in averaged.items() if v.is_floating_point())
            assert torch.allclose(averaged[name], (a[name] + b[name]) / 2)
        ppl = evaluate_loss(with_weights(averaged), dataset, val_split)["ppl"]
        averaging.append({"model": f"average of the last {k}", "checkpoints": k,
                          "val perplexity": ppl})
    averaging = pd.DataFrame(averaging).set_index("model")
    best_k = int(averaging["val perplexity"].iloc[len(paths):].idxmin().split()[-1])
    averaged_model = with_weights(average_checkpoints(paths[-best_k:]))
    print(averaging.round(2).to_string())
else:
    print("this run kept a single checkpoint: nothing to average")
    best_k, averaged_model = 1, model
averaged_outputs = {name: translate(averaged_model, tokenizer, sources, beam_size=k)
                    for name, k in (("greedy", 1), ("beam 4", 4))}
single_vs_averaged = pd.DataFrame(
    {f"{paths[-1].name} alone": bleu_table["sacreBLEU"],
     f"average of the last {best_k}": {name: sacrebleu_score(hyps, references)[0]
                                       for name, hyps in averaged_outputs.items()}})
print(f"\nsacreBLEU on the {len(sources)} test sentences:")
print(single_vs_averaged.round(2).to_string())

# %% slideshow={"slide_type": "subslide"}
if len(paths) >= 2:
    single = averaging[averaging["checkpoints"] == 1]
    steps = [int(n.split()[-1]) for n in single.index]
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    ax.plot(steps, single["val perplexity"], "o-", label="single checkpoints")
    for k, value in averaging[averaging["checkpoints"] > 1]["val perplexity"].items():
        n = int(k.split()[-1])
        ax.hlines(value, steps[-n], steps[-1], colors=f"C{n}", label=k)
    ax.set(title="Checkpoint averaging on the notebook run", xlabel="optimizer step",
           ylabel=f"validation perplexity ({val_split}, per subword)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, "07_checkpoint_averaging")
    plt.show()

# %% [markdown] slideshow={"slide_type": "-"}
# Each horizontal line spans the checkpoints averaged into it. Two forces pull against each
# other. Successive checkpoints scatter around a better point than any one of them (the last
# updates are noisy, the more so with a high learning rate and small batches), and averaging
# lands closer to it. But in a short run that is still improving fast, older checkpoints are
# also simply worse, and averaging in too many drags the result back. Perplexity and BLEU need
# not move together either: a smoother average can be better calibrated overall yet decode
# worse. Averaging is meant for late training, when successive checkpoints wander around the
# same level, as in the paper's 100,000-step runs; `make reproduce` (gpu profile) averages the
# 5 checkpoints up to the best validation loss. What it did in the run stored here:

# %% slideshow={"slide_type": "subslide"}
sv = single_vs_averaged.round(2)  # as printed above
alone, avg_col = sv.columns
if best_k > 1:
    ppl_alone = averaging["val perplexity"].iloc[len(paths) - 1]
    ppl_avg = averaging.loc[f"average of the last {best_k}", "val perplexity"]
    greedy_gain = sv.loc["greedy", avg_col] - sv.loc["greedy", alone]
    beam_gain = sv.loc["beam 4", alone] - sv.loc["greedy", alone]
    display(Markdown(
        f"Averaging the last {best_k} checkpoints took the validation perplexity from "
        f"{ppl_alone:.2f} to {ppl_avg:.2f} and greedy sacreBLEU on the test sentences from "
        f"{sv.loc['greedy', alone]:.2f} to {sv.loc['greedy', avg_col]:.2f} "
        f"(**{greedy_gain:+.2f}**), "
        + ("more than" if greedy_gain > beam_gain else "less than")
        + f" beam search gained on the last checkpoint alone ({beam_gain:+.2f}, to "
        f"{sv.loc['beam 4', alone]:.2f}): greedy decoding of the averaged model "
        + ("beats" if sv.loc["greedy", avg_col] > sv.loc["beam 4", alone] else "does not beat")
        + f" beam 4 of the unaveraged one. With beam 4 the averaged model scores "
        f"{sv.loc['beam 4', avg_col]:.2f}."))
else:
    display(Markdown("This run kept a single checkpoint, so the comparison below uses it."))

# %% [markdown] slideshow={"slide_type": "-"}
# **Takeaway:** checkpoint averaging is an element-wise mean of the weights of nearby
# checkpoints of one run; check on validation data how many to average, and with the metric
# you report.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Our numbers beside the paper's | 与论文的数字对照
#
# The first table holds the paper's Table 2 (WMT 2014, newstest2014) and the best published
# from-scratch results on Multi30k that we know of; the second holds ours. Read them row by
# row, not column by column: **no two groups of rows measure the same thing**. Multi30k
# captions are short and repetitive, so they reach higher BLEU than news text with far less
# data; the paper's numbers are EN→DE/EN→FR on WMT news, ours are EN→DE on Multi30k.
#
# The paper's BLEU scores come from **averaged checkpoints** (the "avg." in the decoding
# column: the last 5 for base, the last 20 for big). So our main row does the same: the
# average chosen on validation data in the section above, decoded with beam 4 and α = 0.6 as
# in Section 6.1. The last checkpoint alone is listed beside it.

# %% slideshow={"slide_type": "subslide"}
published = pd.DataFrame([
    ("paper, base", "WMT14 EN→DE, newstest2014", "tok. split", "beam 4, avg. 5", 27.3,
     "8 P100, 12 h"),
    ("paper, big", "WMT14 EN→DE, newstest2014", "tok. split", "beam 4, avg. 20", 28.4,
     "8 P100, 3.5 days"),
    ("paper, base", "WMT14 EN→FR, newstest2014", "tok.", "beam 4, avg. 5", 38.1,
     "8 P100, 12 h"),
    ("paper, big", "WMT14 EN→FR, newstest2014", "tok.", "beam 4, avg. 20", 41.8,
     "8 P100, 3.5 days"),
    ("best published", "Multi30k DE→EN, test_2016_flickr", "tok. lc", "greedy", 36.5, "–"),
    ("best published", "Multi30k EN→DE, test_2016_flickr", "tok. lc", "beam 5", 41.0, "–"),
], columns=["system", "test set", "metric", "decoding", "BLEU", "training"])
print(published.to_string(index=False))
print("training pairs: WMT14 EN→DE 4.5M, EN→FR 36M, Multi30k 29k; best published: "
      "from scratch, approximate; tok. = tokenized BLEU (split: compounds split, lc: lowercased)")


def all_metrics(hyps):
    """sacreBLEU and the three tokenized BLEUs of the bleu_table, for ``hyps``."""
    return {"sacreBLEU": sacrebleu_score(hyps, references)[0],
            **{SHORT[column]: tokenized_bleu(hyps, references, lang=dataset.tgt_lang, **kw)[0]
               for column, kw in (("tokenized BLEU", {}),
                                  ("tokenized BLEU, compounds split", {"split_compounds": True}),
                                  ("tokenized BLEU, lowercased", {"lowercase": True}))}}


averaged_name = f"average of the last {best_k}" if best_k > 1 else "last checkpoint"
single_scores = bleu_table.rename(columns=SHORT)[["sacreBLEU", *SHORT.values()]]
ours = pd.DataFrame({
    f"{averaged_name}, beam 4 (as the paper)": all_metrics(averaged_outputs["beam 4"]),
    f"{averaged_name}, greedy": all_metrics(averaged_outputs["greedy"]),
    **{f"last checkpoint, {name}": single_scores.loc[name] for name in ("beam 4", "greedy")}}).T
test_scores = evaluate_loss(model, dataset, test_split)
test_ppl, test_tokens = test_scores["ppl"], test_scores["tokens"]
averaged_test_ppl = evaluate_loss(averaged_model, dataset, test_split)["ppl"]
print(f"\nthis notebook ({PROFILE} profile): {dataset.name} "
      f"{dataset.src_lang.upper()}→{dataset.tgt_lang.upper()}, {test_split}, first "
      f"{len(sources)} sentences; trained {run.summary['wall_time'] / 60:.1f} min on "
      f"{run.summary['device']}")
print(ours.round(1).to_string())
print(f"\nperplexity on all of {test_split} ({test_tokens:,} target subwords): last checkpoint "
      f"{test_ppl:.2f}, {averaged_name} {averaged_test_ppl:.2f}; the paper's base model: 4.92 "
      "per word-piece on newstest2013 (Table 3, a different test set and vocabulary)")

# %% [markdown] slideshow={"slide_type": "-"}
# How to read our rows. Their BLEU may land near the paper's 27.3, but that closeness means
# nothing: the paper translates news from English into German after training on 4.5 million
# pairs, we translate short image captions in the same direction, an easier task on which every
# BLEU runs higher. The fair comparison is with the Multi30k rows: same corpus, same test set,
# and the 41.0 row even uses our direction and a metric we also print (lowercased tokenized
# BLEU, no compound splitting; it decodes with beam 5, we with beam 4). Not because the
# architecture differs (it is the same code that builds the base model), but because the
# budget does, our run is behind it:

# %% slideshow={"slide_type": "-"}
ours_tok = ours.iloc[0]["tok. lc"]
assert ours_tok < 41.0  # the prose above says so
display(Markdown(
    f"- **score**: {ours_tok:.1f} lowercased tokenized BLEU (the {averaged_name}, beam 4) on "
    f"the first {len(sources)} of the {len(all_sources):,} test sentences, against the "
    "published 41.0 on all of them;\n"
    f"- **model**: {model.num_parameters() / 1e6:.1f} million parameters (N = {c.n_layers}, "
    f"d_model = {c.d_model}) against 65 million (base);\n"
    f"- **training**: {run.summary['steps']:,} steps of at most {run.config.max_tokens:,} tokens, "
    f"{run.summary['wall_time'] / 60:.1f} minutes on {run.summary['device']}, "
    f"{run.summary['epochs']:.1f} passes over {dataset.name}, against the paper's 100,000 steps of "
    "25,000 tokens on 8 GPUs for 12 hours;\n"
    "- **decoding and data**: the published Multi30k systems are tuned for this corpus "
    "(vocabulary, dropout, many epochs); ours is a few minutes of the paper's generic recipe."))

# %% [markdown] slideshow={"slide_type": "subslide"}
# The gpu profile trains the base configuration on Multi30k (its recipe in notebook 06 says
# for how long); the outputs stored here name the profile that produced them in the first
# line. The Multi30k rows are published results, rounded; we did not rerun them. The signature
# printed in the first section says exactly how our sacreBLEU numbers were computed.
#
# **Takeaway:** report BLEU with its data, split, metric, decoding and whether checkpoints were
# averaged, and compare only like with like; a few minutes of CPU training reproduces the
# *method*, not the paper's numbers.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## The paper's training cost on one GPU today | 论文训练成本的今日换算
#
# Table 2 gives the training cost: the base model trained for 12 hours and the big one for 3.5
# days, each on 8 NVIDIA P100 GPUs of 2016. What would that be on one GPU of today? This
# project benchmarked the base model's training step on one NVIDIA H200 (`bench/bench_train.py`,
# results in `results/bench/`): the base configuration with the paper's 37,000-entry
# vocabulary, bf16 autocast, with and without `torch.compile`. From its target tokens per
# second, the paper's 100,000 steps of about 25,000 target tokens take
# 100,000 × 25,000 / (tokens per second) seconds. The big model is not benchmarked; we scale
# the time by the ratio of training FLOPs, which are about 6 × parameters × tokens (a forward
# pass costs about 2 FLOPs, one multiply and one add, per parameter and token, the backward
# pass about twice that), so by the ratio of the parameter counts, over its 300,000 steps.

# %% slideshow={"slide_type": "-"}
BENCH = Path(transformer.__file__).resolve().parents[1] / "results" / "bench"
bench_files = {"compiled": BENCH / "train_gpu_compiled.json",
               "not compiled": BENCH / "train_gpu.json"}
if all(f.is_file() for f in bench_files.values()):
    bench = {label: json.loads(f.read_text()) for label, f in bench_files.items()}
    base_cfg = TransformerConfig.from_dict(bench["compiled"]["cuda"]["config"])
    with torch.device("meta"):  # parameter counts without allocating the weights
        n_base = Transformer(base_cfg).num_parameters()
        n_big = Transformer(TransformerConfig.from_preset(
            "big", src_vocab_size=base_cfg.src_vocab_size,
            tgt_vocab_size=base_cfg.tgt_vocab_size)).num_parameters()
    flop_ratio = n_big / n_base  # 6 * N * tokens for each, per target token
    one_gpu = "1 " + bench["compiled"]["provenance"]["gpu"].replace("NVIDIA ", "")
    for label, b in bench.items():
        cuda = b["cuda"]
        assert cuda["config"] == bench["compiled"]["cuda"]["config"]  # the same base model
        print(f"benchmark ({label}): {b['provenance']['gpu']}, {cuda['precision']}, "
              f"{cuda['batch']['rows']} sentences x {cuda['batch']['tgt_len']} tokens "
              f"({cuda['batch']['tgt_tokens']:,} target tokens) per step, "
              f"{cuda['ours']['ms_per_step']:.1f} ms per step: "
              f"{cuda['ours']['tgt_tokens_per_s']:,.0f} target tokens/s")
    print(f"parameters with a {base_cfg.tgt_vocab_size:,}-entry vocabulary: base {n_base:,}, "
          f"big {n_big:,} (FLOPs per token: big = {flop_ratio:.2f} x base)")
    cost = pd.DataFrame(
        [{"model": model_name, "steps": steps,
          "paper: 8 P100 (h)": paper_hours, "paper: GPU-hours": 8 * paper_hours,
          **{f"{one_gpu}, {label} (h)": steps * 25_000 * scale
             / b["cuda"]["ours"]["tgt_tokens_per_s"] / 3600 for label, b in bench.items()}}
         for model_name, steps, paper_hours, scale in (("base", 100_000, 12, 1.0),
                                                       ("big", 300_000, 3.5 * 24, flop_ratio))]
    ).set_index("model")
    print("\ntraining time in hours (h) for the paper's steps of 25,000 target tokens:")
    print(cost.round(1).to_string())
else:
    cost = None
    print(f"the benchmark files are not in {BENCH} (an installed package without the "
          "repository's results/ folder): nothing to compute")

# %% slideshow={"slide_type": "-"}
if cost is not None:
    h = cost.round(1)
    gpu = bench["compiled"]["provenance"]["gpu"]
    display(Markdown(
        f"On one {gpu} the base model's 100,000 steps would take about "
        f"**{h.loc['base', f'{one_gpu}, compiled (h)']:g} hours** "
        f"({h.loc['base', f'{one_gpu}, not compiled (h)']:g} without `torch.compile`), against "
        f"the paper's 12 hours on 8 P100s, {cost.loc['base', 'paper: GPU-hours']:g} GPU-hours; "
        f"the big model's 300,000 steps about **{h.loc['big', f'{one_gpu}, compiled (h)']:g} "
        f"hours** ({h.loc['big', f'{one_gpu}, not compiled (h)']:g} not compiled) against 3.5 "
        f"days on 8 P100s. These are lower bounds: the benchmark times one fixed-shape step, "
        f"the same batch of {bench['compiled']['cuda']['batch']['rows']:,} sentences of "
        f"{bench['compiled']['cuda']['batch']['tgt_len']} tokens again and again, while a real "
        "run has batches of changing shapes (and `torch.compile` recompiles for new shapes), "
        "padding, data loading, validation and checkpoints, and will be slower. The big model's "
        "time is scaled by FLOPs, not measured."))

# %% [markdown] slideshow={"slide_type": "subslide"}
# **Takeaway:** the paper's 8-GPU days are hours on one GPU of today, thanks to faster chips and
# bf16; the benchmark gives a lower bound, and a real run adds the costs a fixed-shape step
# leaves out.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Quality by sentence length | 按句长看质量
#
# Is a long sentence harder? For a model that reads the whole source at once there are two
# pulls: more words give more chances for errors and for the decoder to lose its place, and
# positions beyond those common in training were seen less often (notebook 04). We split the
# evaluated test sentences by source length in words into groups of roughly equal size and
# score each group separately. Each group holds only a few dozen sentences, so BLEU per group
# is noisy. **chrF** (Popović, 2015) is steadier on small samples: it compares character
# n-grams (up to 6 characters) instead of word n-grams and combines their precision and
# recall into an F-score from 0 to 100 (recall weighted twice as much as precision), so a word
# with a wrong ending still earns partial credit;
# `transformer.engine.bleu.chrf_score` computes it with sacreBLEU.

# %% slideshow={"slide_type": "-"}
src_words = np.array([len(x.split()) for x in sources])
edges = np.unique(np.quantile(src_words, [0, 0.25, 0.5, 0.75, 1.0]).round())
groups = np.clip(np.searchsorted(edges, src_words, side="right") - 1, 0, len(edges) - 2)
by_length = []
for g in range(len(edges) - 1):
    rows = np.flatnonzero(groups == g)
    if len(rows) == 0:
        continue
    entry = {"source words": f"{src_words[rows].min()}–{src_words[rows].max()}",
             "sentences": len(rows)}
    for name in outputs:
        hyps = [outputs[name][i] for i in rows]
        refs = [references[i] for i in rows]
        entry[f"sacreBLEU {name}"] = sacrebleu_score(hyps, refs)[0]
        entry[f"chrF {name}"] = chrf_score(hyps, refs)[0]
    by_length.append(entry)
by_length = pd.DataFrame(by_length).set_index("source words")
print(f"{dataset.name} {test_split}, first {len(sources)} sentences, grouped by source length:")
print(by_length.round(1).to_string())
assert by_length["sentences"].sum() == len(sources)

# %% slideshow={"slide_type": "subslide"}
fig, ax = plt.subplots(figsize=(8, 4.2))
x = np.arange(len(by_length))
for offset, name in zip((-0.2, 0.2), outputs):
    ax.bar(x + offset, by_length[f"chrF {name}"], width=0.4, label=f"chrF, {name}")
    ax.plot(x + offset, by_length[f"sacreBLEU {name}"], "k" + ("o" if offset < 0 else "s"),
            label=f"sacreBLEU, {name}")
ax.set_xticks(x, [f"{k}\n({n} sentences)" for k, n in by_length["sentences"].items()])
ax.set(title=f"Quality by source length ({len(sources)} test sentences, {PROFILE} profile)",
       xlabel="source length (words)", ylabel="score (chrF or sacreBLEU, 0–100)")
ax.legend(fontsize=8, ncol=2)
fig.tight_layout()
save_figure(fig, "07_quality_by_length")
plt.show()

# %% slideshow={"slide_type": "-"}
first, last_group = by_length.iloc[0], by_length.iloc[-1]
trend = last_group["chrF beam 4"] - first["chrF beam 4"]
display(Markdown(
    f"From the shortest group ({first.name} words) to the longest ({last_group.name} words), "
    f"beam 4's chrF moves by **{trend:+.1f}** points "
    f"({first['chrF beam 4']:.1f} → {last_group['chrF beam 4']:.1f}) and its sacreBLEU from "
    f"{first['sacreBLEU beam 4']:.1f} to {last_group['sacreBLEU beam 4']:.1f}. "
    + ("Longer sentences come out worse here. " if trend < -2 else
       "Within these lengths the change is small next to the noise of groups this size. ")
    + f"Multi30k captions are short: the longest source here has {src_words.max()} words, so "
    "this says little about the long sentences where the paper argues self-attention's short "
    "paths help (Section 4)."))

# %% [markdown] slideshow={"slide_type": "-"}
# **Takeaway:** score subsets separately to see *where* a model fails; keep the groups large
# enough (or use a steadier metric such as chrF) that a difference is not just noise.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Table 3 at CPU scale | 表 3 的小规模重跑
#
# Table 3 varies one thing at a time in the base model and reports development-set perplexity
# and BLEU after 100,000 steps. We cannot train 20 base models here, but we can rerun the idea
# at a **very small scale**: the same four variations of a tiny model (N = 2, d_model = 64,
# d_ff = 256), each trained for the same 300 steps on the embedded English → German
# number-words task (no download; "three hundred twenty-one" → "dreihunderteinundzwanzig"), and
# scored by validation perplexity and exact-match accuracy on 200 test numbers.
#
# | row | change (paper) | here |
# |---|---|---|
# | base | h = 8, d_k = d_v = 64 | h = 4, d_k = d_v = 16 |
# | A1 | one head, d_k = d_v = 512 | h = 1, d_k = d_v = 64 |
# | A4 | 32 heads, d_k = d_v = 16 | h = 16, d_k = d_v = 4 |
# | E | learned positional embeddings | learned positional embeddings |
#
# The paper trained each row once. A second training run with another seed (other initial
# weights, another batch order) does not give the same numbers, so a difference between two
# rows means something only if it is larger than the difference between seeds of one row. We
# train every row with **three seeds** and call one row better than another only when *every*
# seed of it beats *every* seed of the other (their ranges do not overlap); anything else is
# "within the noise".
#
# The twelve runs are kept in `runs/table3-small/` and reused when this notebook is executed
# again with the same settings ("reused" below); delete that folder to train them afresh.

# %% slideshow={"slide_type": "subslide"}
numbers = load_dataset("numbers")
tiny = dict(n_layers=2, d_model=64, d_ff=256, n_heads=4, dropout=0.1)
variants = {"base": {}, "A1": dict(n_heads=1, d_k=64, d_v=64),
            "A4": dict(n_heads=16, d_k=4, d_v=4), "E": dict(positional="learned")}
SEEDS = (0, 1, 2)
num_src, num_ref = numbers.texts("test")
small_rows = []
for row, change in variants.items():
    for seed in SEEDS:
        cfg = TrainConfig(dataset="numbers", preset="tiny", model={**tiny, **change}, seed=seed,
                          max_tokens=1024, tokens_per_step=None, warmup=100, max_steps=300,
                          log_every=50, eval_every=None, save_every=None, keep_last=1,
                          progress=False,
                          run_dir=str(default_runs_dir() / "table3-small" / f"{row}-seed{seed}"))
        with contextlib.redirect_stdout(io.StringIO()):  # keep the twelve runs' banners quiet
            summary, reused = notebook.train_or_reuse(cfg, numbers)  # trained once, then reused
        small = build_model(load_checkpoint(summary["checkpoint"]), summary["checkpoint"])
        hyps = translate(small, numbers.tokenizer, num_src[:200], beam_size=1)
        small_rows.append({
            "row": row, "seed": seed, "h": small.config.n_heads, "d_k": small.config.d_k,
            "positional": small.config.positional, "parameters": small.num_parameters(),
            "val perplexity": evaluate_loss(small, numbers, "val")["ppl"],
            "exact match (test, %)": 100 * np.mean([h == r for h, r in zip(hyps, num_ref)])})
        small_rows[-1].update(steps=summary["steps"], seconds=summary["wall_time"],
                              reused=reused)
runs_table = pd.DataFrame(small_rows)
print(f"{len(runs_table)} runs ({len(variants)} rows x {len(SEEDS)} seeds): "
      f"{int(runs_table['reused'].sum())} reused from runs/table3-small/, "
      f"{int((~runs_table['reused']).sum())} trained now; "
      + "–".join(map(str, sorted({runs_table["steps"].min(), runs_table["steps"].max()})))
      + f" steps each, {runs_table['seconds'].sum():.0f} s of training in all")
METRICS = {"val perplexity": "lower", "exact match (test, %)": "higher"}
by_row = runs_table.groupby("row", sort=False)
small_table = by_row[["h", "d_k", "positional", "parameters"]].first()
for metric, short in zip(METRICS, ("val PPL", "exact match %")):
    stats = by_row[metric].agg(["mean", "std", "min", "max"])
    small_table[f"{short}: mean ± sd (range)"] = [
        f"{m:.2f} ± {sd:.2f} ({lo:.2f}–{hi:.2f})"
        for m, sd, lo, hi in zip(stats["mean"], stats["std"], stats["min"], stats["max"])]
print(f"\nSMALL-SCALE rerun (numbers task, tiny model, 300 steps, seeds {SEEDS}; "
      "sd = standard deviation over the seeds; each seed is a point in the figure below):")
print(small_table.to_string())
assert small_table.loc["A1", "parameters"] == small_table.loc["base", "parameters"]  # h·d_k fixed
assert len(runs_table) == len(variants) * len(SEEDS) >= 3 * len(variants)


def verdict(row, metric, other="base"):
    """'better' / 'worse' than ``other`` when the seeds' ranges do not overlap, else 'noise'."""
    a, b = runs_table.groupby("row")[metric].agg(["min", "max"]).loc[[row, other]].to_numpy()
    sign = 1 if METRICS[metric] == "higher" else -1
    if (a[0] > b[1] and sign > 0) or (a[1] < b[0] and sign < 0):
        return "better"
    if (a[1] < b[0] and sign > 0) or (a[0] > b[1] and sign < 0):
        return "worse"
    return "within the noise"


PAPER_TABLE3 = {"base": (4.92, 25.8), "A1": (5.29, 24.9), "A4": (5.01, 25.4),
                "E": (4.92, 25.7)}  # Table 3: dev perplexity, dev BLEU
verdicts = pd.DataFrame(
    {"paper: Δ PPL": {r: PAPER_TABLE3[r][0] - PAPER_TABLE3["base"][0] for r in variants},
     "paper: Δ BLEU": {r: PAPER_TABLE3[r][1] - PAPER_TABLE3["base"][1] for r in variants},
     **{f"here: {short}": {r: verdict(r, m) for r in variants}
        for m, short in zip(METRICS, ("val PPL", "exact match"))}}
).drop(index="base")
print("\nEach row against base (paper: difference; here: better or worse only where all seeds "
      "agree):")
print(verdicts.round(2).to_string())

# %% slideshow={"slide_type": "subslide"}
fig, axes = plt.subplots(1, 2, figsize=(12, 4))
for ax, column, ylabel, title in (
        (axes[0], "val perplexity", "perplexity per subword",
         "Small-scale Table 3: validation perplexity (lower is better)"),
        (axes[1], "exact match (test, %)", "test numbers translated exactly (%)",
         "Small-scale Table 3: exact-match accuracy (higher is better)")):
    stats = runs_table.groupby("row", sort=False)[column].agg(["mean", "std"])
    ax.bar(stats.index, stats["mean"], yerr=stats["std"], capsize=6,
           color=[f"C{i}" for i in range(len(stats))], alpha=0.6,
           label=f"mean ± sd of {len(SEEDS)} seeds")
    for seed, marker in zip(SEEDS, "oxs"):
        one = runs_table[runs_table["seed"] == seed]
        ax.plot(one["row"], one[column], marker, color="black", ls="", label=f"seed {seed}")
    ax.set(title=title, xlabel="Table 3 row (tiny model, numbers task)", ylabel=ylabel)
    ax.legend(fontsize=8)
axes[1].set_ylim(0, 100)
fig.tight_layout()
save_figure(fig, "07_table3_small")
plt.show()

# %% [markdown] slideshow={"slide_type": "-"}
# Rows base, A1 and A4 have exactly the same number of parameters: h · d_k is 64 in all three,
# so the heads only divide the same width differently. Row E adds two tables of learned position
# vectors. What the seeds say, row by row:

# %% slideshow={"slide_type": "-"}
spread = runs_table.groupby("row")["exact match (test, %)"].agg(lambda x: x.max() - x.min())
lines = []
for r in verdicts.index:
    found = verdicts.loc[r, "here: exact match"]
    ppl = verdicts.loc[r, "here: val PPL"]
    lines.append(f"- **{r}** vs base: exact match {found}, perplexity {ppl}; the paper: "
                 f"{verdicts.loc[r, 'paper: Δ BLEU']:+.1f} BLEU, "
                 f"{verdicts.loc[r, 'paper: Δ PPL']:+.2f} perplexity.")
display(Markdown("\n".join(lines) + (
    f"\n\nThe seeds of one row differ by up to {spread.max():.1f} points of exact match here "
    f"(base: {spread['base']:.1f}). The paper reports one run per row and no spread, so "
    "its own smaller gaps (A4 −0.4 BLEU, E −0.1) cannot be told apart from seed-to-seed noise "
    "from the table alone; its largest, A1 (−0.9 BLEU, +0.37 perplexity), is the one it calls "
    "out in the text (\"single-head attention is 0.9 BLEU worse than the best setting\").")))

# %% [markdown] slideshow={"slide_type": "subslide"}
# Runs this short and this small show *how* an ablation is run more than what it concludes at
# the paper's scale: a task of number words and 300 steps favour other settings than news
# translation after 100,000 steps. Exercise 4 makes the rerun more trustworthy.
#
# **Takeaway:** an ablation changes one setting, keeps everything else (data, steps, parameter
# count where possible) fixed, repeats each row with several seeds, and claims an ordering only
# where the gap is larger than the spread between seeds.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Attention maps | 注意力图
#
# The paper's Figures 3–5 show encoder self-attention in layer 5 of 6: heads that follow a
# long-distance dependency, heads that resolve a pronoun, heads whose patterns follow the
# sentence's structure. Layers and heads are counted from 1 here too, in the charts' selectors
# and in the figure titles. `model.attention_maps(src, tgt_in)` returns every layer's and every
# head's weights of the three kinds of attention, for one forward pass with the model's own
# translation as decoder input. The charts below are interactive: pick the **layer** in the
# drop-down menu and the **head** with the slider, hover over a cell for its weight. Rows are
# queries (the attending token), columns are keys (the attended-to token); each row sums to 1.

# %% slideshow={"slide_type": "-"}
pick = min(range(len(sources)), key=lambda i: abs(len(src_ids[i]) - 14))  # a mid-length one
example_src = src_ids[pick]
example_hyp = decoded["beam 4"][0][pick]
src_tensor = padded([example_src])
tgt_in = padded([[c.bos_id] + example_hyp])
with torch.no_grad():
    maps = model.attention_maps(src_tensor, tgt_in)
src_tokens = [tokenizer.id_to_token(i) for i in example_src]
tgt_tokens = [tokenizer.id_to_token(i) for i in [c.bos_id] + example_hyp]
print(f"source:    {sources[pick]}\nreference: {references[pick]}\n"
      f"beam 4:    {outputs['beam 4'][pick]}")
for kind, tensor in maps.items():
    print(f"{kind:>12}: {tuple(tensor.shape)} (layers, batch, heads, queries, keys)")
    assert torch.allclose(tensor.sum(-1), torch.ones((), device=tensor.device), atol=1e-5)
causal = maps["decoder_self"][:, 0]
assert causal.triu(diagonal=1).abs().max() == 0  # no query sees a later target position

# %% slideshow={"slide_type": "subslide"}
attention_chart(maps["encoder"][:, 0], src_tokens,
                title="Encoder self-attention (pick layer and head)")

# %% slideshow={"slide_type": "subslide"}
attention_chart(maps["decoder_self"][:, 0], tgt_tokens,
                title="Decoder self-attention, masked: nothing above the diagonal")

# %% slideshow={"slide_type": "subslide"}
cross_chart = attention_chart(maps["cross"][:, 0], src_tokens, tgt_tokens,
                              title="Encoder-decoder attention: target queries, source keys")
save_figure(cross_chart, "07_cross_attention", formats=("png",))
cross_chart

# %% [markdown] slideshow={"slide_type": "subslide"}
# For a picture that also shows in a static viewer, here are all heads of the encoder-decoder
# attention in the last decoder layer (brighter = more weight, from 0 to 1). In a trained model
# some heads line each target word up with the source words it translates: bright cells run
# roughly down a diagonal, bending where German and English order words differently. Mind the
# offset: the row labelled with a target token is the decoder position that has just *read*
# that token and is *predicting the next one*. The cell after the figure lists, for the head
# whose rows are most concentrated, which source token each row looks at most.

# %% slideshow={"slide_type": "-"}
last = c.n_layers - 1  # index of the last layer; printed counting from 1
cols = min(c.n_heads, 4)
n_rows = -(-c.n_heads // cols)
fig, axes = plt.subplots(n_rows, cols, figsize=(4.2 * cols, 4.0 * n_rows), squeeze=False)
for head, ax in enumerate(axes.flat):
    if head >= c.n_heads:
        ax.axis("off")
        continue
    attention_heatmap(maps["cross"][last, 0, head], src_tokens, tgt_tokens, ax=ax, vmax=1.0,
                      colorbar=False, title=f"layer {last + 1}, head {head + 1}",
                      xlabel="source token (key)", ylabel="target token (query)")
fig.suptitle(f"Encoder-decoder attention, last decoder layer (layer {last + 1} of "
             f"{c.n_layers}), all heads")
fig.tight_layout()
save_figure(fig, "07_cross_attention_heads")
plt.show()

# %% slideshow={"slide_type": "subslide"}
cross_last = maps["cross"][last, 0].float().cpu()  # (heads, target positions, source positions)
sharpest = int(cross_last.amax(-1).mean(-1).argmax())
print(f"layer {last + 1}, head {sharpest + 1} (mean largest weight per row "
      f"{cross_last[sharpest].amax(-1).mean():.2f}): each target row's most-attended source token")
for row, (token, weights) in enumerate(zip(tgt_tokens, cross_last[sharpest])):
    print(f"  row {row + 1:>2} read {token!r:>14} -> looks at "
          f"{src_tokens[int(weights.argmax())]!r} ({weights.max():.2f}); predicts "
          f"{(tgt_tokens[1:] + [tokenizer.id_to_token(c.eos_id)])[row]!r}")

# %% [markdown] slideshow={"slide_type": "subslide"}
# What to look for, layer by layer: in encoder self-attention, heads that look at the previous
# or next token, heads that gather on the final punctuation or EOS (a common "no-op" target when
# a head has nothing to do), and heads that link a subword to the other pieces of its word. On
# the cpu profile the model is small and briefly trained, so its heads are less crisp than the
# paper's; on the gpu profile (the base model) look at layer 5 of 6 of the encoder, the layer
# of the paper's figures.
#
# **Takeaway:** attention weights are a readable trace of where each position took its
# information from; they are a description of the computation, not proof of what the model
# "understands".

# %% [markdown] slideshow={"slide_type": "slide"}
# ## "It was too tired / too wide", trained | 训练后的指代消解
#
# Notebook 02 gave *"The animal didn't cross the street because it was too tired / too wide"*
# to an untrained model
# ([notebook 02](02_attention.ipynb#it-was-too-tired--too-wide-what-attention-computes--指代消解的例子)),
# where attention from `it` is noise. Here a trained model gets them. English → German makes the
# question visible in the output: the German pronoun must agree with the noun it stands for,
# *es* for *das Tier* (the animal), *er* for *der Hund* (the dog), *sie* for *die Straße*
# (the street). We translate the sentences with this notebook's model, beam 4, and read two
# things: which pronoun the translation uses, and how much encoder self-attention the token `it`
# gives to each candidate noun, per layer, averaged over the heads. If the model resolved the
# reference, `it` should lean more towards the animal with "tired" and more towards the street
# with "wide". A small model trained for minutes on image captions (where `it` is rare) is not
# expected to do this; we look honestly.

# %% slideshow={"slide_type": "-"}
PRONOUNS = {"animal": "es", "dog": "er", "street": "sie"}
examples = {(noun, ending): f"The {noun} didn't cross the street because it was too {ending}."
            for noun in ("animal", "dog") for ending in ("tired", "wide")}
german = dict(zip(examples, translate(model, tokenizer, list(examples.values()), beam_size=4)))


def word_pieces(ids):
    """Map each subword position to the word it belongs to (a '▁' starts a new word)."""
    words, index = [], -1
    for i in ids:
        token = tokenizer.id_to_token(i) or ""
        if token.startswith("\u2581") or index < 0:
            index += 1
            words.append("")
        words[index] += token.lstrip("\u2581")
    return words


pronoun_rows, share_rows = [], []
for (noun, ending), sentence in examples.items():
    ids = tokenizer.encode(sentence) + [c.eos_id]
    pieces = [tokenizer.id_to_token(i) for i in ids]
    starts = [k for k, t in enumerate(pieces) if t and t.startswith("\u2581")]
    word_of = np.cumsum([1 if t and t.startswith("\u2581") else 0 for t in pieces]) - 1
    words = word_pieces(ids)
    it = starts[words.index("it")]  # the first (only) piece of "it"
    hyp = tokenizer.encode(german[noun, ending])
    with torch.no_grad():
        enc = model.attention_maps(torch.tensor([ids], device=device),
                                   torch.tensor([[c.bos_id] + hyp], device=device))["encoder"]
    from_it = enc[:, 0, :, it, :].float().mean(1).cpu().numpy()  # (layers, source positions)
    for layer in range(c.n_layers):
        for candidate in (noun, "street"):
            share = from_it[layer][word_of == words.index(candidate)].sum()
            share_rows.append({"noun": noun, "ending": ending, "layer": layer + 1,
                               "candidate": candidate, "weight from 'it'": share})
    found = [w for w in german[noun, ending].lower().replace(",", " ").replace(".", " ").split()
             if w in PRONOUNS.values()]
    right = PRONOUNS[noun if ending == "tired" else "street"]
    pronoun_rows.append({"sentence": sentence, "German (beam 4)": german[noun, ending],
                         "expected pronoun": right, "pronouns found": " ".join(found) or "none",
                         "right": right in found and len(set(found)) == 1})
pronouns = pd.DataFrame(pronoun_rows)
shares = pd.DataFrame(share_rows)
for (noun, ending), r in zip(examples, pronouns.itertuples()):
    print(f"{noun} / too {ending}: {r[2]!r}\n    expected {r[3]!r}, found {r[4]}: "
          f"{'right' if r.right else 'not right'}")
assert len(pronouns) == 4 and (shares["weight from 'it'"].between(0, 1)).all()

# %% slideshow={"slide_type": "subslide"}
fig, axes = plt.subplots(1, 2, figsize=(12, 4.2), sharey=True)
for ax, noun in zip(axes, ("animal", "dog")):
    part = shares[shares["noun"] == noun]
    layers = sorted(part["layer"].unique())
    width = 0.2
    for k, (ending, candidate) in enumerate([(e, cand) for e in ("tired", "wide")
                                             for cand in (noun, "street")]):
        values = part[(part["ending"] == ending) & (part["candidate"] == candidate)]
        ax.bar(np.array(layers) + (k - 1.5) * width, values["weight from 'it'"], width=width,
               label=f"\"too {ending}\": weight on '{candidate}'", color=f"C{k}")
    ax.set(title=f"'it' in \"The {noun} didn't cross the street ...\"",
           xlabel="encoder layer (from 1)", ylabel="attention weight from 'it' (mean of heads)",
           xticks=layers)
    ax.legend(fontsize=8)
fig.suptitle("Encoder self-attention from 'it' to the two candidate nouns, English → German model")
fig.tight_layout()
save_figure(fig, "07_pronoun_attention")
plt.show()

# %% slideshow={"slide_type": "-"}
pivot = shares.pivot_table(index=["noun", "layer"], columns=["ending", "candidate"],
                           values="weight from 'it'")
lean = {}  # how much more 'it' leans to the animal/dog than to the street, per ending
for noun in ("animal", "dog"):
    for ending in ("tired", "wide"):
        lean[noun, ending] = (pivot.loc[noun, (ending, noun)] - pivot.loc[noun, (ending, "street")])
lines, shifts = [], {}
for noun in ("animal", "dog"):
    shift = lean[noun, "tired"] - lean[noun, "wide"]  # > 0: "tired" pulls 'it' towards the noun
    shifts[noun] = shift.abs().max()
    agrees = [int(layer) for layer, v in shift.items() if v > 0]
    lines.append(
        f"- **{noun}**: the translations have "
        + ", ".join(f"{'*' + r['pronouns found'] + '*' if r['pronouns found'] != 'none' else 'no pronoun'}"
                    f" for \"too {e}\""
                    for e, (_, r) in zip(("tired", "wide"),
                                         pronouns[pronouns["sentence"].str.contains(noun)].iterrows()))
        + f" (right: *{PRONOUNS[noun]}*, then *sie*). Changing \"tired\" to \"wide\" moves the "
        f"weight from `it` towards `street` in {len(agrees)} of {c.n_layers} layers"
        + (f" (layer {', '.join(map(str, agrees))})" if agrees else "")
        + f"; the largest shift is {shift.abs().max():.3f} of the attention.")
right_count = int(pronouns["right"].sum())
display(Markdown("\n".join(lines) + (
    f"\n\n{right_count} of {len(pronouns)} translations use the right pronoun and only it. "
    + ("That is what resolving the reference looks like in the output. " if right_count == 4 else
       "So this model does **not** resolve the reference (a right pronoun inside an otherwise "
       "wrong sentence is no evidence that it did). ")
    + (f"Swapping the last word moves at most {max(shifts.values()):.3f} of the attention of "
       "`it` between the nouns, too little to be evidence either way. " if
       max(shifts.values()) < 0.05 else "")
    + "For comparison, the paper's Figure 4 shows two heads in layer 5 of 6 of its model "
      "putting sharp weight from \"its\" on its antecedent \"Law\".")))

# %% [markdown] slideshow={"slide_type": "-"}
# **Takeaway:** whether a model resolves a pronoun is tested by its output (the agreement of
# the German pronoun) as much as by its attention; a trained model is needed for either, and a
# small, briefly trained one may not show it at all. Exercise 6 asks for the gpu profile.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Sample translations | 翻译样例
#
# The first eight test sentences, with the reference and both decodings.

# %% slideshow={"slide_type": "-"}
for i in range(8):
    print(f"[{i}] source:    {sources[i]}")
    print(f"    reference: {references[i]}")
    print(f"    greedy:    {outputs['greedy'][i]}")
    print(f"    beam 4:    {outputs['beam 4'][i]}\n")

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Summary | 小结
#
# The numbers of the run stored in this notebook, in one place. Re-executing gives your
# machine's numbers; with the cpu profile's fixed step count they should come out close to these
# (floating-point sums in another order, on another CPU or thread count, shift them a little),
# timings aside.

# %% slideshow={"slide_type": "-"}
summary_row = {
    "profile": PROFILE, "data": f"{dataset.name} {dataset.src_lang}->{dataset.tgt_lang}",
    "test sentences": len(sources), "training steps": run.summary["steps"],
    "training minutes": round(run.summary["wall_time"] / 60, 2),
    "sacreBLEU, greedy": round(bleu_table.loc["greedy", "sacreBLEU"], 2),
    "sacreBLEU, beam 4": round(bleu_table.loc["beam 4", "sacreBLEU"], 2),
    f"sacreBLEU, beam 4, avg. of {best_k}": round(ours.iloc[0]["sacreBLEU"], 2),
    "tokenized BLEU, beam 4": round(bleu_table.loc["beam 4", "tokenized BLEU"], 2),
    f"the paper's metric, beam 4, avg. of {best_k}": round(ours.iloc[0]["tok. split"], 2),
    "test perplexity": round(test_ppl, 2),
    f"test perplexity, avg. of {best_k}": round(averaged_test_ppl, 2),
}
for key, value in summary_row.items():
    print(f"{key:>38}: {value}")
print(f"(scores without 'avg.': the last checkpoint, {run.checkpoint.name})")

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Exercises | 练习
#
# 1. Decode with beam sizes 1, 2, 4, 8 and 16 and plot sacreBLEU and decoding time against the
#    beam size. Where does BLEU stop improving? Try α = 0 and α = 1 with beam 8: what happens to
#    the output length?
# 2. Find a sentence where beam search's score is *lower* than greedy's (if there is none, make
#    the beam size 2). Print both hypotheses and their log-probabilities step by step.
# 3. Compare the columns "tok." and "tok. split" (tokenized BLEU without and with compound
#    splitting) of the greedy and beam table: which n-grams does splitting `Mountain-Bike` into
#    three tokens add? Then train a German → English model
#    (`notebook.notebook_run(src="de", tgt="en")`) and score it both ways: why does compound
#    splitting change so little for English outputs?
# 4. Rerun the small-scale Table 3 with five seeds per row and 1000 steps (change `SEEDS` and
#    `max_steps`). Which verdicts change from "within the noise"?
# 5. In the attention charts, find a head that attends from each token to the previous one, and
#    one that attends mostly to the final punctuation or EOS.
# 6. Run the pronoun section with the gpu profile (`TRANSFORMER_PROFILE=gpu`, the base model).
#    Does the German pronoun agree now? Which layer's heads lean towards the right noun?
