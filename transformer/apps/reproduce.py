"""``make reproduce``: train, evaluate on the test split, write ``results/runs/<run>.json``.

Data: Multi30k German -> English (``--src en --tgt de`` for the other way) when it can be had
(already cached, downloadable, or from ``TRANSFORMER_DATA_MIRROR``), else the embedded
English -> German "numbers" task.

The test split is decoded three ways: beam 4 (the paper's setting, the headline ``bleu``),
greedy and beam 5, so that ``published`` can set our number beside the best published
from-scratch Multi30k results in *their* metric, lowercased Moses-tokenized BLEU without
compound splitting (``multi-bleu.perl -lc``, our ``tokenized_bleu_lc``): DE->EN 36.5 (greedy)
and EN->DE 41.0 (beam 5, Wu et al. 2021).

Profiles (``--profile`` or ``TRANSFORMER_PROFILE``; default gpu when CUDA is available) pick
the recipe ``reproduce-gpu`` (the base model for 5 minutes) or ``reproduce-cpu`` (a narrow
model for 10 minutes) of ``recipes.py``, where their settings and reasons are written.  The gpu
profile on a machine without CUDA is refused with one line (``bench/gpu_run.sh`` rehearses it
on a CPU with ``TRANSFORMER_REHEARSAL=1``).  Runs go to ``default_runs_dir()``:
``$TRANSFORMER_RUNS_DIR``, else ``<repo>/runs``; results to ``--results-dir``, else
``default_results_dir(record)``.
"""

from __future__ import annotations

import datetime
import json
import os
import time
from pathlib import Path

from ..data import DataError, TranslationDataset, load_dataset
from ..engine.evaluate import checkpoint_and_data, evaluate, format_scores
from ..engine.runtime import CHECKOUT, display_path, environment, pick_device
from ..engine.train import train
from .profiles import resolve_profile
from .recipes import RECIPES

RUNS_DIR_ENV = "TRANSFORMER_RUNS_DIR"
# The best published from-scratch results on Multi30k test_2016_flickr that we know of, in the
# metric and decoding each was reported with (rounded; quoted, not rerun here).  Both are
# multi-bleu.perl -lc: Moses-tokenized, lowercased, no compound splitting, i.e. our
# ``tokenized_bleu_lc`` (bleu.all_bleu), never the cased compound-split ``tokenized_bleu``.
_LC = "lowercased Moses-tokenized BLEU (multi-bleu.perl -lc, no compound splitting)"
PUBLISHED = {
    ("de", "en"): dict(bleu=36.5, metric="tokenized_bleu_lc", decoding="greedy",
                       label=f"{_LC}, greedy", source="best published from scratch"),
    ("en", "de"): dict(bleu=41.0, metric="tokenized_bleu_lc", decoding="beam5",
                       label=f"{_LC}, beam 5", source="Wu et al. 2021"),
}
BLEU_KEYS = ("sacrebleu", "sacrebleu_signature", "tokenized_bleu", "tokenized_bleu_signature",
             "tokenized_bleu_lc", "tokenized_bleu_lc_signature", "bleu_meaningful",
             "ref_mean_words", "exact_match", "chrf", "chrf_signature")


def default_runs_dir() -> Path:
    """``$TRANSFORMER_RUNS_DIR``, else ``<repo>/runs`` in a checkout, else ``./runs``."""
    env = os.environ.get(RUNS_DIR_ENV)
    if env:
        return Path(env).expanduser().resolve()
    return CHECKOUT / "runs" if CHECKOUT else Path("runs").resolve()


