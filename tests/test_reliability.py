"""Nothing lost, nothing silently wrong: damaged checkpoints, one run per run directory, the NaN
guard's advice, interrupted saves and signals (issue: checkpoints, run directories, bad input)."""

from __future__ import annotations

import errno
import json
import os
import signal
import struct
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
import torch
from helpers import tiny_train_config

from transformer.data import load_dataset
from transformer.engine import checkpoint as ckpt
from transformer.engine import train as train_module
from transformer.engine.rundir import Run, RunDirBusy, RunLock, read_log
from transformer.engine.schedule import transformer_lr
from transformer.engine.train import train

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def copy_data():
    return load_dataset("copy", n_train=300, n_val=40, n_test=40)


def tiny(run_dir, **kw):
    fields = dict(model={"dropout": 0.1}, max_tokens=256, warmup=20, log_every=2)
    return tiny_train_config(run_dir, **{**fields, **kw})


def flip_bytes_in_weights(path: Path, n: int = 64) -> None:
    """Invert ``n`` bytes in the middle of the largest tensor record of a checkpoint."""
    with zipfile.ZipFile(path) as archive:
        info = max((i for i in archive.infolist() if "/data/" in i.filename),
                   key=lambda i: i.file_size)
    data = bytearray(path.read_bytes())
    name_len, extra_len = struct.unpack("<HH", data[info.header_offset + 26:
                                                    info.header_offset + 30])
    start = info.header_offset + 30 + name_len + extra_len + info.file_size // 2
    data[start:start + n] = bytes(b ^ 0xFF for b in data[start:start + n])
    path.write_bytes(bytes(data))


def cli(*args, **kw):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "transformer", *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


TRAIN = ["train", "--dataset", "copy", "--preset", "tiny", "--max-tokens", "256",
         "--tokens-per-step", "0", "--eval-every", "0", "--save-every", "0", "--no-progress"]


# ---- damaged checkpoints ----------------------------------------------------------------------

def test_a_byte_flipped_checkpoint_is_refused_and_resume_falls_back(tmp_path, copy_data, capsys):
    run = tmp_path / "run"
    train(tiny(run, max_steps=6, save_every=1, keep_last=3), copy_data)
    latest = ckpt.latest_checkpoint(run)
    torch.load(latest, weights_only=True)  # loads before the damage
    flip_bytes_in_weights(latest)
    torch.load(latest, weights_only=True)  # torch alone does not notice ...
    with pytest.raises(ckpt.CheckpointError, match="is damaged: its record") as err:
        ckpt.load_model(latest)  # ... this project does
    assert str(latest) in str(err.value) and "\n" not in str(err.value)

    summary = train(tiny(run, max_steps=8, save_every=1, keep_last=3, resume="auto"), copy_data)
    out = capsys.readouterr().out
    assert "step_00000006.pt is damaged" in out and "step_00000006.pt.damaged" in out
    config = json.loads((run / "config.json").read_text())
    assert config["resumed_from"].endswith("step_00000005.pt")
    assert summary["steps"] == 8 and (run / "checkpoints" / "step_00000006.pt.damaged").exists()
    assert [r["step"] for r in read_log(run, "train")] == list(range(1, 9))  # 6 once, redone


def test_leftover_partial_saves_are_removed_at_the_next_start(tmp_path, copy_data, capsys):
    run = tmp_path / "run"
    train(tiny(run, max_steps=2, save_every=1), copy_data)
    leftover = run / "checkpoints" / ".step_00000003.pt.x1y2.tmp"
    leftover.write_bytes(b"half a checkpoint")
    train(tiny(run, max_steps=3, save_every=1, resume="auto"), copy_data)
    assert not leftover.exists() and "removed" in capsys.readouterr().out


def test_a_full_disk_during_a_save_keeps_the_previous_checkpoint(tmp_path, copy_data,
                                                                 monkeypatch):
    run = tmp_path / "run"
    real_save, calls = torch.save, []

    def save(obj, f, *args, **kw):
        calls.append(1)
        if len(calls) == 3:
            f.write(b"\0" * 1000)  # part of it made it to disk
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_save(obj, f, *args, **kw)

    monkeypatch.setattr(torch, "save", save)
    with pytest.raises(ckpt.CheckpointError, match="No space left on device") as err:
        train(tiny(run, max_steps=6, save_every=1), copy_data)
    previous = run / "checkpoints" / "step_00000002.pt"
    assert f"the previous checkpoint {previous} is intact" in str(err.value)
    assert ckpt.load_checkpoint(previous)["step"] == 2
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == [
        "step_00000001.pt", "step_00000002.pt"]  # no partial file


