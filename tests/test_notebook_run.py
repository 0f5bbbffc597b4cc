"""transformer.apps.notebook: the notebooks' run is trained once, then reused; settings are
checked."""

from __future__ import annotations

import pytest

from transformer.apps import notebook, reproduce
from transformer.apps.recipes import RECIPES, Recipe
from transformer.data import load_dataset


@pytest.fixture
def tiny_setup(tmp_path, monkeypatch):
    dataset = load_dataset("numbers", n_train=300, n_val=50, n_test=50)
    monkeypatch.setenv(reproduce.RUNS_DIR_ENV, str(tmp_path))
    monkeypatch.setitem(notebook._DATA_CACHE, (None, "en", "de"), (dataset, "numbers"))
    settings = dict(preset="tiny", model=dict(dropout=0.0), max_tokens=256, tokens_per_step=None,
                    warmup=10, max_steps=3, log_every=1, eval_every=None, save_every=1,
                    keep_last=2, progress=False)
    monkeypatch.setitem(RECIPES, "notebook-cpu", Recipe("test", "a tiny run", settings))
    return dataset, settings


def test_trains_once_then_reuses(tiny_setup, capsys):
    first = notebook.notebook_run("cpu")
    assert not first.reused and first.summary["steps"] == 3
    assert first.run_dir.parent == reproduce.default_runs_dir()
    assert [r["step"] for r in first.log("train")] == [1, 2, 3]
    assert len(first.checkpoints()) == 2
    second = notebook.notebook_run("cpu")
    assert second.reused and second.checkpoint == first.checkpoint
    assert "reusing the finished run" in capsys.readouterr().out
    assert not second.model.training  # loaded for evaluation


def test_other_settings_retrain_on_cpu(tiny_setup):
    _, settings = tiny_setup
    notebook.notebook_run("cpu")
    settings["max_steps"] = 4
    cfg = notebook.notebook_config("cpu", tiny_setup[0])
    assert notebook.run_status(cfg)[0] == "other"
    again = notebook.notebook_run("cpu")
    assert not again.reused and again.summary["steps"] == 4


def test_missing_run_without_training_says_what_to_do(tiny_setup):
    with pytest.raises(FileNotFoundError, match="06_training"):
        notebook.notebook_run("cpu", train_if_missing=False)


def test_partial_run_is_not_finished(tiny_setup):
    dataset, _ = tiny_setup
    run = notebook.notebook_run("cpu")
    (run.run_dir / "summary.json").unlink()
    assert notebook.run_status(notebook.notebook_config("cpu", dataset))[0] == "partial"


def test_variant_has_its_own_run(tiny_setup):
    plain = notebook.notebook_run("cpu")
    twin = notebook.notebook_run("cpu", model={"label_smoothing": 0.0})
    assert not twin.reused and twin.run_dir != plain.run_dir
    assert twin.run_dir.name.endswith("-label_smoothing0.0")
    assert twin.model.config.label_smoothing == 0.0
    assert plain.model.config.label_smoothing == 0.1
    assert notebook.notebook_run("cpu").reused  # the variant did not disturb the plain run


def test_waits_for_another_process_training_the_same_run(tiny_setup, capsys):
    """06 and 07 may execute in parallel (make notebooks): the second caller waits, then reuses."""
    import threading
    import time

    from transformer.engine.rundir import RunLock

    cfg = notebook.notebook_config("cpu", tiny_setup[0])
    other = RunLock(cfg.run_dir)
    other.acquire()  # as if another process were training this run
    result = {}
    waiter = threading.Thread(target=lambda: result.update(run=notebook.notebook_run("cpu")))
    waiter.start()
    time.sleep(0.5)
    assert waiter.is_alive() and "waiting for it to end" in capsys.readouterr().out
    other.release()  # the other process ends (here without finishing: the waiter trains)
    waiter.join(timeout=60)
    assert not waiter.is_alive() and result["run"].summary["steps"] == 3


def test_train_or_reuse_trains_once_and_retrains_on_other_settings(tmp_path):
    """07's Table 3 runs: trained by the first execution, reused by the next, retrained when
    their settings change or a run was left half-done."""
    from transformer.engine.train import TrainConfig

    dataset = load_dataset("numbers", n_train=300, n_val=50, n_test=50)
    settings = dict(dataset="numbers", preset="tiny", model=dict(dropout=0.0), max_tokens=256,
                    tokens_per_step=None, warmup=10, max_steps=3, log_every=1, eval_every=None,
                    save_every=None, keep_last=1, progress=False,
                    run_dir=str(tmp_path / "row"))
    summary, reused = notebook.train_or_reuse(TrainConfig(**settings), dataset)
    assert not reused and summary["steps"] == 3
    again, reused = notebook.train_or_reuse(TrainConfig(**settings), dataset)
    assert reused and again == summary
    longer, reused = notebook.train_or_reuse(TrainConfig(**{**settings, "max_steps": 4}), dataset)
    assert not reused and longer["steps"] == 4
    (tmp_path / "row" / "summary.json").unlink()  # as if interrupted before the end
    redone, reused = notebook.train_or_reuse(TrainConfig(**{**settings, "max_steps": 4}),
                                             dataset)
    assert not reused and redone["steps"] == 4
