"""A training run's directory, besides its checkpoints: config, log, summary, progress bar.

    <run_dir>/config.json     train config, model config, dataset and device (``Run.start``)
    <run_dir>/log.jsonl       one JSON object per logged step ("kind": "train") and per
                              validation ("kind": "val"), for notebooks to plot (``read_log``)
    <run_dir>/tokenizer.json  the dataset's tokenizer (also stored inside each checkpoint)
    <run_dir>/summary.json    what ``train`` returns (``Run.finish``)
    <run_dir>/checkpoints/    written and read by ``checkpoint.py`` alone
    <run_dir>/lock            held by the one run using the directory (``RunLock``)

Only rank 0 writes or prints.
"""

from __future__ import annotations

import datetime
import fcntl
import json
import math
import os
import shutil
import socket
import time
from pathlib import Path

from tqdm import tqdm  # a text bar everywhere: terminals, JupyterLab, stored outputs

from . import checkpoint as ckpt
from .runtime import display_path, environment


def read_log(run_dir: str | Path, kind: str | None = None) -> list[dict]:
    """The records of ``<run_dir>/log.jsonl``, optionally only those of one ``kind``."""
    lines = (Path(run_dir) / "log.jsonl").read_text().splitlines()
    records = [json.loads(x) for x in lines if x.strip()]
    return [r for r in records if kind is None or r["kind"] == kind]


def best_val_step(run_dir: str | Path) -> int | None:
    """The step of the validation with the lowest loss, or None if the run never validated."""
    val = read_log(run_dir, "val")
    return min(val, key=lambda r: r["loss"])["step"] if val else None


class RunDirBusy(FileExistsError):
    """Another run holds the run directory's lock."""


class RunLock:
    """One run at a time in a run directory: an exclusive ``flock`` on ``<run_dir>/lock``.

    The kernel drops the lock when the process that holds it ends, however it ends, so a crash
    leaves no lock behind, only the file's text (who held it).  ``acquire`` refuses while
    another process holds it, without touching anything else in the directory, and reports a
    previous holder that ended without releasing it (killed or crashed).
    """

    def __init__(self, run_dir: str | Path):
        self.path, self.file = Path(run_dir) / "lock", None

    def acquire(self) -> str | None:
        """Take the lock or raise ``RunDirBusy``; return a note about a stale lock, if any."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        file = os.fdopen(os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644), "r+")
        try:
            fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = file.read().strip() or "a process that has not written its name yet"
            file.close()
            raise RunDirBusy(
                f"run dir {self.path.parent} is in use by another run ({holder}); nothing in it "
                "was touched. Wait for that run to end, or choose another --run-dir.") from None
        previous = file.read().strip()
        note = None
        if previous and not previous.startswith("released"):
            note = (f"run dir {self.path.parent}: the previous run ({previous}) ended without "
                    "releasing its lock (killed or crashed?); taking it over")
        self._write(file, f"pid {os.getpid()} on {socket.gethostname()} since {_now()}")
        self.file = file
        return note

    def wait(self) -> None:
        """Block until no other process holds the lock (without taking it)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with os.fdopen(os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644), "r+") as file:
            fcntl.flock(file, fcntl.LOCK_EX)
            fcntl.flock(file, fcntl.LOCK_UN)

    def release(self) -> None:
        if self.file is not None:
            self._write(self.file, f"released by pid {os.getpid()} at {_now()}")
            fcntl.flock(self.file, fcntl.LOCK_UN)
            self.file.close()
            self.file = None

    @staticmethod
    def _write(file, text: str) -> None:
        file.seek(0)
        file.truncate()
        file.write(text + "\n")
        file.flush()


def _now() -> str:
    return datetime.datetime.now().astimezone().isoformat(timespec="seconds")


