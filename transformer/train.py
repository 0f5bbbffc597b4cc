"""Training (Section 5): token-budget batches, Adam with warm-up, label smoothing, DDP.

    cfg = TrainConfig(dataset="multi30k", src="de", tgt="en", preset="small", time_budget=10)
    summary = train(cfg)

One optimizer step sums the loss over ``accum`` micro-batches of at most ``max_tokens``
source and target tokens each, on every rank, and divides by the step's target-token count
(all ranks together): the gradient is that of the mean per-token loss over the whole step, as
if one batch of ~25000 source + 25000 target tokens (Section 5.1) had fit on one device.

The same code runs on a CPU (float32) and on GPUs (bf16 autocast, fused attention through
``F.scaled_dot_product_attention``, optional ``torch.compile``), on one process or many
(``torchrun --nproc-per-node N -m transformer train ...``: DDP, one data shard per rank).
On a GPU the step loop waits for the device only at logging, validation and saving steps,
and at the step where the time budget (or a timed save) is expected to fall due.

Run directory::

    <run_dir>/config.json     train config, model config, dataset and device
    <run_dir>/log.jsonl       one JSON object per logged step ("kind": "train") and per
                              validation ("kind": "val"); see ``Run.log``
    <run_dir>/tokenizer.json  the dataset's tokenizer (also stored inside each checkpoint)
    <run_dir>/checkpoints/    step_<8 digits>.pt, the last ``keep_last`` kept
    <run_dir>/summary.json    what ``train`` returns
"""

from __future__ import annotations

import dataclasses
import math
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import torch

from . import checkpoint as ckpt
from .config import TransformerConfig
from .loss import evaluate_loss, nll_sum, to_device, token_losses
from .model import Transformer
from .runtime import (
    Run,
    all_reduce,
    distributed_setup,
    environment,
    gather_objects,
    seed_everything,
)
from .schedule import build_scheduler


@dataclass
class TrainConfig:
    """Everything one training run needs; defaults follow the paper (Section 5)."""

    # data (transformer.data.load_dataset)
    dataset: str = "multi30k"
    src: str | None = None  # None: the dataset's default pair (multi30k: de -> en)
    tgt: str | None = None
    data_dir: str | None = None
    vocab_size: int | None = None  # None: the dataset's default
    # model: a preset of TransformerConfig plus field overrides
    preset: str = "base"
    model: dict = field(default_factory=dict)
    # batches (Section 5.1): token budgets, padding included
    max_tokens: int = 8192  # per micro-batch, source and target each
    tokens_per_step: int | None = 25000  # target tokens per step, all ranks: sets accum
    accum: int = 1  # micro-batches per optimizer step when tokens_per_step is None
    # optimizer (Section 5.3)
    warmup: int = 4000
    lr_scale: float = 1.0
    beta1: float = 0.9
    beta2: float = 0.98
    adam_eps: float = 1e-9
    clip_grad: float | None = None  # the paper clips nothing
    # when to stop: the first limit reached
    max_steps: int | None = None
    max_epochs: int | None = None
    time_budget: float | None = None  # minutes of training in this invocation
    patience: int | None = None  # validations without a better loss before stopping early
    # bookkeeping
    seed: int = 0
    device: str = "auto"  # "auto": cuda if available, else cpu
    run_dir: str = "runs/default"
    resume: str | None = None  # a checkpoint path, or "auto": the run dir's latest if any
    overwrite: bool = False  # start afresh in a run dir that holds checkpoints
    log_every: int = 50
    eval_every: int | None = 1000  # steps between validations (also one at the end)
    save_every: int | None = None  # steps between checkpoints
    save_every_minutes: float | None = 10.0  # the paper wrote one every 10 minutes (6.1)
    keep_last: int = 5
    compile: bool = False  # torch.compile the model (CUDA)
    amp: bool = True  # bf16 autocast on CUDA; float32 on the CPU whatever this says
    progress: bool = True  # tqdm bar on rank 0

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def build_model_config(cfg: TrainConfig, tokenizer) -> TransformerConfig:
    """The preset, sized to the tokenizer's vocabulary and special ids, then ``cfg.model``."""
    fields = dict(src_vocab_size=tokenizer.vocab_size, tgt_vocab_size=tokenizer.vocab_size,
                  pad_id=tokenizer.pad_id, bos_id=tokenizer.bos_id, eos_id=tokenizer.eos_id,
                  unk_id=tokenizer.unk_id)
    return TransformerConfig.from_preset(cfg.preset, **{**fields, **cfg.model})


