"""Checkpoints: atomic, pruned, strict, resumable exactly, averageable (Section 6.1)."""

import json

import pytest
import torch
from helpers import tiny_train_config, tokens_for

from transformer.data import load_dataset
from transformer.engine import checkpoint as ckpt
from transformer.engine.evaluate import translate
from transformer.engine.train import TrainConfig, train


@pytest.fixture(scope="module")
def copy_data():
    return load_dataset("copy", n_train=300, n_val=40, n_test=40)


def tiny(run_dir, **kw) -> TrainConfig:
    fields = dict(model={"dropout": 0.1}, max_tokens=256, warmup=20, log_every=2)
    return tiny_train_config(run_dir, **{**fields, **kw})


@pytest.fixture(scope="module")
def run(tmp_path_factory, copy_data):
    """A 6-step run with a checkpoint after every step, the last 3 kept."""
    run_dir = tmp_path_factory.mktemp("ckpt") / "run"
    train(tiny(run_dir, max_steps=6, save_every=1, keep_last=3), copy_data)
    return run_dir


def test_keep_last_k(run):
    assert [p.name for p in ckpt.list_checkpoints(run)] == [
        "step_00000004.pt", "step_00000005.pt", "step_00000006.pt"]
    assert ckpt.latest_checkpoint(run).name == "step_00000006.pt"
    assert ckpt.prune_checkpoints(run, keep_last=10) == []


def test_save_interrupted_mid_write_leaves_no_partial_file(tmp_path, monkeypatch):
    path = tmp_path / "step_00000001.pt"
    ckpt.save_checkpoint({"format": ckpt.FORMAT, "value": 1}, path)
    before = path.read_bytes()

    def crash(obj, f):
        f.write(b"PK\x03\x04 half a checkpoint")
        raise KeyboardInterrupt("killed while writing")

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(KeyboardInterrupt):
        ckpt.save_checkpoint({"format": ckpt.FORMAT, "value": 2}, path)
    with pytest.raises(KeyboardInterrupt):
        ckpt.save_checkpoint({"format": ckpt.FORMAT, "value": 3}, tmp_path / "new.pt")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step_00000001.pt"]  # no temp files
    assert path.read_bytes() == before  # the old checkpoint is intact


def test_corrupt_or_foreign_files_raise_clear_errors(run, tmp_path):
    good = ckpt.latest_checkpoint(run).read_bytes()
    cut = tmp_path / "cut.pt"
    cut.write_bytes(good[: len(good) // 2])
    with pytest.raises(ckpt.CheckpointError, match="truncated or corrupt") as err:
        ckpt.load_checkpoint(cut)
    assert str(cut) in str(err.value) and "earlier checkpoint" in str(err.value)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"\x00" * 100)
    with pytest.raises(ckpt.CheckpointError, match="cannot be read"):
        ckpt.load_checkpoint(junk)
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(2)}, other)
    with pytest.raises(ckpt.CheckpointError, match="not a checkpoint of this project"):
        ckpt.load_checkpoint(other)
    with pytest.raises(ckpt.CheckpointError, match="no such file"):
        ckpt.load_checkpoint(tmp_path / "missing.pt")


def test_config_mismatch_and_missing_weights_raise_clear_errors(run, tmp_path, copy_data):
    latest = ckpt.latest_checkpoint(run)
    cfg = tiny(tmp_path / "other", max_steps=8, resume=str(latest),
               model={"dropout": 0.1, "d_model": 32})
    with pytest.raises(ckpt.CheckpointError, match="d_model: checkpoint 64, current 32"):
        train(cfg, copy_data)
    state = ckpt.load_checkpoint(latest)
    del state["model"]["generator.weight" if "generator.weight" in state["model"]
                       else "encoder.0.ffn.w_1.weight"]
    model = ckpt.build_model(ckpt.load_checkpoint(latest))
    with pytest.raises(ckpt.CheckpointError, match="do not fit the model"):
        ckpt.load_model_state(model, state["model"], latest)


def test_resumed_run_equals_uninterrupted_run(tmp_path, copy_data):
    """Dropout on, 2 micro-batches per step, epochs rolling over: still bitwise equal."""
    kw = dict(model={"dropout": 0.3}, tokens_per_step=tokens_for(copy_data, 1024, 2))
    full = train(tiny(tmp_path / "full", max_steps=14, **kw), copy_data)
    train(tiny(tmp_path / "part", max_steps=6, **kw), copy_data)  # "interrupted" at step 6
    resumed = train(tiny(tmp_path / "part", max_steps=14, resume="auto", **kw), copy_data)
    assert resumed["steps"] == 14 and full["epochs"] > 1  # crossed an epoch boundary
    a = ckpt.load_checkpoint(full["checkpoint"])
    b = ckpt.load_checkpoint(resumed["checkpoint"])
    for name, tensor in a["model"].items():
        assert torch.equal(tensor, b["model"][name]), name
    assert a["progress"]["tokens"] == b["progress"]["tokens"]
    lines = (tmp_path / "part" / "log.jsonl").read_text().splitlines()
    steps = [r["step"] for r in map(json.loads, lines) if r["kind"] == "train"]
    assert steps == sorted(set(steps)) and steps[-1] == 14  # one record per logged step


def test_averaging_equals_the_manual_mean(run, tmp_path, copy_data):
    paths = ckpt.list_checkpoints(run)
    states = [torch.load(p, weights_only=True)["model"] for p in paths]
    averaged = ckpt.average_checkpoints(paths)
    for name in states[0]:
        manual = torch.stack([s[name] for s in states]).mean(0)
        torch.testing.assert_close(averaged[name], manual, rtol=1e-6, atol=1e-7)
    out = ckpt.write_average(paths, tmp_path / "avg.pt")
    model, tokenizer, state = ckpt.load_model(out)  # one file rebuilds model and tokenizer
    assert state["averaged_from"] == [str(p) for p in paths]
    assert isinstance(translate(model, tokenizer, ["1 2 3"], beam_size=2)[0], str)
    with pytest.raises(ckpt.CheckpointError, match="no optimizer state"):
        train(tiny(tmp_path / "x", max_steps=8, resume=str(out)), copy_data)