# ---- the NaN guard and resuming with other learning-rate settings ------------------------------

def test_nan_advice_names_the_newest_checkpoint_which_predates_the_nan(tmp_path, copy_data,
                                                                       monkeypatch):
    """The loss becomes NaN at step 10 of a run that logs every 4 steps and saves every 3 (a
    save is a log step): it stops at the log step 12, not saving there, and advises step 9."""
    real, step = train_module.loss_sum, {"n": 0}

    def blowing_up(logits, tgt_out, config):
        loss = real(logits, tgt_out, config)
        if torch.is_grad_enabled():  # a training step, not validation
            step["n"] += 1
            if step["n"] >= 10:
                return loss * float("nan")
        return loss

    monkeypatch.setattr(train_module, "loss_sum", blowing_up)
    run = tmp_path / "run"
    with pytest.raises(FloatingPointError) as err:
        train(tiny(run, max_steps=20, save_every=3, log_every=4, keep_last=20), copy_data)
    message = str(err.value)
    assert "between steps 10 and 12" in message
    assert f"--resume {run / 'checkpoints' / 'step_00000009.pt'}" in message
    assert ckpt.latest_checkpoint(run).name == "step_00000009.pt"  # none written after it


def test_a_resumed_run_uses_the_new_learning_rate_from_its_first_step(tmp_path, copy_data,
                                                                     monkeypatch):
    run = tmp_path / "run"
    train(tiny(run, max_steps=4, save_every=2), copy_data)
    used = []
    real_step = torch.optim.Adam.step

    def step(self, *args, **kw):
        used.append(self.param_groups[0]["lr"])
        return real_step(self, *args, **kw)

    monkeypatch.setattr(torch.optim.Adam, "step", step)
    train(tiny(run, max_steps=6, lr_scale=0.1, warmup=40, resume="auto", log_every=1), copy_data)
    expected = [transformer_lr(k, 64, 40, 0.1) for k in (5, 6)]
    assert used == pytest.approx(expected)
    assert [r["lr"] for r in read_log(run, "train")][-2:] == pytest.approx(expected)


# ---- one run per run directory ---------------------------------------------------------------

def test_the_lock_refuses_a_second_holder_and_reports_a_stale_one(tmp_path):
    first = RunLock(tmp_path)
    assert first.acquire() is None
    with pytest.raises(RunDirBusy, match=f"pid {os.getpid()}"):
        RunLock(tmp_path).acquire()
    first.release()
    assert RunLock(tmp_path).acquire() is None  # released cleanly: no note
    (tmp_path / "lock").write_text("pid 4194304 on elsewhere since 2026-01-01T00:00:00\n")
    note = RunLock(tmp_path).acquire()  # the holder died: the kernel released its flock
    assert "ended without releasing its lock" in note and "pid 4194304" in note


