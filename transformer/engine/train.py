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

On a GPU the loop runs ahead of the device.  It waits only at *report steps*: logging,
validation and saving steps, and the step where the time budget (or a timed save) is expected
to fall due.  There the ranks agree on the clocks and on the first non-finite loss
(``agree_on_clocks``) and sum their losses for the log, so that every rank takes the same
decisions.  The run directory's files are described in ``rundir.py``, the checkpoints' in
``checkpoint.py``.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import math
import signal
import threading
import time
import warnings
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..data import DATASETS, load_dataset
from ..model import PRESETS, Transformer, TransformerConfig
from ..model.config import check_options, option
from . import checkpoint as ckpt
from .evaluate import evaluate_loss
from .loss import nll_sum, token_losses
from .plan import BatchPlan, corpus_mean_tokens, plan_batches
from .rundir import Run, RunLock, best_val_step
from .runtime import (
    all_reduce,
    autocast,
    barrier,
    display_path,
    distributed_setup,
    environment,
    gather_objects,
    move_batch,
    reduce_values,
    seed_everything,
)
from .schedule import apply_schedule, build_scheduler


@dataclass
class TrainConfig:
    """Everything one training run needs; defaults follow the paper (Section 5).

    Every field's help text and allowed range is declared here; the command line's options
    (``--max-tokens`` ...) are made from them, and construction checks them.
    """

    # data (transformer.data.load_dataset)
    dataset: str = option("multi30k", "dataset to train on", choices=tuple(DATASETS))
    src: str | None = option(None, "source language (default: the dataset's usual pair)")
    tgt: str | None = option(None, "target language")
    data_dir: str | None = option(None, "corpus and tokenizer cache (default: "
                                  "$TRANSFORMER_DATA_DIR or data/cache)")
    vocab_size: int | None = option(None, "shared BPE vocabulary size (default: the "
                                    "dataset's)", low=8)
    # model: a preset of TransformerConfig plus field overrides
    preset: str = option("base", "model preset (transformer.model.config.PRESETS)",
                         choices=tuple(PRESETS))
    model: dict = option(help="TransformerConfig fields that replace the preset's",
                         factory=dict, cli=False)
    # batches (Section 5.1): token budgets, padding included
    max_tokens: int = option(8192, "token budget of one micro-batch (source and target each, "
                             "padding included)", low=1)
    tokens_per_step: int | None = option(
        25000, "target tokens per optimizer step over all ranks (the paper: 25000); sets the "
        "number of accumulated micro-batches; 0: use --accum", low=1, zero_is_none=True)
    accum: int = option(1, "micro-batches per optimizer step when --tokens-per-step is 0",
                        low=1)
    # optimizer (Section 5.3)
    warmup: int = option(4000, "warm-up steps of the learning-rate schedule (Section 5.3)",
                         low=1)
    lr_scale: float = option(1.0, "multiplies the schedule's learning rate", above=0.0)
    beta1: float = option(0.9, "Adam beta1 (Section 5.3)", low=0.0, below=1.0)
    beta2: float = option(0.98, "Adam beta2 (Section 5.3)", low=0.0, below=1.0)
    adam_eps: float = option(1e-9, "Adam epsilon (Section 5.3)", above=0.0)
    clip_grad: float | None = option(None, "clip the gradient norm to this (the paper does "
                                     "not)", above=0.0)
    # when to stop: the first limit reached
    max_steps: int | None = option(None, "stop after this many optimizer steps", low=1)
    max_epochs: int | None = option(None, "stop after this many passes over the training "
                                    "data", low=1)
    time_budget: float | None = option(None, "minutes of training in this invocation before "
                                       "stopping", above=0.0)
    patience: int | None = option(None, "stop after this many validations without a lower "
                                  "validation loss", low=1)
    # bookkeeping
    seed: int = option(0, "seeds weights, dropout and batch order", low=0)
    device: str = option("auto", "auto (cuda if available, else cpu), cpu, cuda or cuda:N")
    run_dir: str = option("runs/default", "where the log and checkpoints go")
    resume: str | None = option(None, "checkpoint to continue from, or 'auto' for the run "
                                "dir's latest")
    overwrite: bool = option(False, "start afresh in a run dir that already holds checkpoints")
    log_every: int = option(50, "steps between log records (report steps: the only ones that "
                            "wait for the GPU)", low=1)
    eval_every: int | None = option(1000, "steps between validations (0: only at the end)",
                                    low=1, zero_is_none=True)
    save_every: int | None = option(None, "steps between checkpoints (0: none by step count)",
                                    low=1, zero_is_none=True)
    save_every_minutes: float | None = option(
        10.0, "minutes between checkpoints (the paper wrote one every 10 minutes, Section "
        "6.1; 0: none by time)", above=0.0, zero_is_none=True)
    keep_last: int = option(5, "checkpoints kept (the paper averages the last 5; 0: all)",
                            low=0)
    average: int = option(0, "average this many checkpoints into <run_dir>/averaged.pt at the "
                          "end (Section 6.1: 5 for base, 20 for big; with --patience, the ones "
                          "ending at the best validation); 0: none", low=0)
    compile: bool = option(False, "torch.compile the model (CUDA)")
    amp: bool = option(True, "bf16 autocast on CUDA; float32 on the CPU whatever this says")
    progress: bool = option(True, "show a progress bar on rank 0")

    def __post_init__(self) -> None:
        check_options(self)
        if self.keep_last and self.average > self.keep_last:
            raise ValueError(f"average={self.average} needs keep_last >= {self.average} (or 0: "
                             f"keep all), got keep_last={self.keep_last}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass
class Progress:
    """Where a run stands; stored in every checkpoint, so a resumed run continues exactly."""

    step: int = 0  # optimizer steps taken
    epoch: int = 0
    batch: int = 0  # next batch of this epoch
    tokens: int = 0  # target tokens trained on, all ranks
    wall_time: float = 0.0  # seconds of training, all invocations
    best_val: float = math.inf  # lowest validation loss so far
    bad_evals: int = 0  # validations since the best one


@dataclass
class StepPlan:
    """What a step does besides training; known to every rank before the step runs."""

    report: bool  # a report step: wait for the device, agree across ranks, log
    validate: bool
    save: bool


@dataclass
class Clocks:
    """What all ranks agree on at a report step (the slowest rank's clocks)."""

    first_bad: int  # first step whose loss was not finite, 0 if none
    minutes: float  # trained in this invocation
    since_save: float  # minutes since the last checkpoint
    interrupted: bool  # a rank received SIGINT or SIGTERM


@dataclass
class Health:
    """Whether the logged loss and gradient norm are in their recent range.

    A value more than ``factor`` times the mean of the last ``window`` in-range values (or a
    non-finite one) puts the run out of range until values come back; checkpoints saved while
    out of range are never offered as "the last good one" after a NaN.
    """

    factor: float = 10.0
    window: int = 20
    history: dict = field(default_factory=dict)  # name -> recent in-range values
    ok: bool = True

    def update(self, **values: float) -> bool:
        self.ok = all(self.in_range(name, value) for name, value in values.items())
        if self.ok:
            for name, value in values.items():
                self.history.setdefault(name, collections.deque(maxlen=self.window)).append(value)
        return self.ok

    def in_range(self, name: str, value: float) -> bool:
        seen = self.history.get(name, ())
        return math.isfinite(value) and (
            len(seen) < 3 or value <= self.factor * sum(seen) / len(seen))


def build_model_config(cfg: TrainConfig, tokenizer) -> TransformerConfig:
    """The preset, sized to the tokenizer's vocabulary and special ids, then ``cfg.model``."""
    fields = dict(src_vocab_size=tokenizer.vocab_size, tgt_vocab_size=tokenizer.vocab_size,
                  pad_id=tokenizer.pad_id, bos_id=tokenizer.bos_id, eos_id=tokenizer.eos_id,
                  unk_id=tokenizer.unk_id)
    return TransformerConfig.from_preset(cfg.preset, **{**fields, **cfg.model})


def load_train_dataset(cfg: TrainConfig, rank: int = 0, world: int = 1):
    """The dataset ``cfg`` names.  Under torchrun rank 0 alone downloads it, trains the BPE
    vocabulary and encodes the splits into the cache while the other ranks wait; they then
    read the cache."""
    def load():
        data = load_dataset(cfg.dataset, cfg.src, cfg.tgt, vocab_size=cfg.vocab_size,
                            data_dir=cfg.data_dir, seed=cfg.seed)
        for split in ("train", validation_split(data)):
            if split:
                data.kept_indices(split)  # encodes the split (and writes its cache file)
        return data

    if world == 1:
        return load()
    if rank == 0:
        data = load()
    barrier()  # rank 0 has the corpus, the vocabulary and the token ids in the cache
    return data if rank == 0 else load()


def validation_split(dataset) -> str | None:
    for name in ("val", "valid", "validation", "dev"):
        if name in dataset.splits:
            return name
    return None


def batch_plan(cfg: TrainConfig, dataset, world_size: int) -> BatchPlan:
    """Micro-batch budget and accumulation that give ``cfg.tokens_per_step`` target tokens per
    step over ``world_size`` ranks (``plan.py``); ``cfg.accum`` micro-batches of
    ``cfg.max_tokens`` when ``tokens_per_step`` is None."""
    longest = dataset.batch_stats("train", cfg.max_tokens)["longest"]
    return plan_batches(cfg.tokens_per_step, world_size, cfg.max_tokens,
                        corpus_mean_tokens(dataset), accum=cfg.accum, min_tokens=longest)


def nan_message(step: int, lr: float, run_dir: Path, last_good: Path | None) -> str:
    """What to do after a NaN: ``last_good`` is the newest checkpoint saved while the loss and
    gradient norm were still in their recent range (see ``Health``)."""
    last = last_good
    resume = (f"resume from the last checkpoint saved before the loss or gradient norm left "
              f"its range (--resume {last}) with ") if last else ""
    return (
        f"training stopped: the loss became NaN or infinite at step {step} (lr {lr:.3g}). "
        f"Try: {resume}a smaller learning rate (--lr-scale 0.5) or a longer warm-up (--warmup), "
        "gradient clipping (--clip-grad 1.0), or without --compile; on a GPU also --no-amp to "
        f"rule out bf16.  Earlier steps are logged in {run_dir / 'log.jsonl'}."
    )


def wrap_ddp(model, device: torch.device):
    """DDP with gradients all-reduced once per step; buffers are not broadcast: the sinusoid
    table is a constant.  (torch 2.13 deprecates ``broadcast_buffers`` in favour of
    ``forward_sync_buffers``, which would still sync at init; its warning says to keep
    ``broadcast_buffers=False`` until ``init_sync_buffers`` exists.)"""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*broadcast_buffers.*", category=FutureWarning)
        return torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device] if device.type == "cuda" else None,
            gradient_as_bucket_view=True, broadcast_buffers=False)