def load_train_dataset(cfg: TrainConfig):
    from .data import load_dataset  # the data package pulls in tokenizers; load it on demand

    return load_dataset(cfg.dataset, cfg.src, cfg.tgt, vocab_size=cfg.vocab_size,
                        data_dir=cfg.data_dir, seed=cfg.seed)


def validation_split(dataset) -> str | None:
    for name in ("val", "valid", "validation", "dev"):
        if name in dataset.splits:
            return name
    return None


def micro_batches_per_step(cfg: TrainConfig, dataset, world_size: int) -> int:
    """Micro-batches per step: ``tokens_per_step`` / (ranks * mean target tokens per batch)."""
    if not cfg.tokens_per_step:
        return max(1, cfg.accum)
    batches = dataset.batches("train", cfg.max_tokens, shuffle=False)  # the same on every rank
    mean = sum(b.n_tgt_tokens for b in batches) / max(len(batches), 1)
    return max(1, round(cfg.tokens_per_step / (world_size * mean)))


def nan_message(step: int, lr: float, run_dir: Path) -> str:
    last = ckpt.latest_checkpoint(run_dir)
    resume = f"resume from the last good checkpoint (--resume {last}) with " if last else ""
    return (
        f"training stopped: the loss became NaN or infinite at step {step} (lr {lr:.3g}). "
        f"Try: {resume}a smaller learning rate (--lr-scale 0.5) or a longer warm-up (--warmup), "
        "gradient clipping (--clip-grad 1.0), or without --compile; on a GPU also --no-amp to "
        f"rule out bf16.  Earlier steps are logged in {run_dir / 'log.jsonl'}."
    )


def train(cfg: TrainConfig, dataset=None) -> dict:
    """Train a Transformer as ``cfg`` says; return (and write) a summary dict.

    ``dataset`` (a ``TranslationDataset``) replaces ``cfg.dataset``; tests pass their own.
    Raises ``FloatingPointError`` if the loss stops being finite (checked at logging steps).
    """
    if not (cfg.max_steps or cfg.max_epochs or cfg.time_budget):
        raise ValueError("set at least one of max_steps, max_epochs or time_budget")
    rank, world, device, cleanup = distributed_setup(cfg.device)
    try:
        return Trainer(cfg, dataset, rank, world, device).fit()
    finally:
        cleanup()


