"""A new user's first hour: the main job leaves the checkout clean and compares with the recorded
run, honours TRANSFORMER_RUNS_DIR, shows a bar with a total, records no machine paths; the
install is quiet and refuses an old Python clearly."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from helpers import tiny_train_config

from transformer.data import load_dataset
from transformer.engine.train import train

ROOT = Path(__file__).resolve().parent.parent


def git_status() -> str:
    return subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=ROOT,
                          capture_output=True, text=True, check=True).stdout


def test_the_main_job_leaves_the_checkout_clean_and_compares(tmp_path):
    before = git_status()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TRANSFORMER_RUNS_DIR": str(tmp_path / "runs"),
           "TRANSFORMER_PROFILE": "cpu"}
    done = subprocess.run([sys.executable, "-m", "transformer", "reproduce", "--time-budget",
                           "0.05", "--limit", "10"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    name = next(line.split()[3].rstrip(",") for line in done.stdout.splitlines()
                if line.startswith("reproduce: profile"))
    written = ROOT / "results" / "local" / f"{name}.json"
    try:
        assert git_status() == before  # the recorded results/runs/*.json are untouched
        assert (tmp_path / "runs" / name / "summary.json").is_file()  # TRANSFORMER_RUNS_DIR
        text = written.read_text()
        assert str(ROOT) not in text  # no path of this machine's checkout
        assert json.loads(text)["run"] == name
        if (ROOT / "results" / "runs" / f"{name}.json").is_file():  # Multi30k: recorded
            assert "beside the recorded run results/runs/" in done.stdout
            assert "sacreBLEU, beam 4" in done.stdout and "recorded" in done.stdout
    finally:
        written.unlink(missing_ok=True)


def test_a_time_budgeted_run_shows_a_bar_over_its_budget(tmp_path, capsys):
    data = load_dataset("copy", n_train=300, n_val=20, n_test=20)
    train(tiny_train_config(tmp_path / "a", time_budget=0.05, progress=True), data)
    err = capsys.readouterr().err
    assert "time budget:" in err and "/3 s" in err  # 0.05 minutes
    train(tiny_train_config(tmp_path / "b", max_steps=7, progress=True), data)
    assert "7/7" in capsys.readouterr().err


def test_the_install_declares_its_licence_the_current_way():
    text = (ROOT / "pyproject.toml").read_text()  # (tomllib is Python 3.11+; we support 3.10)
    assert re.search(r'^license = "MIT"$', text, re.M)  # a table is deprecated (PEP 639)
    assert re.search(r'^requires = \["setuptools>=77"\]$', text, re.M)


def test_make_refuses_an_old_python_before_installing_anything(tmp_path):
    old = tmp_path / "python3.8"
    old.write_text('#!/bin/sh\ncase "$1" in --version) echo "Python 3.8.10";; *) exit 1;; esac\n')
    old.chmod(0o755)
    venv = tmp_path / "venv"
    done = subprocess.run(["make", "install", f"PYTHON={old}", f"VENV={venv}"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and not venv.exists()
    assert "needs Python 3.10 or newer" in done.stderr and "Python 3.8.10" in done.stderr
