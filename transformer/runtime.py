"""Process plumbing for ``train.py``: device, torch.distributed, seeds, the run directory.

``Run`` owns what a training run writes besides checkpoints: ``config.json``, ``log.jsonl``
(one JSON object per line, for notebooks to plot), ``tokenizer.json``, ``summary.json``, and
the tqdm progress bar.  Only rank 0 writes or prints.
"""

from __future__ import annotations

import json
import math
import os
import platform
import random
import shutil
import time
from pathlib import Path

import torch
import torch.distributed as dist
from tqdm.auto import tqdm

from . import checkpoint as ckpt


def pick_device(name: str = "auto", local_rank: int = 0) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", local_rank)
    return device


def distributed_setup(device_name: str = "auto"):
    """``(rank, world_size, device, cleanup)``; joins the process group ``torchrun`` describes.

    torchrun sets RANK, WORLD_SIZE and LOCAL_RANK (and MASTER_ADDR/PORT); without them this
    is a single process.  Backend: nccl on CUDA, gloo on the CPU.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1, pick_device(device_name), lambda: None
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    device = pick_device(device_name, local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if dist.is_initialized():
        return rank, world, device, lambda: None
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo", rank=rank,
                            world_size=world)
    return rank, world, device, dist.destroy_process_group


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def all_reduce(tensor: torch.Tensor, op: str = "sum") -> torch.Tensor:
    """Sum (or max) ``tensor`` over ranks in place; a no-op in a single process."""
    if _distributed():
        dist.all_reduce(tensor, op=dist.ReduceOp.MAX if op == "max" else dist.ReduceOp.SUM)
    return tensor


def gather_objects(obj, world_size: int) -> list:
    """Every rank's ``obj``, in rank order (a collective: all ranks must call it)."""
    if world_size == 1 or not _distributed():
        return [obj]
    out = [None] * world_size
    dist.all_gather_object(out, obj)
    return out


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)  # seeds every CUDA device too


def git_commit(repo: Path | None = None) -> str | None:
    """The checkout's commit (with "-dirty" for local changes), or None outside git."""
    import subprocess

    repo = repo or Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True,
                              text=True, timeout=10)
        if head.returncode:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=repo, capture_output=True, text=True, timeout=10).stdout
        return head.stdout.strip() + ("-dirty" if dirty.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


def environment(device: torch.device) -> dict:
    """Provenance for results files: versions, device, threads, commit."""
    env = {"torch": str(torch.__version__), "python": platform.python_version(),
           "platform": platform.platform(), "device": str(device),
           "threads": torch.get_num_threads(), "git_commit": git_commit()}
    if device.type == "cuda":
        env.update(gpu=torch.cuda.get_device_name(device), cuda=torch.version.cuda,
                   gpus=torch.cuda.device_count())
    else:
        env["cpu"] = platform.processor() or platform.machine()
    return env


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
            if fresh:
                shutil.rmtree(ckpt.checkpoint_dir(self.dir), ignore_errors=True)
                self.log_path.unlink(missing_ok=True)
            elif self.log_path.exists():  # drop records past the checkpoint we resume from
                lines = self.log_path.read_text().splitlines()
                kept = [x for x in lines if x.strip() and json.loads(x).get("step", 0) <= step]
                self.log_path.write_text("".join(x + "\n" for x in kept))
        self.wall_offset = wall_time
        self.t0 = self.saved_at = self.window_start = time.monotonic()
        self.first_step = step
        self.bar = None

    # clocks ----------------------------------------------------------------------------------
    def seconds(self) -> float:
        return time.monotonic() - self.t0

    def minutes(self) -> float:
        return self.seconds() / 60

    def minutes_since_save(self) -> float:
        return (time.monotonic() - self.saved_at) / 60

    def wall_time(self) -> float:
        """Seconds of training so far, earlier invocations of a resumed run included."""
        return self.wall_offset + self.seconds()

    # output ----------------------------------------------------------------------------------
    def note(self, text: str) -> None:
        if self.main:
            tqdm.write(text)

    def start(self, info: dict, banner: str, total_steps: int | None) -> None:
        if not self.main:
            return
        (self.dir / "config.json").write_text(json.dumps(info, indent=2, default=str) + "\n")
        self.note(banner)
        self.bar = tqdm(total=total_steps, initial=self.first_step, unit="step",
                        dynamic_ncols=True, disable=not self.cfg.progress, mininterval=1.0)

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
            self.bar.set_postfix(loss=f"{loss:.3f}", lr=f"{fields['lr']:.2e}",
                                 tok_s=f"{tokens_per_s:,.0f}", refresh=False)
        return record

    def bar_update(self) -> None:
        if self.bar is not None:
            self.bar.update(1)

    def finish(self, summary: dict) -> dict:
        if self.bar is not None:
            self.bar.close()
        if self.main:
            (self.dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
            self.note(f"stopped ({summary['stopped']}) after {summary['steps']} steps, "
                      f"{summary['wall_time']:.0f} s; checkpoint {summary['checkpoint']}")
        return summary