class Trainer:
    """The state of one run and its step loop; ``train`` is the way in."""

    def __init__(self, cfg: TrainConfig, dataset, rank: int, world: int, device: torch.device):
        self.cfg, self.rank, self.world, self.device = cfg, rank, world, device
        seed_everything(cfg.seed + rank)
        self.data = dataset if dataset is not None else load_train_dataset(cfg)
        self.mcfg = build_model_config(cfg, self.data.tokenizer)
        cuda = device.type == "cuda"
        self.amp = ((lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if cuda and cfg.amp
                    else nullcontext)
        if cuda:
            torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
        self.model = Transformer(self.mcfg).to(device)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=1.0,
                                          betas=(cfg.beta1, cfg.beta2), eps=cfg.adam_eps,
                                          fused=True if cuda else None)
        self.scheduler = build_scheduler(self.optimizer, self.mcfg.d_model, cfg.warmup,
                                         cfg.lr_scale)
        self.accum = micro_batches_per_step(cfg, self.data, world)
        self.val_split, self.validated_at = validation_split(self.data), None
        self.progress = {"step": 0, "epoch": 0, "batch": 0, "tokens": 0, "wall_time": 0.0,
                         "best_val": math.inf, "bad_evals": 0}
        self.resume_from = ckpt.latest_checkpoint(cfg.run_dir) if cfg.resume == "auto" else (
            cfg.resume)
        state = ckpt.load_checkpoint(self.resume_from) if self.resume_from else None
        if state is not None:
            self.restore(state)
        self.run = Run(cfg, rank, fresh=state is None, step=self.progress["step"],
                       wall_time=self.progress["wall_time"])
        self.tokenizer = ckpt.tokenizer_record(self.data.tokenizer, self.run.dir / "tokenizer.json")
        if rank == 0:
            self.data.tokenizer.save(self.run.dir / "tokenizer.json")
        self.ddp = (torch.nn.parallel.DistributedDataParallel(
            self.model, device_ids=[device] if cuda else None, gradient_as_bucket_view=True)
            if world > 1 else self.model)
        self.forward = torch.compile(self.ddp) if cfg.compile else self.ddp

    # ---- checkpoints ------------------------------------------------------------------------
    def restore(self, state: dict) -> None:
        """Weights, optimizer, schedule, progress, RNGs: continue exactly where it stopped."""
        path = self.resume_from
        ckpt.check_config(state, self.mcfg, path)
        ckpt.load_model_state(self.model, state["model"], path)
        if "optimizer" not in state:
            raise ckpt.CheckpointError(f"checkpoint {path} holds no optimizer state (an average?)"
                                       "; it can be translated with but not resumed.")
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.progress.update(state["progress"])
        if len(state["rng"]) == self.world:
            ckpt.set_rng_state(state["rng"][self.rank])
        else:  # another number of ranks: dropout masks cannot repeat exactly
            seed_everything(self.cfg.seed + self.rank + 1000 * self.progress["step"])

    def save(self) -> Path:
        p = self.progress
        p["wall_time"] = self.run.wall_time()
        rngs = gather_objects(ckpt.rng_state(), self.world)  # every rank's dropout stream
        path = ckpt.checkpoint_path(self.run.dir, p["step"])
        if self.rank == 0:
            d = self.data
            state = {"format": ckpt.FORMAT, "model": self.model.state_dict(),
                     "model_config": self.mcfg.to_dict(), "tokenizer": self.tokenizer,
                     "optimizer": self.optimizer.state_dict(),
                     "scheduler": self.scheduler.state_dict(), "step": p["step"],
                     "progress": dict(p), "rng": rngs,
                     "data": {"dataset": d.name, "src": d.src_lang, "tgt": d.tgt_lang,
                              "data_dir": self.cfg.data_dir, "vocab_size": self.cfg.vocab_size,
                              "seed": self.cfg.seed},
                     "train_config": self.cfg.to_dict(), "world_size": self.world,
                     "accum": self.accum, "torch": str(torch.__version__)}
            ckpt.save_checkpoint(state, path)
            ckpt.prune_checkpoints(self.run.dir, self.cfg.keep_last)
        self.run.saved_at = time.monotonic()
        return path

    # ---- validation -------------------------------------------------------------------------
    def validate(self) -> bool:
        """Log a validation record; True when ``patience`` has run out (early stopping)."""
        if self.val_split is None:
            return False
        p = self.progress
        self.validated_at = p["step"]
        m = evaluate_loss(self.model, self.data, self.val_split, self.cfg.max_tokens,
                          self.device, self.amp, self.rank, self.world)
        self.run.log("val", step=p["step"], split=self.val_split, **m)
        if m["loss"] < p["best_val"]:
            p["best_val"], p["bad_evals"] = m["loss"], 0
        else:
            p["bad_evals"] += 1
        return bool(self.cfg.patience) and p["bad_evals"] >= self.cfg.patience

    # ---- training ---------------------------------------------------------------------------
    def epoch_batches(self, epoch: int) -> list:
        return self.data.batches("train", self.cfg.max_tokens, shuffle=True, seed=self.cfg.seed,
                                 epoch=epoch, rank=self.rank, world_size=self.world)

    def step(self, group: list, measure: bool):
        """One optimizer step on ``group`` (this rank's micro-batches).

        Each micro-batch's summed loss is scaled by world_size / (target tokens of the whole
        step, all ranks); DDP averages over ranks, so the gradient is the per-token mean.
        Returns device tensors (summed loss, summed NLL or None, grad norm or None).
        """
        mcfg, world, device = self.mcfg, self.world, self.device
        n_tokens = float(sum(b.n_tgt_tokens for b in group))
        if world > 1:
            scale = world / all_reduce(torch.full((), n_tokens, device=device))  # no sync
        else:
            scale = 1.0 / n_tokens
        loss_sum = torch.zeros((), device=device)
        nll = torch.zeros((), device=device) if measure else None
        for i, batch in enumerate(group):
            src, tgt_in, tgt_out = to_device(batch, device)
            sync = world == 1 or i == len(group) - 1  # all-reduce gradients once per step
            with nullcontext() if sync else self.ddp.no_sync():
                with self.amp():
                    loss, logits = token_losses(self.forward, src, tgt_in, tgt_out, mcfg)
                (loss * scale).backward()
            loss_sum += loss.detach()
            if measure:
                nll += nll_sum(logits, tgt_out, mcfg.pad_id)
        params = [p for p in self.model.parameters() if p.grad is not None]
        grad_norm = None
        if self.cfg.clip_grad:
            grad_norm = torch.nn.utils.clip_grad_norm_(params, self.cfg.clip_grad)
        elif measure:
            # the global L2 norm, as clip_grad_norm_ computes it (get_total_norm needs torch 2.6)
            grad_norm = torch.linalg.vector_norm(
                torch.stack([torch.linalg.vector_norm(p.grad) for p in params]))
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return loss_sum, nll, grad_norm

    def describe(self, n_batches: int) -> dict:
        """What config.json records: both configs, the data, the device, the environment."""
        d = self.data
        return {"train_config": self.cfg.to_dict(), "model_config": self.mcfg.to_dict(),
                "parameters": self.model.num_parameters(),
                "data": {"dataset": d.name, "src": d.src_lang, "tgt": d.tgt_lang,
                         "vocab_size": d.tokenizer.vocab_size, "splits": list(d.splits),
                         "train_batches_per_rank": n_batches,
                         "filter_report": getattr(d, "filter_report", None)},
                "accum": self.accum, "world_size": self.world, "resumed_from": (
                    str(self.resume_from) if self.resume_from else None),
                "environment": environment(self.device)}

    def banner(self, n_batches: int) -> str:
        d, m, c = self.data, self.mcfg, self.cfg
        resumed = f", resumed at step {self.progress['step']}" if self.resume_from else ""
        return (f"{d.name} {d.src_lang}->{d.tgt_lang} | model {c.preset}: "
                f"{self.model.num_parameters() / 1e6:.2f}M parameters, N={m.n_layers}, "
                f"d_model={m.d_model}, h={m.n_heads} | {self.world} x {self.device} | "
                f"{self.accum} micro-batch(es) of <= {c.max_tokens} tokens per step and rank, "
                f"{n_batches} per epoch{resumed} | run dir {self.run.dir}")

    def next_clock_check(self, step: int, minutes: float, since_save: float) -> int | None:
        """The step at which the time budget or the next timed save is expected to fall due.

        Clocks are read only at steps that wait for the device anyway; this one is added so
        that a run with few logging steps stops on time.  Every rank computes the same step
        from the same all-reduced clocks.
        """
        cfg = self.cfg
        left = []  # minutes until each clock limit
        if cfg.time_budget:
            left.append(cfg.time_budget - minutes)
        if cfg.save_every_minutes:
            left.append(cfg.save_every_minutes - since_save)
        done = step - self.run.first_step  # steps in this invocation
        if not left or done <= 0:
            return None
        return step + max(1, math.ceil(min(left) / max(minutes / done, 1e-9)))

    def fit(self) -> dict:
        cfg, p, run, device = self.cfg, self.progress, self.run, self.device
        batches = self.epoch_batches(p["epoch"])
        total = cfg.max_steps or (cfg.max_epochs and cfg.max_epochs * -(-len(batches)
                                                                       // self.accum))
        run.start(self.describe(len(batches)), self.banner(len(batches)), total)
        window_loss = torch.zeros((), device=device)  # summed loss since the last record
        window_tokens = 0  # this rank's target tokens since the last record
        bad_step = torch.zeros((), dtype=torch.long, device=device)  # first non-finite step
        stop = "max_steps" if cfg.max_steps and p["step"] >= cfg.max_steps else None
        clock_check = None  # the step at which the time budget or a timed save falls due
        self.model.train()
        while stop is None:
            if p["batch"] >= len(batches):  # next epoch
                p["epoch"], p["batch"] = p["epoch"] + 1, 0
                batches = self.epoch_batches(p["epoch"])
            group = batches[p["batch"]:p["batch"] + self.accum]
            p["batch"] += len(group)
            p["step"] = step = p["step"] + 1
            last = ((cfg.max_steps and step >= cfg.max_steps) or (
                cfg.max_epochs and p["batch"] >= len(batches) and p["epoch"] + 1 >= cfg.max_epochs))
            # sync points, the only steps that wait for the device; every rank knows them
            evaluate = bool(cfg.eval_every) and step % cfg.eval_every == 0
            save = bool(cfg.save_every) and step % cfg.save_every == 0
            sync = (step % cfg.log_every == 0 or step == 1 or last or evaluate or save
                    or step == clock_check)
            lr = self.scheduler.get_last_lr()[0]
            loss_sum, nll, grad_norm = self.step(group, measure=sync)
            window_loss += loss_sum
            window_tokens += sum(b.n_tgt_tokens for b in group)
            bad_step = torch.where((bad_step == 0) & ~torch.isfinite(loss_sum),
                                   torch.full_like(bad_step, step), bad_step)
            run.bar_update()
            if not sync:
                continue

            # agreed by all ranks (the slowest rank's clocks): the first non-finite step, the
            # minutes trained in this invocation and since the last save
            flags = torch.cat([bad_step.double()[None], torch.tensor(
                [run.minutes(), run.minutes_since_save()], dtype=torch.float64, device=device)])
            first_bad, minutes, since_save = all_reduce(flags, op="max").tolist()
            time_up = bool(cfg.time_budget) and minutes >= cfg.time_budget
            save_due = bool(cfg.save_every_minutes) and since_save >= cfg.save_every_minutes
            if first_bad:
                raise FloatingPointError(nan_message(int(first_bad), lr, run.dir))
            counts = [window_tokens, sum(b.n_tgt_tokens for b in group)]
            loss_total, nll, tokens, step_tokens = all_reduce(torch.cat([
                torch.stack([window_loss.double(), nll.double()]),
                torch.tensor(counts, dtype=torch.float64, device=device)])).tolist()
            p["tokens"] += int(tokens)
            run.log_train(step=step, loss=loss_total / tokens, nll=nll / step_tokens,
                          tokens=tokens, lr=lr, grad_norm=float(grad_norm),
                          epoch=round(p["epoch"] + p["batch"] / len(batches), 4),
                          total_tokens=p["tokens"])
            window_loss.zero_()
            window_tokens = 0

            if evaluate and self.validate():
                stop = "early_stop"
            if last:
                stop = "max_steps" if cfg.max_steps and step >= cfg.max_steps else "max_epochs"
            elif time_up:
                stop = stop or "time_budget"
            if stop is None and (save or save_due):
                self.save()
                since_save = 0.0
            clock_check = self.next_clock_check(step, minutes, since_save)

        # the end: a validation (unless just done), the final checkpoint, a summary
        if self.validated_at != p["step"]:
            self.validate()
        path = self.save()
        summary = {"stopped": stop, "steps": p["step"],
                   "epochs": round(p["epoch"] + p["batch"] / max(len(batches), 1), 4),
                   "tokens": p["tokens"], "wall_time": round(p["wall_time"], 2),
                   "tokens_per_s": round(p["tokens"] / max(p["wall_time"], 1e-9), 1),
                   "best_val_loss": p["best_val"] if math.isfinite(p["best_val"]) else None,
                   "checkpoint": str(path), "run_dir": str(run.dir), "accum": self.accum,
                   "world_size": self.world, "device": str(device),
                   "parameters": self.model.num_parameters()}
        return run.finish(summary)
