"""The GPU profile of ``reproduce`` (#34): refused with one line without CUDA, compared with the
published Multi30k results in their metric, its recipe, and the prepared GPU job
``bench/gpu_run.sh``."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from transformer.apps.profiles import REHEARSAL_ENV
from transformer.apps.profiles import resolve_profile as pick_profile
from transformer.apps.recipes import _GPU_MULTI30K, RECIPES
from transformer.apps.reproduce import published_comparison
from transformer.engine.bleu import all_bleu

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "bench" / "gpu_run.sh"


def run_cli(*args, env=None, timeout=120):
    """``python -m transformer ARGS`` without CUDA; (exit status, stdout, stderr)."""
    clean = {k: v for k, v in os.environ.items()
             if k not in ("TRANSFORMER_PROFILE", REHEARSAL_ENV)}
    clean.update(OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="", **(env or {}))
    done = subprocess.run([sys.executable, "-m", "transformer", *args], cwd=ROOT, env=clean,
                          capture_output=True, text=True, timeout=timeout)
    return done.returncode, done.stdout, done.stderr


# ------------------------------------------------------------------------ no CUDA: one line

@pytest.mark.parametrize("how", ["option", "environment"])
def test_gpu_profile_without_cuda_is_one_error_line(tmp_path, how):
    args = ["reproduce", "--runs-dir", str(tmp_path / "runs"),
            "--results-dir", str(tmp_path / "results")]
    if how == "option":
        rc, out, err = run_cli(*args, "--profile", "gpu")
        asked = "--profile gpu"
    else:
        rc, out, err = run_cli(*args, env={"TRANSFORMER_PROFILE": "gpu"})
        asked = "TRANSFORMER_PROFILE=gpu"
    assert rc == 1 and out == "" and "Traceback" not in err
    assert err.splitlines() == [
        f"error: {asked} needs a CUDA GPU, but torch.cuda.is_available() is False on this "
        "machine: run it where CUDA works, or use the cpu profile (--profile cpu)"]
    assert not (tmp_path / "runs").exists() and not (tmp_path / "results").exists()


def test_only_the_rehearsal_may_run_the_gpu_profile_without_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.delenv("TRANSFORMER_PROFILE", raising=False)
    monkeypatch.delenv(REHEARSAL_ENV, raising=False)
    with pytest.raises(ValueError, match="--profile gpu needs a CUDA GPU"):
        pick_profile("gpu")
    assert pick_profile("cpu") == pick_profile(None) == "cpu"
    monkeypatch.setenv(REHEARSAL_ENV, "1")
    assert pick_profile("gpu") == "gpu"


# --------------------------------------------------------------- the published comparison

def fake_scores(cased: float, lowercased: float) -> dict:
    return {"tokenized_bleu": cased, "tokenized_bleu_signature": f"cased{cased}",
            "tokenized_bleu_lc": lowercased, "tokenized_bleu_lc_signature": f"lc{lowercased}",
            "n_sentences": 1000, "split": "test_2016_flickr"}


def multi30k(src, tgt):
    return SimpleNamespace(name="multi30k", src_lang=src, tgt_lang=tgt)


def test_en_de_is_compared_in_lowercased_tokenized_bleu_without_compound_splitting():
    """Wu et al. 2021's 41.0 is lowercased Moses-tokenized BLEU, beam 5: our tokenized_bleu_lc
    of the beam-5 decode, never the cased, compound-split tokenized_bleu."""
    decodes = {"beam4": fake_scores(30.0, 30.5), "greedy": fake_scores(20.0, 20.5),
               "beam5": fake_scores(31.0, 33.0)}
    en_de = published_comparison(multi30k("en", "de"), decodes)
    assert (en_de["published"], en_de["ours"], en_de["signature"]) == (41.0, 33.0, "lc33.0")
    assert (en_de["metric_key"], en_de["decoding"]) == ("tokenized_bleu_lc", "beam5")
    assert en_de["metric"] == ("lowercased Moses-tokenized BLEU (multi-bleu.perl -lc, no "
                               "compound splitting), beam 5")
    assert en_de["source"] == "Wu et al. 2021" and "Wu et al. 2021" in en_de["note"]
    de_en = published_comparison(multi30k("de", "en"), decodes)
    assert (de_en["published"], de_en["ours"], de_en["decoding"]) == (36.5, 20.5, "greedy")
    assert de_en["metric"].endswith(", greedy") and "lowercased" in de_en["metric"]
    assert published_comparison(SimpleNamespace(name="numbers", src_lang="en", tgt_lang="de"),
                                decodes) is None


def test_en_de_comparison_ignores_case_and_keeps_hyphenated_compounds_whole():
    """Scored by bleu.all_bleu: an output right but for its capitals scores 100 in the compared
    metric, whose signature names lowercasing and no compound split, while the cased
    compound-split score is lower."""
    refs = ["Ein Mann fährt ein Mountain-Bike auf einem Waldweg ."]
    scores = {**all_bleu([refs[0].lower()], refs, "de"), "n_sentences": 1, "split": "test"}
    en_de = published_comparison(multi30k("en", "de"), {"beam5": scores})
    assert en_de["ours"] == pytest.approx(100.0)
    assert scores["tokenized_bleu"] < 50.0
    assert "case:lc-ascii" in en_de["signature"] and "compound-split" not in en_de["signature"]
    assert "compound-split" in scores["tokenized_bleu_signature"]


# --------------------------------------------------------------------------- the recipe

def test_the_gpu_recipe_trains_the_base_model_for_5_minutes():
    gpu = RECIPES["reproduce-gpu"].config()
    assert (gpu.preset, gpu.time_budget, gpu.max_tokens, gpu.tokens_per_step) == (
        "base", 5.0, 4096, None)
    assert (gpu.warmup, gpu.lr_scale, gpu.model["dropout"]) == (4000, 1.0, 0.3)
    assert (gpu.eval_every, gpu.save_every, gpu.patience, gpu.average) == (250, 250, 8, 5)
    assert not {"accum", "save_every_minutes"} & set(_GPU_MULTI30K)  # fields being removed
    assert RECIPES["notebook-gpu"].train is RECIPES["reproduce-gpu"].train


def test_the_gpu_recipe_cites_measurements_that_exist():
    why = RECIPES["reproduce-gpu"].why
    cited = re.findall(r"results/[\w./-]+[\w/]", why)
    assert len(cited) >= 3
    for path in cited:
        assert (ROOT / path).exists(), path
    assert "5 minutes" in why


# ------------------------------------------------------------------- bench/gpu_run.sh

def test_gpu_run_script_parses():
    done = subprocess.run(["bash", "-n", str(SCRIPT)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_gpu_run_script_names_its_steps_and_skips_what_does_not_fit(tmp_path):
    """With no time left every step is skipped, by name, in order of importance, and the
    script fails saying so; the reproduce command records into $OUT with the gpu profile."""
    text = SCRIPT.read_text()
    for part in ("--profile gpu", "--record", '--results-dir "$OUT"', "tests/test_cuda.py",
                 "bench/bench_train.py", "--compile", 'BUDGET=${BUDGET:-5}'):
        assert part in text, part
    out = tmp_path / "out"
    env = {**os.environ, "QUICK": "1", "DEVICE": "cpu", "DEADLINE": "0", "OUT": str(out),
           "RUNS": str(tmp_path / "runs"), "PYTHON": sys.executable}
    done = subprocess.run(["bash", str(SCRIPT)], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 1
    log = (out / "run.log").read_text()
    order = ["env", "data", "reproduce", "test_cuda", "bench_train_compiled"]
    at = [log.index(f"=== {name}: skipped: ") for name in order]
    assert at == sorted(at)
    assert "SKIPPED for time or data: env data reproduce (no data) test_cuda " \
           "bench_train_compiled" in log
    summary = json.loads((out / "gpu_run.json").read_text())
    assert [(s["step"], s["exit"]) for s in summary["steps"]] == [
        (name, "skipped") for name in order]
    assert summary["side_by_side"] == ["multi30k-de-en-gpu", "multi30k-en-de-gpu"]
    assert str(out) not in log


def test_gpu_run_script_runs_the_directions_one_by_one_when_asked(tmp_path):
    out = tmp_path / "out"
    env = {**os.environ, "QUICK": "1", "DEVICE": "cpu", "DEADLINE": "0", "OUT": str(out),
           "RUNS": str(tmp_path / "runs"), "PYTHON": sys.executable, "PARALLEL": "0",
           "ONLY": "reproduce"}
    subprocess.run(["bash", str(SCRIPT)], cwd=ROOT, env=env, capture_output=True, text=True,
                   timeout=120)
    log = (out / "run.log").read_text()
    assert "=== reproduce_de_en: skipped: it needs about 46 s" in log
    assert "=== reproduce_en_de: skipped: it needs about 46 s" in log
    assert "=== test_cuda: skipped (not in ONLY)" in log


def test_gpu_run_script_names_the_variants_step_it_has_no_time_for(tmp_path):
    out = tmp_path / "out"
    env = {**os.environ, "QUICK": "1", "DEVICE": "cpu", "DEADLINE": "0", "OUT": str(out),
           "RUNS": str(tmp_path / "runs"), "PYTHON": sys.executable, "ONLY": "variants"}
    subprocess.run(["bash", str(SCRIPT)], cwd=ROOT, env=env, capture_output=True, text=True,
                   timeout=120)
    log = (out / "run.log").read_text()
    assert "=== variants: skipped: it needs about 61 s" in log
    assert "=== reproduce: skipped (not in ONLY)" in log


def test_variants_table_reads_each_variants_log_and_scores(tmp_path, monkeypatch):
    """Rows from the files a variant leaves; a variant that failed keeps what it reached."""
    monkeypatch.syspath_prepend(str(ROOT / "bench"))
    import variants_table

    log = [{"kind": "train", "step": s, "tokens_per_s": t, "wall_time": w}
           for s, t, w in ((50, 100.0, 2.0), (100, 300.0, 4.0), (150, 200.0, 6.5))]
    log += [{"kind": "val", "step": 100, "ppl": 9.5}, {"kind": "val", "step": 150, "ppl": 8.25}]
    (tmp_path / "variant_a_log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in log))
    for beam, score in ((1, 30.123), (5, 31.456)):
        (tmp_path / f"variant_a_beam{beam}.json").write_text(json.dumps(
            {"sacrebleu": score, "tokenized_bleu_lc": score + 1, "chrf": 50.0}))
    table = variants_table.main([str(tmp_path), "a en-de --warmup 2000 --clip-grad 1.0;\n b de-en"])
    assert table == json.loads((tmp_path / "variants.json").read_text())
    assert table[0] == {"name": "a", "direction": "en-de",
                        "options": "--warmup 2000 --clip-grad 1.0", "steps": 150,
                        "wall_time_s": 6.5, "tokens_per_s": 200, "best_val_ppl": 8.25,
                        "beam1": {"sacrebleu": 30.12, "tokenized_bleu_lc": 31.12},
                        "beam5": {"sacrebleu": 31.46, "tokenized_bleu_lc": 32.46}}
    assert table[1] == {"name": "b", "direction": "de-en", "options": ""}


FAKE_PYTHON = r'''#!/usr/bin/env bash
# python for gpu_run.sh's orchestration: `-m transformer CMD` writes what CMD would, at once
if [ "$1" = -m ] && [ "$2" = transformer ]; then
  cmd=$3; shift 3; echo "$cmd $*" >> "$FAKE_CALLS"
  while [ $# -gt 0 ]; do
    case $1 in --run-dir) run=$2;; --json) json=$2;; --results-dir) results=$2;;
               --runs-dir) runs=$2;; --src) src=$2;; --tgt) tgt=$2;; esac; shift
  done
  case $cmd in
    train) mkdir -p "$run/checkpoints" && touch "$run/averaged.pt"
           printf '%s\n' '{"kind": "train", "step": 7, "tokens_per_s": 5.0, "wall_time": 1.5}' \
             '{"kind": "val", "step": 7, "ppl": 9.0}' > "$run/log.jsonl";;
    evaluate) echo '{"sacrebleu": 1.0, "tokenized_bleu_lc": 2.0}' > "$json";;
    reproduce) run="$runs/multi30k-$src-$tgt-gpu"
               mkdir -p "$run" && echo '{}' > "$run/log.jsonl"
               echo '{"bleu": {}}' > "$results/multi30k-$src-$tgt-gpu.json";;
  esac
  exit 0
fi
exec "$REAL_PYTHON" "$@"
'''


def test_gpu_run_script_trains_the_variants_beside_the_recorded_runs(tmp_path):
    """SIDE_VARIANTS=1: one reproduce step starts both recorded runs and every variant but
    "recipe" (the recorded en-de run is its row), scores each variant twice, and names all
    four runs as side by side in the provenance (the package's commands faked: this checks
    the script, which a GPU lease depends on)."""
    fake = tmp_path / "python"
    fake.write_text(FAKE_PYTHON)
    fake.chmod(0o755)
    out, calls = tmp_path / "out", tmp_path / "calls"
    env = {**os.environ, "QUICK": "1", "DEVICE": "cpu", "OUT": str(out), "ONLY": "reproduce",
           "RUNS": str(tmp_path / "runs"), "PYTHON": str(fake), "REAL_PYTHON": sys.executable,
           "FAKE_CALLS": str(calls), "SIDE_VARIANTS": "1"}
    done = subprocess.run(["bash", str(SCRIPT)], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    made = []
    for words in map(str.split, calls.read_text().splitlines()):
        pair = [words[words.index(flag) + 1] for flag in ("--src", "--tgt") if flag in words]
        made.append(" ".join([words[0], "-".join(pair)]).strip())
    assert sorted(made) == ["evaluate"] * 4 + ["reproduce de-en", "reproduce en-de",
                                               "train en-de", "train en-de"]
    table = json.loads((out / "variants.json").read_text())
    assert [row["name"] for row in table] == ["b8k", "b16k"]
    assert table[1]["options"].startswith("--max-tokens 16384")
    assert table[1]["steps"] == 7 and table[1]["beam5"] == {"sacrebleu": 1.0,
                                                            "tokenized_bleu_lc": 2.0}
    side = ["multi30k-de-en-gpu", "multi30k-en-de-gpu", "variant_b8k", "variant_b16k"]
    assert json.loads((out / "gpu_run.json").read_text())["side_by_side"] == side
    recorded = json.loads((out / "multi30k-en-de-gpu.json").read_text())
    assert recorded["gpu_run"]["side_by_side"] == side
    assert not (tmp_path / "runs" / "variant_b8k").exists()  # checkpoints do not stay