class Run:
    """Run directory, JSON-lines log, progress bar and clocks of one ``train`` call."""

    def __init__(self, cfg, rank: int, fresh: bool, step: int, wall_time: float = 0.0):
        self.cfg, self.dir, self.main = cfg, Path(cfg.run_dir), rank == 0
        self.log_path = self.dir / "log.jsonl"
        old = ckpt.list_checkpoints(self.dir)
        if fresh and old and not cfg.overwrite:
            raise FileExistsError(
                f"run dir {self.dir} already holds {len(old)} checkpoint(s) (latest {old[-1]}). "
                "Continue it with --resume auto, start afresh there with --overwrite, or "
                "choose another --run-dir.")
        if self.main:
            self.dir.mkdir(parents=True, exist_ok=True)
            for leftover in ckpt.remove_partial_saves(self.dir):
                self.note(f"removed {leftover}, left by a save that was interrupted")
            if fresh:
                shutil.rmtree(ckpt.checkpoint_dir(self.dir), ignore_errors=True)
                self.log_path.unlink(missing_ok=True)
            elif self.log_path.exists():  # drop records past the checkpoint we resume from
                kept = [r for r in read_log(self.dir) if r.get("step", 0) <= step]
                self.log_path.write_text("".join(json.dumps(r) + "\n" for r in kept))
        self.wall_offset = wall_time
        self.t0 = self.window_start = time.monotonic()
        self.first_step = step
        self.bar, self.by_time = None, False

    # clocks ----------------------------------------------------------------------------------
    def minutes(self) -> float:
        """Minutes of training in this invocation."""
        return (time.monotonic() - self.t0) / 60

    def wall_time(self) -> float:
        """Seconds of training so far, earlier invocations of a resumed run included."""
        return self.wall_offset + time.monotonic() - self.t0

    # output ----------------------------------------------------------------------------------
    def note(self, text: str) -> None:
        if self.main:
            tqdm.write(text)

    def start(self, info: dict, banner: str, total_steps: int | None) -> None:
        """Write config.json, print the banner, open the progress bar: over the steps when
        they bound the run, else over the time budget (in seconds, with the time left)."""
        if not self.main:
            return
        (self.dir / "config.json").write_text(json.dumps(info, indent=2, default=str) + "\n")
        self.note(banner)
        options = dict(dynamic_ncols=True, disable=not self.cfg.progress, mininterval=1.0)
        self.by_time = not total_steps and bool(self.cfg.time_budget)
        if self.by_time:
            self.bar = tqdm(total=round(self.cfg.time_budget * 60), unit="s", desc="time budget",
                            bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.0f}/{total:.0f} s "
                            "[{elapsed}<{remaining}{postfix}]", **options)
        else:
            self.bar = tqdm(total=total_steps, initial=self.first_step, unit="step", **options)

    def log(self, kind: str, **fields) -> dict:
        record = {"kind": kind, **fields, "wall_time": round(self.wall_time(), 3)}
        if self.main:
            with self.log_path.open("a") as f:
                f.write(json.dumps(record) + "\n")
            if kind == "val":
                self.note(f"step {fields['step']}: {fields['split']} loss {fields['loss']:.4f}"
                          f" ppl {fields['ppl']:.2f}")
        return record

    def log_train(self, *, step, loss, nll, tokens, **fields) -> dict:
        """A "train" record: ``loss`` = mean label-smoothed loss per target token since the
        last record; ``ppl`` = exp(NLL per target token) of this step alone; ``tokens_per_s``
        = target tokens per second (all ranks) since the last record."""
        now = time.monotonic()
        tokens_per_s = tokens / max(now - self.window_start, 1e-9)
        self.window_start = now
        record = self.log("train", step=step, loss=loss, ppl=math.exp(min(nll, 50.0)),
                          tokens_per_s=round(tokens_per_s, 1), **fields)
        if self.bar is not None:
            step_shown = {"step": step} if self.by_time else {}  # a bar of seconds: which step
            self.bar.set_postfix(**step_shown, loss=f"{loss:.3f}", lr=f"{fields['lr']:.2e}",
                                 tok_s=f"{tokens_per_s:,.0f}", refresh=False)
        return record

    def bar_update(self, step: int) -> None:
        """Advance the bar to ``step`` (or, over a time budget, to the seconds trained)."""
        if self.bar is None:
            return
        if self.by_time:
            self.bar.update(min(self.minutes() * 60, self.bar.total) - self.bar.n)
        else:
            self.bar.update(step - self.bar.n)

    def finish(self, summary: dict) -> dict:
        if self.bar is not None:
            self.bar.close()
        if self.main:
            (self.dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
            self.note(f"stopped ({summary['stopped']}) after {summary['steps']} steps, "
                      f"{summary['wall_time']:.0f} s; checkpoint "
                      f"{Path(summary['checkpoint']).name} in {display_path(self.dir)}")
        return summary


# ---- what config.json, the banner and summary.json say about a run (a train.Trainer) --------

def describe(t) -> dict:
    """config.json: both configs, the data, the batch size, the device, the environment."""
    d, bs = t.data, t.batch_size
    return {"train_config": t.cfg.to_dict(), "model_config": t.model.config.to_dict(),
            "parameters": t.model.num_parameters(),
            "data": {"dataset": d.name, "src": d.src_lang, "tgt": d.tgt_lang,
                     "vocab_size": d.tokenizer.vocab_size, "splits": list(d.splits),
                     "train_batches_per_rank": len(t.batches),
                     "filter_report": d.filter_report},
            "accum": bs.accum, "batch_size": bs.describe(), "world_size": t.world,
            "resumed_from": str(t.resumed_from) if t.resumed_from else None,
            "environment": environment(t.device)}


def banner(t) -> str:
    """The line a run starts with."""
    d, m, bs = t.data, t.model.config, t.batch_size
    resumed = f", resumed at step {t.progress.step}" if t.resumed_from else ""
    return (f"{d.name} {d.src_lang}->{d.tgt_lang} | model {t.cfg.preset}: "
            f"{t.model.num_parameters() / 1e6:.2f}M parameters, N={m.n_layers}, "
            f"d_model={m.d_model}, h={m.n_heads} | {t.world} x {t.device} | "
            f"{bs.accum} micro-batch(es) of <= {bs.max_tokens} tokens per step and rank "
            f"(about {bs.expected:,.0f} target tokens per step), {len(t.batches)} per "
            f"epoch{resumed} | run dir {display_path(t.run.dir)}")


def total_steps(t) -> int | None:
    """The steps the run will take, if a step or epoch limit says (the progress bar's end)."""
    per_epoch = -(-len(t.batches) // t.batch_size.accum)
    return t.cfg.max_steps or (t.cfg.max_epochs and t.cfg.max_epochs * per_epoch)


def summarize(t, stop: str, checkpoint: Path, averaged: dict | None) -> dict:
    """summary.json, and what ``train`` returns."""
    p, bs = t.progress, t.batch_size
    summary = {"stopped": stop, "steps": p.step,
               "epochs": round(p.epoch + p.batch / max(len(t.batches), 1), 4),
               "tokens": p.tokens, "wall_time": round(p.wall_time, 2),
               "tokens_per_s": round(p.tokens / max(p.wall_time, 1e-9), 1),
               "best_val_loss": p.best_val if math.isfinite(p.best_val) else None,
               "checkpoint": str(checkpoint), "run_dir": str(t.run.dir), "accum": bs.accum,
               "micro_batch_tokens": bs.max_tokens,
               "tokens_per_step": round(p.tokens / max(p.step, 1), 1),
               "planned_tokens_per_step": round(bs.expected, 1), "world_size": t.world,
               "device": str(t.device), "parameters": t.model.num_parameters(),
               "averaged": averaged}
    if stop == "interrupted":
        summary["interrupted_by"] = t.signals.received or "a signal on another rank"
    return summary
