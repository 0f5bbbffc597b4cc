"""``python -m transformer``: train a tiny model, then translate, average and evaluate with it."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from transformer.apps.cli import build_parser, train_config_from_args

ROOT = Path(__file__).resolve().parent.parent


def cli(*args, stdin=None, timeout=120):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "transformer", *args], input=stdin, cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{args[0]} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def test_train_then_translate_average_and_evaluate(tmp_path):
    run = tmp_path / "run"
    out = cli("train", "--dataset", "copy", "--preset", "tiny", "--set", "dropout=0.0",
              "--max-tokens", "1024", "--tokens-per-step", "0", "--warmup", "50",
              "--lr-scale", "0.25", "--max-steps", "40", "--log-every", "10",
              "--eval-every", "0", "--save-every", "20", "--run-dir", str(run), "--no-progress")
    summary = json.loads(out[out.index("{"):])
    assert summary["steps"] == 40 and Path(summary["checkpoint"]).exists()
    log = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]
    train_log = [r for r in log if r["kind"] == "train"]
    assert train_log[-1]["loss"] < train_log[0]["loss"]

    hyps = cli("translate", "--checkpoint", summary["checkpoint"], "--beam", "2",
               stdin="1 2 3\n\n4 5 6 7\n").splitlines()
    assert len(hyps) == 3 and hyps[1] == "" and hyps[0] and hyps[2]

    avg = tmp_path / "avg.pt"
    assert "averaged 2 checkpoints" in cli("average", "--last", "2", "--run-dir", str(run),
                                           "--out", str(avg))
    report = cli("evaluate", "--checkpoint", str(avg), "--split", "test", "--beam", "1",
                 "--limit", "20", "--dtype", "bfloat16", "--json", str(tmp_path / "eval.json"))
    assert "sacreBLEU" in report and "nrefs:1" in report and "perplexity" in report
    assert "decoded in bfloat16" in report.splitlines()[0]
    scores = json.loads((tmp_path / "eval.json").read_text())
    assert scores["n_sentences"] == 20 and scores["perplexity"] > 1
    assert scores["dtype"] == "bfloat16"


def test_errors_are_reported_without_a_traceback(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "transformer", "translate", "--checkpoint",
                           str(bad)], input="", cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 1
    assert "truncated or corrupt" in done.stderr and "Traceback" not in done.stderr


def test_options_reach_the_train_and_model_configs():
    args = build_parser().parse_args([
        "train", "--preset", "base", "--dataset", "multi30k", "--src", "de", "--tgt", "en",
        "--d-model", "256", "--n-layers", "3", "--dropout", "0.2", "--no-share-embeddings",
        "--set", "d_ff=512", "--set", "warmup=100", "--max-tokens", "2000",
        "--tokens-per-step", "0", "--time-budget", "1.5", "--compile"])
    cfg = train_config_from_args(args)
    assert (cfg.preset, cfg.dataset, cfg.src, cfg.tgt) == ("base", "multi30k", "de", "en")
    assert cfg.model == {"d_model": 256, "n_layers": 3, "dropout": 0.2,
                         "share_embeddings": False, "d_ff": 512}
    assert (cfg.warmup, cfg.max_tokens, cfg.tokens_per_step, cfg.time_budget, cfg.compile) == (
        100, 2000, None, 1.5, True)
    with pytest.raises(SystemExit):
        train_config_from_args(build_parser().parse_args(["train", "--set", "nonsense=1"]))


def test_reproduce_writes_a_results_file(tmp_path):
    from transformer.apps.reproduce import reproduce
    from transformer.data import load_dataset

    data = load_dataset("numbers", n_train=300, n_val=20, n_test=20)
    result = reproduce("cpu", time_budget=0.02, results_dir=tmp_path / "results",
                       runs_dir=tmp_path / "runs", dataset=data, limit=5, preset="tiny",
                       max_tokens=512, eval_every=None, log_every=5)
    saved = json.loads((tmp_path / "results" / "numbers-en-de-cpu.json").read_text())
    assert saved["run"] == result["run"] == "numbers-en-de-cpu"
    for key in ("model_config", "train_config", "training", "bleu", "perplexity", "samples",
                "timings", "environment"):
        assert key in saved, key
    assert "sacrebleu_signature" in saved["bleu"] and saved["decoding"]["n_sentences"] == 5
    assert "tokenized_bleu" in saved["bleu_greedy"] and "tokenized_bleu" in saved["bleu_beam5"]
    assert saved["published"] is None  # only Multi30k has published numbers to stand beside
    # one-word targets: BLEU-4 cannot count them; exact match and chrF are reported instead
    assert saved["bleu"]["bleu_meaningful"] is False
    assert 0 <= saved["bleu"]["exact_match"] <= 100 and "chrf_signature" in saved["bleu"]
    assert saved["training"]["steps"] >= 1 and saved["environment"]["torch"]


def test_published_comparison_picks_the_published_metric_and_decoding():
    from types import SimpleNamespace

    from transformer.apps.reproduce import published_comparison

    def scores(x):
        return {"tokenized_bleu": x, "tokenized_bleu_signature": f"sig{x}",
                "tokenized_bleu_lc": x + 0.5, "tokenized_bleu_lc_signature": f"lc{x}",
                "n_sentences": 1000, "split": "test_2016_flickr"}

    decodes = {"beam4": scores(30.0), "greedy": scores(20.0), "beam5": scores(31.0)}
    de_en = published_comparison(SimpleNamespace(name="multi30k", src_lang="de", tgt_lang="en"),
                                 decodes)
    assert (de_en["published"], de_en["ours"], de_en["signature"]) == (36.5, 20.5, "lc20.0")
    en_de = published_comparison(SimpleNamespace(name="multi30k", src_lang="en", tgt_lang="de"),
                                 decodes)
    # Wu et al. 2021 report lowercased tokenized BLEU: the lowercased score, not the cased one
    assert (en_de["published"], en_de["ours"], en_de["signature"]) == (41.0, 31.5, "lc31.0")
    assert "1000 sentences of test_2016_flickr" in en_de["note"]


def test_a_recipe_is_the_base_and_options_override_it():
    args = build_parser().parse_args([
        "train", "--recipe", "reproduce-cpu", "--dataset", "copy", "--max-tokens", "512",
        "--dropout", "0.3", "--eval-every", "0"])
    cfg = train_config_from_args(args)
    assert (cfg.preset, cfg.dataset, cfg.max_tokens, cfg.warmup, cfg.eval_every) == (
        "small", "copy", 512, 400, None)
    assert cfg.model == {"n_layers": 2, "d_model": 128, "d_ff": 512, "n_heads": 4,
                         "dropout": 0.3}


def test_option_help_and_ranges_come_from_the_schema(capsys):
    import dataclasses

    from transformer.apps.options import MODEL_HELP, TRAIN_HELP
    from transformer.engine.train import TrainConfig
    from transformer.model import TransformerConfig

    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--help"])
    train_help = capsys.readouterr().out
    squeezed = "".join(train_help.split())  # argparse wraps lines, also after hyphens
    for cls, helps in ((TrainConfig, TRAIN_HELP), (TransformerConfig, MODEL_HELP)):
        assert set(helps) <= {f.name for f in dataclasses.fields(cls)}  # no stale entry
    # every field a user sets has an option: all of TrainConfig's but the model dict, all of
    # TransformerConfig's but what the tokenizer decides
    assert {f.name for f in dataclasses.fields(TrainConfig)} - set(TRAIN_HELP) == {"model"}
    assert {f.name for f in dataclasses.fields(TransformerConfig)} - set(MODEL_HELP) == {
        "src_vocab_size", "tgt_vocab_size", "pad_id", "bos_id", "eos_id", "unk_id"}
    for cls, helps in ((TrainConfig, TRAIN_HELP), (TransformerConfig, MODEL_HELP)):
        for f in dataclasses.fields(cls):
            flag = "--" + f.name.replace("_", "-")
            if f.name in helps:
                assert flag in train_help and "".join(helps[f.name].split()) in squeezed
            else:
                assert flag + " " not in train_help, f.name
    assert "--max-stepsINTstopafterthismanyoptimizersteps;aninteger>=1" in squeezed
    with pytest.raises(ValueError, match=r"max_steps must be an integer >= 1 \(or None\), got -1"):
        train_config_from_args(build_parser().parse_args(["train", "--max-steps", "-1"]))


def test_the_package_needs_no_plotting_library():
    code = ("import sys, transformer, transformer.engine.train, transformer.apps.cli; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('matplotlib', 'altair', 'pandas')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=ROOT, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "[]", out.stderr


@pytest.mark.parametrize("argv", [
    ["evaluate", "--checkpoint", "c.pt", "--limit", "-1"],  # would silently drop the last line
    ["average", "--last", "0", "--run-dir", "r", "--out", "a.pt"],  # would average them all
    ["translate", "--checkpoint", "c.pt", "--beam", "0"],
    ["translate", "--checkpoint", "c.pt", "--alpha", "-0.5"],
    ["translate", "--checkpoint", "c.pt", "--max-tokens", "0"],
    ["reproduce", "--time-budget", "-3"],
])
def test_numbers_out_of_range_are_usage_errors(argv, capsys):
    with pytest.raises(SystemExit) as done:
        build_parser().parse_args(argv)
    assert done.value.code == 2 and "must be >=" in capsys.readouterr().err


def readme_train_commands() -> list[list[str]]:
    """The `train` command lines of the README and the training page, as argument lists after
    `-m transformer`."""
    lines = []
    text = "\n".join((ROOT / page).read_text() for page in ("README.md", "docs/training.md"))
    for line in text.splitlines():
        line = line.split("  #")[0].strip()
        if "-m transformer train" in line and not line.startswith("`"):
            lines.append(line.split("-m transformer", 1)[1].split())
    return lines


def test_the_documented_training_commands_run_as_printed():
    """Each parses into a run that can start (a stop condition, valid values), and the 8-GPU
    one plans about 25000 target tokens per step over its 8 ranks."""
    from transformer.apps.dryrun import FILL_ESTIMATE
    from transformer.engine.batch_size import choose_batch_size

    commands = readme_train_commands()
    assert any("--nproc-per-node" in " ".join(c) or "wmt14" in c for c in commands)
    assert ["train", "--preset", "base", "--dataset", "multi30k", "--src", "de", "--tgt",
            "en"] in commands
    for argv in commands:
        cfg = train_config_from_args(build_parser().parse_args(argv))
        assert cfg.max_steps or cfg.max_epochs or cfg.time_budget, argv
        if "wmt14" in argv and "--preset" in argv:
            assert cfg.max_steps == 100_000 and cfg.average == 5
            plan = choose_batch_size(cfg.tokens_per_step, 8, cfg.max_tokens,
                                     lambda b: FILL_ESTIMATE * b, min_tokens=257)
            assert abs(plan.expected - 25000) <= 0.1 * 25000


@pytest.mark.parametrize("flags, native", [
    ("fpu sse2 avx2 avx512f", False), ("fpu avx512f avx512_bf16", True), (None, None)])
def test_bfloat16_on_a_cpu_without_bf16_instructions_is_warned_about(monkeypatch, capsys, flags,
                                                                      native):
    """translate/evaluate --dtype bfloat16 warn on an x86 CPU whose /proc/cpuinfo flags lack
    AVX512-BF16 and AMX (bf16 is emulated there: slower than float32); nowhere else."""
    import torch

    from transformer.apps import cli, profiles

    monkeypatch.setattr(profiles, "_cpuinfo", lambda field: flags if field == "flags" else None)
    assert profiles.cpu_has_native_bf16() is native
    cli._warn_slow_bf16("bfloat16", torch.device("cpu"))
    cli._warn_slow_bf16(None, torch.device("cpu"))
    cli._warn_slow_bf16("bfloat16", torch.device("cuda"))
    warned = capsys.readouterr().err
    assert ("no native bfloat16" in warned) is (native is False)
    assert warned.count("warning") <= 1  # only the bf16-on-CPU call