def train(cfg: TrainConfig, dataset=None) -> dict:
    """Train a Transformer as ``cfg`` says; return (and write) a summary dict.

    ``dataset`` (a ``TranslationDataset``) replaces ``cfg.dataset``; tests pass their own.
    Raises ``FloatingPointError`` if the loss stops being finite (checked at report steps).
    """
    if not (cfg.max_steps or cfg.max_epochs or cfg.time_budget):
        raise ValueError("set at least one of max_steps, max_epochs or time_budget")
    rank, world, device, cleanup = distributed_setup(cfg.device)
    lock = RunLock(cfg.run_dir) if rank == 0 else None  # rank 0 owns the run directory
    try:
        note = lock.acquire() if lock else None
        if note:
            print(note)
        summary = Trainer(cfg, dataset, rank, world, device).fit()
        barrier()  # no rank tears the process group down while another still writes
        return summary
    finally:
        if lock:
            lock.release()
        cleanup()


class Trainer:
    """The state of one run and its step loop; ``train`` is the way in."""

    def __init__(self, cfg: TrainConfig, dataset, rank: int, world: int, device: torch.device):
        self.cfg, self.rank, self.world, self.device = cfg, rank, world, device
        seed_everything(cfg.seed + rank)
        self.data = dataset if dataset is not None else load_train_dataset(cfg, rank, world)
        cuda = device.type == "cuda"
        if cuda:
            torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
        self.amp = autocast(device, cfg.amp)
        self.model = Transformer(build_model_config(cfg, self.data.tokenizer)).to(device)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=1.0,
                                          betas=(cfg.beta1, cfg.beta2), eps=cfg.adam_eps,
                                          fused=True if cuda else None)
        self.scheduler = build_scheduler(self.optimizer, self.model.config.d_model, cfg.warmup,
                                         cfg.lr_scale)
        self.batching = batch_plan(cfg, self.data, world)
        self.accum = self.batching.accum
        self.progress, self.validated_at, self.health = Progress(), None, Health()
        self.resume_from = self.find_resume()
        if self.resume_from:
            self.restore(ckpt.load_checkpoint(self.resume_from))
        self.last_good = self.resume_from  # the newest checkpoint saved while in range
        self.run = Run(cfg, rank, fresh=not self.resume_from, step=self.progress.step,
                       wall_time=self.progress.wall_time)
        self.tokenizer = ckpt.tokenizer_record(self.data.tokenizer, self.run.dir / "tokenizer.json")
        if rank == 0:
            self.data.tokenizer.save(self.run.dir / "tokenizer.json")
        self.ddp = wrap_ddp(self.model, device) if world > 1 else self.model
        self.forward = torch.compile(self.ddp) if cfg.compile else self.ddp

    # ---- checkpoints ------------------------------------------------------------------------
    def find_resume(self) -> Path | str | None:
        """``cfg.resume``; for "auto" the run dir's newest intact checkpoint, chosen by rank 0
        (which alone renames damaged ones) and used by every rank."""
        if self.cfg.resume != "auto":
            return self.cfg.resume
        found = ckpt.latest_intact_checkpoint(self.cfg.run_dir) if self.rank == 0 else None
        return gather_objects(found, self.world)[0]

    def restore(self, state: dict) -> None:
        """Weights, optimizer, schedule, progress, RNGs: continue exactly where it stopped."""
        progress, rngs = ckpt.restore_training(
            state, self.resume_from, model=self.model, config=self.model.config,
            optimizer=self.optimizer, scheduler=self.scheduler)
        apply_schedule(self.scheduler)  # this run's --lr-scale / --warmup from its first step
        known = {f.name for f in dataclasses.fields(Progress)}
        self.progress = Progress(**{k: v for k, v in progress.items() if k in known})
        if len(rngs) == self.world:
            ckpt.set_rng_state(rngs[self.rank])
        else:  # another number of ranks: dropout masks cannot repeat exactly
            seed_everything(self.cfg.seed + self.rank + 1000 * self.progress.step)

    def save(self) -> Path:
        p, d = self.progress, self.data
        p.wall_time = self.run.wall_time()
        rngs = gather_objects(ckpt.rng_state(), self.world)  # every rank's dropout stream
        path = ckpt.checkpoint_path(self.run.dir, p.step)
        if self.rank == 0:
            previous = ckpt.latest_checkpoint(self.run.dir)
            with self.save_errors(path, previous):
                ckpt.save_training(
                    path, model=self.model, config=self.model.config, tokenizer=self.tokenizer,
                    optimizer=self.optimizer, scheduler=self.scheduler,
                    progress=dataclasses.asdict(p), rng=rngs,
                    data={"dataset": d.name, "src": d.src_lang, "tgt": d.tgt_lang,
                          "data_dir": self.cfg.data_dir, "vocab_size": self.cfg.vocab_size,
                          "seed": self.cfg.seed},
                    train_config=self.cfg.to_dict(), world_size=self.world, accum=self.accum,
                    micro_batch_tokens=self.batching.max_tokens)
            ckpt.prune_checkpoints(self.run.dir, self.cfg.keep_last)
        if self.health.ok:
            self.last_good = path
        self.run.saved_at = time.monotonic()
        return path

    @contextlib.contextmanager
    def save_errors(self, path: Path, previous: Path | None):
        """A save that fails (a full disk ...) leaves the previous checkpoint intact: say so."""
        try:
            yield
        except OSError as e:
            kept = (f"the previous checkpoint {previous} is intact" if previous
                    else "no earlier checkpoint exists")
            raise ckpt.CheckpointError(
                f"could not write checkpoint {path}: {e.strerror or e}; {kept} (nothing "
                "partial was left). Free space or choose another --run-dir, then continue "
                "with --resume auto.") from e

    # ---- validation -------------------------------------------------------------------------
    def validate(self) -> bool:
        """Log a validation record; True when ``patience`` has run out (early stopping)."""
        split = validation_split(self.data)
        if split is None:
            return False
        p = self.progress
        self.validated_at = p.step
        m = evaluate_loss(self.model, self.data, split, max_tokens=self.cfg.max_tokens,
                          device=self.device, amp=self.amp, rank=self.rank,
                          world_size=self.world)
        self.run.log("val", step=p.step, split=split, **m)
        if m["loss"] < p.best_val:
            p.best_val, p.bad_evals = m["loss"], 0
        else:
            p.bad_evals += 1
        return bool(self.cfg.patience) and p.bad_evals >= self.cfg.patience

    # ---- one step ---------------------------------------------------------------------------
    def epoch_batches(self, epoch: int) -> list:
        return self.data.batches("train", self.batching.max_tokens, shuffle=True,
                                 seed=self.cfg.seed, epoch=epoch, rank=self.rank,
                                 world_size=self.world)

    def next_group(self) -> tuple[list, bool]:
        """This rank's micro-batches for the next step, and whether it is the last step."""
        cfg, p = self.cfg, self.progress
        if p.batch >= len(self.batches):  # next epoch
            p.epoch, p.batch = p.epoch + 1, 0
            self.batches = self.epoch_batches(p.epoch)
        group = self.batches[p.batch:p.batch + self.accum]
        p.batch += len(group)
        p.step += 1
        last = bool((cfg.max_steps and p.step >= cfg.max_steps) or (
            cfg.max_epochs and p.batch >= len(self.batches) and p.epoch + 1 >= cfg.max_epochs))
        return group, last

    def plan(self, step: int, last: bool) -> StepPlan:
        cfg = self.cfg
        validate = bool(cfg.eval_every) and step % cfg.eval_every == 0
        save = bool(cfg.save_every) and step % cfg.save_every == 0
        report = (step % cfg.log_every == 0 or step == 1 or last or validate or save
                  or step == self.clock_check or (self.interrupted is not None and self.world == 1))
        return StepPlan(report, validate, save)

    def step(self, group: list, measure: bool):
        """One optimizer step on ``group`` (this rank's micro-batches).

        Each micro-batch's summed loss is scaled by world_size / (target tokens of the whole
        step, all ranks); DDP averages over ranks, so the gradient is the per-token mean.
        Returns device tensors (summed loss, summed NLL or None, grad norm or None).
        """
        world, device, pad_id = self.world, self.device, self.model.config.pad_id
        n_tokens = float(sum(b.n_tgt_tokens for b in group))
        if world > 1:
            scale = world / all_reduce(torch.full((), n_tokens, device=device))  # no wait
        else:
            scale = 1.0 / n_tokens
        loss_sum = torch.zeros((), device=device)
        nll = torch.zeros((), device=device) if measure else None
        for i, batch in enumerate(group):
            src, tgt_in, tgt_out = move_batch(batch, device)
            reduce_grads = world == 1 or i == len(group) - 1  # DDP all-reduces once per step
            with nullcontext() if reduce_grads else self.ddp.no_sync():
                with self.amp():
                    loss, logits = token_losses(self.forward, src, tgt_in, tgt_out,
                                                self.model.config)
                (loss * scale).backward()
            loss_sum += loss.detach()
            if measure:
                nll += nll_sum(logits, tgt_out, pad_id)
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

    # ---- report steps -----------------------------------------------------------------------
    def agree_on_clocks(self) -> Clocks:
        """The first non-finite step, the clocks and the interrupt flag, maxed over ranks (one
        collective)."""
        first_bad, minutes, since_save, interrupted = reduce_values(
            [self.first_bad, self.run.minutes(), self.run.minutes_since_save(),
             float(self.interrupted is not None)], self.device, op="max")
        return Clocks(int(first_bad), minutes, since_save, bool(interrupted))

    def log_train(self, group: list, lr: float, nll, grad_norm) -> tuple[float, float]:
        """Sum the window's loss and tokens over ranks (one collective) and log a record;
        return (loss per token, gradient norm)."""
        p = self.progress
        loss, nll, tokens, step_tokens = reduce_values(
            [self.window_loss, nll, self.window_tokens, sum(b.n_tgt_tokens for b in group)],
            self.device)
        p.tokens += int(tokens)
        self.run.log_train(step=p.step, loss=loss / tokens, nll=nll / step_tokens,
                           tokens=tokens, lr=lr, grad_norm=float(grad_norm),
                           epoch=round(p.epoch + p.batch / len(self.batches), 4),
                           total_tokens=p.tokens)
        self.window_loss.zero_()
        self.window_tokens = 0
        return loss / tokens, float(grad_norm)

    def report(self, plan: StepPlan, last: bool, group: list, lr: float, nll,
               grad_norm) -> str | None:
        """Log, validate and save as planned; return why the run stops now, or None."""
        cfg, step = self.cfg, self.progress.step
        clocks = self.agree_on_clocks()
        if clocks.first_bad:
            raise FloatingPointError(nan_message(clocks.first_bad, lr, self.run.dir,
                                                 self.last_good))
        loss, norm = self.log_train(group, lr, nll, grad_norm)
        self.health.update(loss=loss, grad_norm=norm)
        if clocks.interrupted:
            return "interrupted"
        stop = "early_stop" if plan.validate and self.validate() else None
        if last:
            stop = "max_steps" if cfg.max_steps and step >= cfg.max_steps else "max_epochs"
        elif cfg.time_budget and clocks.minutes >= cfg.time_budget:
            stop = stop or "time_budget"
        since_save = clocks.since_save
        save_due = bool(cfg.save_every_minutes) and since_save >= cfg.save_every_minutes
        if stop is None and (plan.save or save_due):
            self.save()
            since_save = 0.0
        self.clock_check = self.next_clock_check(step, clocks.minutes, since_save)
        return stop

    def next_clock_check(self, step: int, minutes: float, since_save: float) -> int | None:
        """The step at which the time budget or the next timed save is expected to fall due.

        Clocks are read only at report steps; this one is added so that a run with few
        logging steps stops on time.  Every rank computes the same step from the same
        agreed clocks.
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

    # ---- the loop ---------------------------------------------------------------------------
    def fit(self) -> dict:
        cfg, p = self.cfg, self.progress
        self.batches = self.epoch_batches(p.epoch)
        self.run.start(self.describe(), self.banner(), self.total_steps())
        if self.batching.warning():
            self.run.note(self.batching.warning())
        self.window_loss = torch.zeros((), device=self.device)  # summed loss since the last log
        self.window_tokens = 0  # this rank's target tokens since the last log
        self.first_bad = torch.zeros((), dtype=torch.long, device=self.device)
        self.clock_check = None
        self.model.train()
        stop = "max_steps" if cfg.max_steps and p.step >= cfg.max_steps else None
        with self.catch_interrupts():
            stop = self.loop(stop)
        return self.finish(stop)

    def loop(self, stop: str | None) -> str:
        p = self.progress
        while stop is None:
            group, last = self.next_group()
            plan = self.plan(p.step, last)
            lr = self.scheduler.get_last_lr()[0]
            loss_sum, nll, grad_norm = self.step(group, measure=plan.report)
            self.window_loss += loss_sum
            self.window_tokens += sum(b.n_tgt_tokens for b in group)
            self.first_bad = torch.where((self.first_bad == 0) & ~torch.isfinite(loss_sum),
                                         torch.full_like(self.first_bad, p.step), self.first_bad)
            self.run.bar_update(p.step)
            if plan.report:
                stop = self.report(plan, last, group, lr, nll, grad_norm)
        return stop

    @contextlib.contextmanager
    def catch_interrupts(self):
        """SIGINT (Ctrl-C) and SIGTERM stop the run at the next report step, which saves a
        checkpoint; a second signal acts at once (Python's default handling)."""
        self.interrupted = None
        if threading.current_thread() is not threading.main_thread():
            yield  # signal handlers can only be set from the main thread
            return

        def handler(signum, frame):
            self.interrupted = signal.Signals(signum).name
            signal.signal(signum, previous[signum])
            self.run.note(f"{self.interrupted}: stopping at the next report step with a "
                          "checkpoint (send it again to stop at once, without one)")

        previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for s, h in previous.items():
                signal.signal(s, h)

    def finish(self, stop: str) -> dict:
        """A validation (unless just done or interrupted), the final checkpoint, the summary."""
        p = self.progress
        if self.validated_at != p.step and stop != "interrupted":
            self.validate()
        path = self.save()
        summary = {"stopped": stop, "steps": p.step,
                   "epochs": round(p.epoch + p.batch / max(len(self.batches), 1), 4),
                   "tokens": p.tokens, "wall_time": round(p.wall_time, 2),
                   "tokens_per_s": round(p.tokens / max(p.wall_time, 1e-9), 1),
                   "best_val_loss": p.best_val if math.isfinite(p.best_val) else None,
                   "checkpoint": str(path), "run_dir": str(self.run.dir), "accum": self.accum,
                   "micro_batch_tokens": self.batching.max_tokens,
                   "tokens_per_step": round(p.tokens / max(p.step, 1), 1),
                   "planned_tokens_per_step": round(self.batching.expected, 1),
                   "world_size": self.world, "device": str(self.device),
                   "parameters": self.model.num_parameters(),
                   "averaged": self.average() if stop != "interrupted" else None}
        if stop == "interrupted":
            summary["interrupted_by"] = self.interrupted or "a signal on another rank"
            self.run.note(f"interrupted at step {p.step}; saved {display_path(path)}. "
                          "Continue with --resume auto.")
        return self.run.finish(summary)

    def average(self) -> dict | None:
        """Section 6.1: average the last ``cfg.average`` checkpoints (with ``patience``: the
        ones ending at the best validation) into ``<run_dir>/averaged.pt``."""
        if self.cfg.average < 2 or self.rank != 0:
            return None
        best = best_val_step(self.run.dir) if self.cfg.patience else None
        paths = ckpt.checkpoints_up_to(self.run.dir, best, self.cfg.average)
        if len(paths) < 2:
            return None
        out = ckpt.write_average(paths, self.run.dir / "averaged.pt")
        self.run.note(f"averaged {len(paths)} checkpoints ({paths[0].name} .. {paths[-1].name})"
                      f" into {display_path(out)}")
        return {"checkpoint": str(out), "from": [p.name for p in paths]}

    # ---- descriptions -----------------------------------------------------------------------
    def total_steps(self) -> int | None:
        cfg = self.cfg
        return cfg.max_steps or (cfg.max_epochs and cfg.max_epochs * -(-len(self.batches)
                                                                       // self.accum))

    def describe(self) -> dict:
        """What config.json records: both configs, the data, the device, the environment."""
        d = self.data
        return {"train_config": self.cfg.to_dict(), "model_config": self.model.config.to_dict(),
                "parameters": self.model.num_parameters(),
                "data": {"dataset": d.name, "src": d.src_lang, "tgt": d.tgt_lang,
                         "vocab_size": d.tokenizer.vocab_size, "splits": list(d.splits),
                         "train_batches_per_rank": len(self.batches),
                         "filter_report": d.filter_report},
                "accum": self.accum, "batch_plan": self.batching.describe(),
                "world_size": self.world, "resumed_from": (
                    str(self.resume_from) if self.resume_from else None),
                "environment": environment(self.device)}

    def banner(self) -> str:
        d, m, c = self.data, self.model.config, self.cfg
        resumed = f", resumed at step {self.progress.step}" if self.resume_from else ""
        return (f"{d.name} {d.src_lang}->{d.tgt_lang} | model {c.preset}: "
                f"{self.model.num_parameters() / 1e6:.2f}M parameters, N={m.n_layers}, "
                f"d_model={m.d_model}, h={m.n_heads} | {self.world} x {self.device} | "
                f"{self.accum} micro-batch(es) of <= {self.batching.max_tokens} tokens per step "
                f"and rank (about {self.batching.expected:,.0f} target tokens per step), "
                f"{len(self.batches)} per epoch{resumed} | run dir {display_path(self.run.dir)}")
