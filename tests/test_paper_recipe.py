"""The paper's experiment end to end, on miniature WMT14 archives served on 127.0.0.1: download
-> BPE -> train with the base recipe (scaled down by overrides) -> checkpoint averaging ->
evaluation with the paper's BLEU, all through the command line as a user runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from test_data_wmt14 import make_archives, serve

from transformer.data import CHECKSUMS, download

ROOT = Path(__file__).resolve().parent.parent


def cli(*args, env):
    done = subprocess.run([sys.executable, "-m", "transformer", *args], cwd=ROOT,
                          env={**os.environ, "OMP_NUM_THREADS": "1", **env},
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"{args[0]}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def test_base_recipe_on_wmt14_from_download_to_paper_bleu(wmt14_mirror, tmp_path, monkeypatch):
    # the miniature test-full.tgz is not the published one: pin its checksum, in this process
    mirror = wmt14_mirror
    CHECKSUMS["wmt14"].update(make_archives(mirror))
    cache, run = tmp_path / "cache", tmp_path / "run"
    with serve(mirror) as url:
        monkeypatch.setenv("TRANSFORMER_DATA_MIRROR", url)
        download("wmt14", cache, progress=False)
    env = {"TRANSFORMER_DATA_MIRROR": str(tmp_path / "nowhere")}  # from here on: the cache
    plan = cli("train", "--preset", "base", "--dataset", "wmt14", "--src", "en", "--tgt",
               "de", "--data-dir", str(cache), "--dry-run", env=env)
    assert "100,000 steps" in plan and "at hand" in plan
    out = cli("train", "--preset", "base", "--dataset", "wmt14", "--src", "en", "--tgt", "de",
              "--data-dir", str(cache), "--run-dir", str(run), "--vocab-size", "150",
              # the base recipe, scaled down: a narrow model, a few steps, tiny batches
              "--n-layers", "1", "--d-model", "32", "--d-ff", "64", "--n-heads", "2",
              "--max-steps", "8", "--warmup", "4", "--tokens-per-step", "40",
              "--max-tokens", "256", "--save-every", "1", "--eval-every", "4",
              "--no-progress", env=env)
    summary = json.loads(out[out.index("{"):])
    assert summary["steps"] == 8
    averaged = summary["averaged"]  # the recipe's 5, as Section 6.1 does for base
    assert averaged["from"] == [f"step_0000000{k}.pt" for k in range(4, 9)]
    config = json.loads((run / "config.json").read_text())["train_config"]
    assert (config["average"], config["keep_last"], config["save_every"]) == (5, 5, 1)
    out = cli("evaluate", "--checkpoint", averaged["checkpoint"], "--split", "test", "--json",
              str(tmp_path / "eval.json"), env=env)
    scores = json.loads((tmp_path / "eval.json").read_text())
    assert scores["split"] == "newstest2014" and scores["n_sentences"] == 3
    signature = scores["tokenized_bleu_signature"]
    assert "moses-tok:de" in signature and "compound-split" in signature
    assert "tok:none" in signature and "smooth:none" in signature  # multi-bleu.perl's count
    assert "tokenized BLEU" in out and "sacreBLEU" in out