def wait_for(predicate, timeout=60.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_two_runs_racing_for_one_run_dir(tmp_path):
    """Two real processes: the second refuses without touching the first's files, whether it
    starts at the same moment or while the first has not written a checkpoint yet."""
    run = tmp_path / "run"
    args = [*TRAIN, "--max-steps", "30", "--run-dir", str(run), "--overwrite"]
    a, b = cli(*args, "--seed", "1"), cli(*args, "--seed", "2")  # the same moment
    (out_a, err_a), (out_b, err_b) = a.communicate(timeout=300), b.communicate(timeout=300)
    codes = sorted([a.returncode, b.returncode])
    assert codes == [0, 1], (err_a, err_b)
    loser_err = err_a if a.returncode else err_b
    winner = json.loads((out_b if a.returncode else out_a)[(out_b if a.returncode
                                                            else out_a).index("{"):])
    assert "is in use by another run" in loser_err and "Traceback" not in loser_err
    seed = 2 if a.returncode else 1
    state = ckpt.load_checkpoint(winner["checkpoint"])
    assert state["train_config"]["seed"] == seed and state["step"] == 30

    # the first run is still in its first steps (no checkpoint yet) when the second starts
    run = tmp_path / "run2"
    first = cli(*[*TRAIN, "--max-steps", "1000000", "--run-dir", str(run), "--seed", "3"])
    wait_for(lambda: (run / "log.jsonl").exists() and (run / "log.jsonl").read_text().strip())
    assert not (run / "checkpoints").exists() or not list((run / "checkpoints").iterdir())
    second = cli(*[*TRAIN, "--max-steps", "5", "--run-dir", str(run), "--overwrite"])
    _, err = second.communicate(timeout=120)
    assert second.returncode == 1 and "is in use by another run" in err
    assert first.poll() is None  # still training, undisturbed
    first.send_signal(signal.SIGINT)  # stop it: it saves its checkpoint and exits
    _, err = first.communicate(timeout=120)
    summary = json.loads((run / "summary.json").read_text())
    state = ckpt.load_checkpoint(summary["checkpoint"])
    assert state["train_config"]["seed"] == 3 and state["step"] == summary["steps"] > 1


# ---- signals ----------------------------------------------------------------------------------

@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_saves_a_checkpoint_and_the_run_resumes(tmp_path, sig):
    run = tmp_path / "run"
    proc = cli(*[*TRAIN, "--max-steps", "100000", "--log-every", "5", "--run-dir", str(run)])
    wait_for(lambda: (run / "log.jsonl").exists() and len(
        (run / "log.jsonl").read_text().splitlines()) >= 3)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    summary = json.loads((run / "summary.json").read_text())
    assert summary["stopped"] == "interrupted" and summary["interrupted_by"] == sig.name
    assert ckpt.load_checkpoint(summary["checkpoint"])["step"] == summary["steps"]
    assert "--resume auto" in err + out
    again = cli(*[*TRAIN, "--max-steps", str(summary["steps"] + 2), "--run-dir", str(run),
                  "--resume", "auto"])
    out, err = again.communicate(timeout=120)
    assert again.returncode == 0, err
    assert json.loads(out[out.index("{"):])["steps"] == summary["steps"] + 2


def test_a_second_signal_during_a_checkpoint_write_lets_the_write_finish(tmp_path, copy_data,
                                                                         monkeypatch):
    """Both signals land while step 2's checkpoint is written: the first asks for a stop with
    a checkpoint, the second for a stop at once, which waits until the file is whole."""
    real, calls = ckpt.save_training, []

    def save(path, **kw):
        calls.append(path)
        os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGINT)
        return real(path, **kw)

    monkeypatch.setattr(ckpt, "save_training", save)
    run = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):  # the command line's exit status 130
        train(tiny(run, max_steps=50, save_every=2), copy_data)
    assert len(calls) == 1
    assert ckpt.load_checkpoint(calls[0])["step"] == 2  # written whole, verified
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step_00000002.pt"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handlers restored


def test_a_second_signal_during_the_last_save_lets_it_finish(tmp_path, copy_data, monkeypatch):
    """Ctrl-C at step 3 stops the run after step 4 with a checkpoint; Ctrl-C again while that
    checkpoint is written stops at once, once the file is whole."""
    real_save, real_bar = ckpt.save_training, Run.bar_update

    def bar_update(self, step):
        if step == 3:
            os.kill(os.getpid(), signal.SIGINT)
        return real_bar(self, step)

    def save(path, **kw):
        os.kill(os.getpid(), signal.SIGINT)
        return real_save(path, **kw)

    monkeypatch.setattr(Run, "bar_update", bar_update)
    monkeypatch.setattr(ckpt, "save_training", save)
    run = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        train(tiny(run, max_steps=50), copy_data)
    assert ckpt.load_checkpoint(ckpt.latest_checkpoint(run))["step"] == 4


def test_resume_auto_in_an_empty_run_dir_says_it_starts_afresh(tmp_path, copy_data, capsys):
    summary = train(tiny(tmp_path / "run", max_steps=2, resume="auto"), copy_data)
    assert summary["steps"] == 2
    assert "--resume auto: no checkpoint in" in capsys.readouterr().out


def test_resuming_with_another_vocabulary_is_refused(tmp_path, copy_data):
    run = tmp_path / "run"
    train(tiny(run, max_steps=2), copy_data)
    other = load_dataset("numbers", n_train=200, n_val=20, n_test=20)  # another vocabulary
    with pytest.raises(ckpt.CheckpointError, match="trained with another vocabulary") as err:
        train(tiny(run, max_steps=4, resume="auto"), other)
    assert "step_00000002.pt" in str(err.value) and "\n" not in str(err.value)
    assert ckpt.latest_checkpoint(run).name == "step_00000002.pt"  # nothing written
