"""``make reproduce``: train, evaluate on the test split, write ``results/<run>.json``.

Data: Multi30k German -> English (``--src en --tgt de`` for the other way) when it can be had
(already cached, downloadable, or from ``TRANSFORMER_DATA_MIRROR``), else the embedded
English -> German "numbers" task.

The test split is decoded three ways: beam 4 (the paper's setting, the headline ``bleu``),
greedy and beam 5, so that ``published`` can set our number beside the best published
from-scratch Multi30k results in *their* metric: DE->EN 36.5 (lowercased tokenized BLEU,
greedy) and EN->DE 41.0 (tokenized BLEU, beam 5).

Profiles (``--profile`` or ``TRANSFORMER_PROFILE``; default gpu when CUDA is available) pick
the recipe ``reproduce-gpu`` (the base model) or ``reproduce-cpu`` (a narrow model for 10
minutes) of ``recipes.py``, where their settings and reasons are written.  Runs go to
``default_runs_dir()``: ``$TRANSFORMER_RUNS_DIR``, else ``<repo>/runs``.
"""

from __future__ import annotations

import datetime
import json
import os
import time
from pathlib import Path

from ..data import DataError, TranslationDataset, load_dataset
from ..engine.evaluate import checkpoint_and_data, evaluate, format_scores
from ..engine.runtime import environment, pick_device
from ..engine.train import train
from .profile import resolve_profile
from .recipes import RECIPES

RUNS_DIR_ENV = "TRANSFORMER_RUNS_DIR"
# The best published from-scratch results on Multi30k test_2016_flickr that we know of, in the
# metric and decoding each was reported with (rounded; quoted, not rerun here).
PUBLISHED = {
    ("de", "en"): dict(bleu=36.5, metric="tokenized_bleu_lc", decoding="greedy",
                       label="lowercased tokenized BLEU, greedy"),
    ("en", "de"): dict(bleu=41.0, metric="tokenized_bleu", decoding="beam5",
                       label="tokenized BLEU, beam 5"),
}
BLEU_KEYS = ("sacrebleu", "sacrebleu_signature", "tokenized_bleu", "tokenized_bleu_signature",
             "tokenized_bleu_lc", "tokenized_bleu_lc_signature")


def default_runs_dir() -> Path:
    """``$TRANSFORMER_RUNS_DIR``, else ``<repo>/runs`` in a checkout, else ``./runs``."""
    env = os.environ.get(RUNS_DIR_ENV)
    if env:
        return Path(env).expanduser().resolve()
    repo = Path(__file__).resolve().parents[2]
    if (repo / "pyproject.toml").is_file():
        return repo / "runs"
    return Path("runs").resolve()


def pick_data(data_dir=None, src="de", tgt="en") -> tuple[TranslationDataset, str]:
    """``(dataset, note)``: Multi30k src->tgt if available, else the numbers task."""
    mirror = os.environ.get("TRANSFORMER_DATA_MIRROR")
    try:
        return load_dataset("multi30k", src, tgt, data_dir=data_dir), (
            f"Multi30k via TRANSFORMER_DATA_MIRROR={mirror}" if mirror
            else "Multi30k from the cache or its public home")
    except (DataError, OSError) as e:
        note = f"Multi30k unavailable ({type(e).__name__}: {e}); using the embedded numbers task"
        print(note)
        return load_dataset("numbers", data_dir=data_dir), note


def published_comparison(dataset, decodes: dict) -> dict | None:
    """Our score in the metric and decoding of the published Multi30k result, beside it."""
    ref = PUBLISHED.get((dataset.src_lang, dataset.tgt_lang))
    if dataset.name != "multi30k" or ref is None:
        return None
    ours = decodes[ref["decoding"]]
    return {"metric": ref["label"], "published": ref["bleu"], "ours": ours[ref["metric"]],
            "signature": ours[ref["metric"] + "_signature"],
            "note": f"published: the best from-scratch result we know of, rounded, not rerun "
                    f"here; ours: {ours['n_sentences']} sentences of {ours['split']}"}