def pick_data(data_dir=None, src="de", tgt="en") -> tuple[TranslationDataset, str]:
    """``(dataset, note)``: Multi30k src->tgt if available, else the numbers task."""
    mirror = os.environ.get("TRANSFORMER_DATA_MIRROR")
    try:
        return load_dataset("multi30k", src, tgt, data_dir=data_dir), (
            "Multi30k via TRANSFORMER_DATA_MIRROR" if mirror
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
    return {"metric": ref["label"], "metric_key": ref["metric"], "decoding": ref["decoding"],
            "published": ref["bleu"], "source": ref["source"], "ours": ours[ref["metric"]],
            "signature": ours[ref["metric"] + "_signature"],
            "note": f"published: the best from-scratch result we know of ({ref['source']}), "
                    f"rounded, not rerun here; ours: {ours['n_sentences']} sentences of "
                    f"{ours['split']}"}


def default_results_dir(record: bool = False) -> Path:
    """Where results go: ``results/runs/`` holds the project's recorded runs (committed), a
    user's own runs go to ``results/local/`` (git-ignored) unless ``record``; outside a
    checkout, under the working directory."""
    base = CHECKOUT / "results" if CHECKOUT else Path("results").resolve()
    return base / ("runs" if record else "local")


def compare(mine: dict, recorded: dict) -> str:
    """Your run beside the project's recorded run of the same name, metric by metric."""
    def get(result, *keys):
        for key in keys:
            result = result.get(key) if isinstance(result, dict) else None
        return result

    rows = [("sacreBLEU, beam 4", ("bleu", "sacrebleu")),
            ("sacreBLEU, greedy", ("bleu_greedy", "sacrebleu")),
            ("chrF2, beam 4", ("bleu", "chrf")), ("exact match %, beam 4", ("bleu", "exact_match")),
            ("perplexity per subword", ("perplexity",)), ("training steps", ("training", "steps")),
            ("training minutes", ("timings", "train_s"))]

    def when(result):
        env = result.get("environment", {})
        where = env.get("gpu") or env.get("cpu") or env.get("device", "?")
        return (f"{result.get('created', '?')[:10]}, commit {str(env.get('git_commit'))[:8]}, "
                f"{where}")

    lines = [f"{'':24}{'yours':>12}{'recorded':>12}",
             f"{'':24}  yours: {when(mine)}; recorded: {when(recorded)}"]
    for label, keys in rows:
        a, b = get(mine, *keys), get(recorded, *keys)
        if isinstance(a, int | float) and isinstance(b, int | float):
            scale = 1 / 60 if keys == ("timings", "train_s") else 1
            lines.insert(-1, f"{label:24}{a * scale:12.2f}{b * scale:12.2f}")
    return "\n".join(lines)


def reproduce(profile: str | None = None, time_budget: float | None = None, data_dir=None,
              results_dir: str | Path | None = None, runs_dir: str | Path | None = None, *,
              src="de", tgt="en", dataset=None, limit=None, record: bool = False,
              **overrides) -> dict:
    """Run the whole job and write ``<results_dir>/<run>.json`` (default:
    ``default_results_dir(record)``); ``dataset``, ``limit`` (test sentences) and ``overrides``
    (of ``TrainConfig`` fields) let tests make it small."""
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
    print(f"reproduce: profile {profile}, {name}, run dir {display_path(run_dir)}")
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
        "train_config": {**cfg.to_dict(), "run_dir": display_path(cfg.run_dir)},
        # checkpoints by name: they stay in the run dir (git-ignored), not with the record
        "training": {**summary, "checkpoint": Path(summary["checkpoint"]).name,
                     "run_dir": display_path(summary["run_dir"]),
                     "averaged": averaged and {**averaged,
                                               "checkpoint": Path(averaged["checkpoint"]).name}},
        "evaluated_checkpoint": final.name,
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
    out = Path(results_dir or default_results_dir(record)) / f"{name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    print(f"\nwrote {display_path(out)}")
    reference = default_results_dir(record=True) / f"{name}.json"
    if reference.is_file() and reference.resolve() != out.resolve():
        print(f"\nbeside the recorded run {display_path(reference)}:")
        print(compare(result, json.loads(reference.read_text())))
    return result