def reproduce(profile: str | None = None, time_budget: float | None = None, data_dir=None,
              results_dir="results", runs_dir: str | Path | None = None, *, src="de", tgt="en",
              dataset=None, limit=None, **overrides) -> dict:
    """Run the whole job; ``dataset``, ``limit`` (test sentences) and ``overrides`` (of
    ``TrainConfig`` fields) let tests make it small."""
    t0 = time.time()
    profile = resolve_profile(profile)
    budget = time_budget or os.environ.get("TRANSFORMER_TIME_BUDGET")
    if dataset is None:
        dataset, data_note = pick_data(data_dir, src, tgt)
    else:
        data_note = "given"
    name = f"{dataset.name}-{dataset.src_lang}-{dataset.tgt_lang}-{profile}"
    run_dir = Path(runs_dir or default_runs_dir()) / name
    recipe = RECIPES[f"reproduce-{profile}"]
    if budget:
        overrides["time_budget"] = float(budget)
    cfg = recipe.config(dataset=dataset.name, src=dataset.src_lang, tgt=dataset.tgt_lang,
                        data_dir=None if data_dir is None else str(data_dir),
                        run_dir=str(run_dir), overwrite=True, **overrides)
    print(f"reproduce: profile {profile}, {name}, run dir {run_dir}")
    summary = train(cfg, dataset)
    t_train = time.time() - t0

    # the model to evaluate: the average train() wrote (Section 6.1), if the recipe asks for
    # one (ending at the best validation, since the gpu recipe stops early), else the last
    averaged = summary.get("averaged")
    final = Path(averaged["checkpoint"] if averaged else summary["checkpoint"])
    device = pick_device("auto")
    test_split = dataset.resolve("test")
    model, dataset = checkpoint_and_data(final, device=str(device), dataset=dataset)
    beam, alpha = recipe.decode["beam_size"], recipe.decode["alpha"]
    decodes = {name: evaluate(model, dataset, test_split, beam_size=k, alpha=alpha, limit=limit,
                              score_perplexity=name == "beam4")
               for name, k in (("beam4", beam), ("greedy", 1), ("beam5", 5))}
    scores = decodes["beam4"]
    t_total = time.time() - t0

    print("\nsample translations (test):")
    for s in scores["samples"]:
        print(f"  src: {s['src']}\n  ref: {s['ref']}\n  hyp: {s['hyp']}\n")
    print(format_scores(scores))
    published = published_comparison(dataset, decodes)
    if published:
        print(f"  beside the best published from-scratch result ({published['metric']}): "
              f"ours {published['ours']:.2f}, published {published['published']}")
    result = {
        "run": name, "profile": profile,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "data": {"dataset": dataset.name, "src": dataset.src_lang, "tgt": dataset.tgt_lang,
                 "test_split": scores["split"], "vocab_size": dataset.tokenizer.vocab_size,
                 "note": data_note},
        "model_config": model.config.to_dict(),
        "parameters": summary["parameters"],
        "train_config": cfg.to_dict(),
        "training": summary,
        "evaluated_checkpoint": str(final),
        "averaged": averaged["from"] if averaged else None,
        "bleu": {k: scores[k] for k in BLEU_KEYS if k in scores},
        "bleu_greedy": {k: decodes["greedy"][k] for k in BLEU_KEYS if k in scores},
        "bleu_beam5": {k: decodes["beam5"][k] for k in BLEU_KEYS if k in scores},
        "published": published,
        "perplexity": scores["perplexity"],
        "decoding": {"beam_size": scores["beam_size"], "alpha": scores["alpha"],
                     "n_sentences": scores["n_sentences"]},
        "samples": scores["samples"],
        "timings": {"train_s": round(t_train, 1), "evaluate_s": round(t_total - t_train, 1),
                    "total_s": round(t_total, 1)},
        "environment": environment(device),
    }
    out = Path(results_dir) / f"{name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    print(f"\nwrote {out}")
    return result
