"""Training (Section 5): token-budget batches, Adam with warm-up, label smoothing, DDP.

    cfg = TrainConfig(dataset="multi30k", src="de", tgt="en", preset="small", time_budget=10)
    summary = train(cfg)

``Trainer.fit`` is the loop, to be read from top to bottom.  One optimizer step sums the loss
over ``accum`` micro-batches on every rank and divides it by the step's target tokens (all
ranks together): the gradient is that of the mean per-token loss over the whole step, as if
one batch of ~25000 source + 25000 target tokens (Section 5.1) had fit on one device
(``batch_size.py`` chooses ``accum``).

The same code runs on a CPU (float32) and on GPUs (bf16 autocast, fused attention, optional
``torch.compile``), in one process or many (``torchrun --nproc-per-node N -m transformer
train ...``: DDP, one data shard per rank).  The loop runs ahead of the GPU and waits for it
only at *log steps*: every ``log_every`` steps, and at steps that validate, save or end the
run.  There one all-reduce sums the losses, token counts and clocks of all ranks, so that every
rank takes the same decision to stop (NaN, time budget, a signal).  The run directory's files
are described in ``rundir.py``, the checkpoints' in ``checkpoint.py``.
"""

from __future__ import annotations

import dataclasses
import math
from contextlib import nullcontext
from dataclasses import dataclass, field

import torch

from ..data import DATASETS, load_dataset
from ..model import PRESETS, Transformer, TransformerConfig
from ..model.config import check_fields
from . import checkpoint as ckpt
from .batch_size import measured_batch_size
from .evaluate import evaluate_loss
from .loss import loss_sum, nll_sum
from .rundir import Run, RunLock, banner, best_val_step, describe, summarize, total_steps
from .runtime import (
    StopSignals,
    all_reduce,
    autocast,
    barrier,
    display_path,
    distributed_setup,
    gather_objects,
    move_batch,
    reduce_values,
    seed_everything,
    wrap_ddp,
)
from .schedule import transformer_lr

ADAM = dict(betas=(0.9, 0.98), eps=1e-9)  # Section 5.3


@dataclass
class TrainConfig:
    """Everything one training run needs; the defaults are the paper's (Section 5).

    Construction checks the values against ``RULES``; the command line's help texts are in
    ``transformer/apps/options.py``.
    """

    # data (transformer.data.load_dataset)
    dataset: str = "multi30k"
    src: str | None = None  # source language; None: the dataset's usual pair
    tgt: str | None = None
    data_dir: str | None = None  # corpus and tokenizer cache; None: $TRANSFORMER_DATA_DIR
    vocab_size: int | None = None  # shared BPE vocabulary; None: the dataset's
    # model: a preset of TransformerConfig, and fields that replace the preset's
    preset: str = "base"
    model: dict = field(default_factory=dict)
    # the batch (Section 5.1): tokens_per_step target tokens per step over all ranks, in
    # accumulated micro-batches of at most max_tokens positions, padding included (None: one
    # micro-batch per step and rank)
    tokens_per_step: int | None = 25000
    max_tokens: int = 8192
    # optimizer (Section 5.3; Adam's betas and epsilon are ADAM)
    warmup: int = 4000
    lr_scale: float = 1.0
    clip_grad: float | None = None  # the paper does not clip
    # when to stop: the first limit reached
    max_steps: int | None = None
    max_epochs: int | None = None
    time_budget: float | None = None  # minutes of training in this invocation
    patience: int | None = None  # validations without a lower validation loss
    # bookkeeping
    seed: int = 0
    device: str = "auto"
    run_dir: str = "runs/default"
    resume: str | None = None  # a checkpoint, or "auto": the run dir's newest intact one
    overwrite: bool = False
    log_every: int = 50
    eval_every: int | None = 1000  # None: only at the end
    save_every: int | None = 1000  # None: only at the end
    keep_last: int = 5
    average: int = 0  # average the last N checkpoints at the end (Section 6.1)
    compile: bool = False
    amp: bool = True  # bf16 autocast on CUDA
    progress: bool = True

    def __post_init__(self) -> None:
        check_fields(self, RULES)
        if self.keep_last and self.average > self.keep_last:
            raise ValueError(f"average={self.average} needs keep_last >= {self.average} (or 0: "
                             f"keep all), got keep_last={self.keep_last}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


RULES = dict(
    dataset=tuple(DATASETS), vocab_size=">= 8", preset=tuple(PRESETS), tokens_per_step=">= 1",
    max_tokens=">= 1", warmup=">= 1", lr_scale="> 0", clip_grad="> 0", max_steps=">= 1",
    max_epochs=">= 1", time_budget="> 0", patience=">= 1", seed=">= 0", log_every=">= 1",
    eval_every=">= 1", save_every=">= 1", keep_last=">= 0", average=">= 0")


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


def train(cfg: TrainConfig, dataset=None) -> dict:
    """Train a Transformer as ``cfg`` says; return (and write) a summary dict.

    ``dataset`` (a ``TranslationDataset``) replaces ``cfg.dataset``; tests pass their own.
    Raises ``FloatingPointError`` if the loss stops being finite (checked at log steps).
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
    """One run: its model and optimizer, its data, where it stands; ``fit`` is the loop."""

    def __init__(self, cfg: TrainConfig, dataset, rank: int, world: int, device: torch.device):
        self.cfg, self.rank, self.world, self.device = cfg, rank, world, device
        seed_everything(cfg.seed + rank)
        self.data = dataset if dataset is not None else load_train_dataset(cfg, rank, world)
        cuda = device.type == "cuda"
        if cuda:
            torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
        self.amp = autocast(device, cfg.amp)
        self.model = Transformer(build_model_config(cfg, self.data.tokenizer)).to(device)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=0.0, **ADAM,
                                          fused=True if cuda else None)
        self.batch_size = measured_batch_size(self.data, cfg.tokens_per_step, world,
                                              cfg.max_tokens)
        self.progress, self.validated_at = Progress(), None
        self.resumed_from = ckpt.resume_checkpoint(cfg.resume, cfg.run_dir, rank, world)
        if self.resumed_from:
            self.restore(ckpt.load_checkpoint(self.resumed_from))
        self.run = Run(cfg, rank, fresh=not self.resumed_from, step=self.progress.step,
                       wall_time=self.progress.wall_time)
        tokenizer_file = self.run.dir / "tokenizer.json"
        self.tokenizer = ckpt.tokenizer_record(self.data.tokenizer, tokenizer_file)
        if rank == 0:
            self.data.tokenizer.save(tokenizer_file)
        # what a step calls: the model, under DDP on several ranks, compiled if asked
        self.ddp = wrap_ddp(self.model, device) if world > 1 else None
        self.train_model = self.model if self.ddp is None else self.ddp
        if cfg.compile:
            self.train_model = torch.compile(self.train_model)
        self.signals = StopSignals(self.run.note)

    # ---- the loop ---------------------------------------------------------------------------
    def fit(self) -> dict:
        """Train until a limit is reached; then validate, save and average (Section 6.1)."""
        cfg, p, run = self.cfg, self.progress, self.run
        self.batches = self.epoch_batches(p.epoch)
        run.start(describe(self), banner(self), total_steps(self))
        if self.batch_size.warning():
            run.note(self.batch_size.warning())
        window_loss = torch.zeros((), device=self.device)  # summed loss since the last log
        tokens, window_start = 0, p.step + 1  # this rank's target tokens; first step since
        stop = "max_steps" if cfg.max_steps and p.step >= cfg.max_steps else None
        self.model.train()
        with self.signals:
            while stop is None:
                # this step's micro-batches, and what the step does besides training
                if p.batch >= len(self.batches):
                    p.epoch, p.batch = p.epoch + 1, 0
                    self.batches = self.epoch_batches(p.epoch)
                group = self.batches[p.batch:p.batch + self.batch_size.accum]
                p.batch, p.step = p.batch + len(group), p.step + 1
                limit = self.limit_reached()
                validate = bool(cfg.eval_every) and p.step % cfg.eval_every == 0
                save = bool(cfg.save_every) and p.step % cfg.save_every == 0
                log = (p.step % cfg.log_every == 0 or p.step == 1 or validate or save
                       or limit is not None)
                if self.world == 1:  # one process looks at its clock and signals every step
                    log = log or self.signals.received is not None or self.out_of_time(
                        run.minutes())

                lr = transformer_lr(p.step, self.model.config.d_model, cfg.warmup, cfg.lr_scale)
                loss, nll, grad_norm = self.step(group, lr, measure=log)
                window_loss += loss
                tokens += sum(b.n_tgt_tokens for b in group)
                run.bar_update(p.step)
                if not log:
                    continue
                # a log step: the ranks agree on the loss, the clock and any signal
                minutes, signalled = self.log(window_loss, tokens, window_start, nll, group,
                                              grad_norm, lr)
                window_loss.zero_()
                tokens, window_start = 0, p.step + 1
                if signalled:
                    stop = "interrupted"
                    break
                if validate and self.validate():
                    stop = "early_stop"
                stop = limit or stop or ("time_budget" if self.out_of_time(minutes) else None)
                if save and stop is None:
                    self.save()
            return self.finish(stop)  # a second signal must not cut the last save short

    def step(self, group: list, lr: float, measure: bool):
        """One optimizer step on ``group`` (this rank's micro-batches) at learning rate ``lr``.

        Each micro-batch's summed loss is scaled by world_size / (target tokens of the whole
        step, all ranks); DDP averages over ranks, so the gradient is the per-token mean.
        Returns device tensors: the summed loss, and with ``measure`` the summed NLL of this
        step and the gradient norm (else None).
        """
        n_tokens = float(sum(b.n_tgt_tokens for b in group))
        if self.world > 1:  # an all-reduce the device runs without the host waiting
            scale = self.world / all_reduce(torch.full((), n_tokens, device=self.device))
        else:
            scale = 1.0 / n_tokens
        total = torch.zeros((), device=self.device)
        nll = torch.zeros((), device=self.device) if measure else None
        for i, batch in enumerate(group):
            src, tgt_in, tgt_out = move_batch(batch, self.device)
            last = i == len(group) - 1  # DDP all-reduces the gradients once, after the last
            with self.ddp.no_sync() if self.ddp is not None and not last else nullcontext():
                with self.amp():
                    logits = self.train_model(src, tgt_in)
                    loss = loss_sum(logits, tgt_out, self.model.config)
                (loss * scale).backward()
            total += loss.detach()
            if measure:
                nll += nll_sum(logits, tgt_out, self.model.config.pad_id)
        params = [p for p in self.model.parameters() if p.grad is not None]
        grad_norm = None
        if self.cfg.clip_grad:
            grad_norm = torch.nn.utils.clip_grad_norm_(params, self.cfg.clip_grad)
        elif measure:  # the global L2 norm, as clip_grad_norm_ computes it
            grad_norm = torch.linalg.vector_norm(
                torch.stack([torch.linalg.vector_norm(p.grad) for p in params]))
        for g in self.optimizer.param_groups:
            g["lr"] = lr
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return total, nll, grad_norm

    def log(self, window_loss, tokens: int, window_start: int, nll, group: list, grad_norm,
            lr: float) -> tuple[float, bool]:
        """A log step: sum the loss, tokens and clocks over ranks (one all-reduce, the one wait
        for the device), stop on a non-finite loss, write a "train" record.  Returns what all
        ranks agree on: the minutes trained (their mean) and whether any rank was signalled."""
        p = self.progress
        loss, tokens, nll, step_tokens, grad_norm, minutes, signalled = reduce_values(
            [window_loss, tokens, nll, sum(b.n_tgt_tokens for b in group), grad_norm,
             self.run.minutes(), self.signals.received is not None], self.device)
        if not math.isfinite(loss):  # NaN or inf at some step since the last log step
            raise FloatingPointError(nan_message(window_start, p.step, lr, self.run.dir))
        p.tokens += int(tokens)
        self.run.log_train(step=p.step, loss=loss / tokens, nll=nll / step_tokens,
                           tokens=tokens, lr=lr, grad_norm=grad_norm / self.world,
                           epoch=round(p.epoch + p.batch / len(self.batches), 4),
                           total_tokens=p.tokens)
        return minutes / self.world, signalled > 0

    def limit_reached(self) -> str | None:
        """"max_steps" or "max_epochs" once the step just taken reaches that limit."""
        cfg, p = self.cfg, self.progress
        if cfg.max_steps and p.step >= cfg.max_steps:
            return "max_steps"
        if cfg.max_epochs and p.batch >= len(self.batches) and p.epoch + 1 >= cfg.max_epochs:
            return "max_epochs"
        return None

    def out_of_time(self, minutes: float) -> bool:
        return bool(self.cfg.time_budget) and minutes >= self.cfg.time_budget

    # ---- validation, checkpoints, the end ---------------------------------------------------
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

    def restore(self, state: dict) -> None:
        """Continue exactly where the checkpoint stopped: weights, optimizer, progress, RNGs
        (the rate follows from the step and this run's --warmup and --lr-scale)."""
        data = self.data
        progress = ckpt.restore_training(
            state, self.resumed_from, model=self.model, config=self.model.config,
            optimizer=self.optimizer, tokenizer=data.tokenizer, rank=self.rank,
            world_size=self.world, seed=self.cfg.seed,
            vocabulary=getattr(data, "tokenizer_path", None) or f"the {data.name} vocabulary")
        known = {f.name for f in dataclasses.fields(Progress)}
        self.progress = Progress(**{k: v for k, v in progress.items() if k in known})

    def save(self):
        """A checkpoint of the step just taken, written by rank 0 with every rank's RNGs; a
        second Ctrl-C waits until it is whole."""
        p, d, cfg = self.progress, self.data, self.cfg
        p.wall_time = self.run.wall_time()
        rngs = gather_objects(ckpt.rng_state(), self.world)  # every rank's dropout stream
        path = ckpt.checkpoint_path(self.run.dir, p.step)
        if self.rank == 0:
            with self.signals.hold():
                ckpt.save_training(
                    path, model=self.model, config=self.model.config, tokenizer=self.tokenizer,
                    optimizer=self.optimizer, progress=dataclasses.asdict(p), rng=rngs,
                    data={"dataset": d.name, "src": d.src_lang, "tgt": d.tgt_lang,
                          "data_dir": cfg.data_dir, "vocab_size": cfg.vocab_size,
                          "seed": cfg.seed},
                    train_config=cfg.to_dict(), world_size=self.world,
                    accum=self.batch_size.accum, micro_batch_tokens=self.batch_size.max_tokens)
                ckpt.prune_checkpoints(self.run.dir, cfg.keep_last)
        return path

    def finish(self, stop: str) -> dict:
        """A validation (unless just done or interrupted), the final checkpoint, the summary."""
        if self.validated_at != self.progress.step and stop != "interrupted":
            self.validate()
        path = self.save()
        averaged = self.average() if stop != "interrupted" else None
        if stop == "interrupted":
            self.run.note(f"interrupted at step {self.progress.step}; saved "
                          f"{display_path(path)}. Continue with --resume auto.")
        return self.run.finish(summarize(self, stop, path, averaged))

    def average(self) -> dict | None:
        """Section 6.1: the last ``cfg.average`` checkpoints (with ``patience``: those ending
        at the best validation) averaged into ``<run_dir>/averaged.pt``."""
        if self.cfg.average < 2 or self.rank != 0:
            return None
        best = best_val_step(self.run.dir) if self.cfg.patience else None
        paths = ckpt.average_last(self.run.dir, self.cfg.average, up_to=best)
        if not paths:
            return None
        self.run.note(f"averaged {len(paths)} checkpoints ({paths[0].name} .. {paths[-1].name})"
                      f" into {display_path(self.run.dir / 'averaged.pt')}")
        return {"checkpoint": str(self.run.dir / "averaged.pt"), "from": [p.name for p in paths]}

    def epoch_batches(self, epoch: int) -> list:
        return self.data.batches("train", self.batch_size.max_tokens, shuffle=True,
                                 seed=self.cfg.seed, epoch=epoch, rank=self.rank,
                                 world_size=self.world)


def nan_message(first: int, step: int, lr: float, run_dir) -> str:
    """What to do after a NaN between steps ``first`` and ``step``.  Checkpoints are written
    only at log steps that found the loss finite, so the newest one predates it."""
    where = f"at step {step}" if first == step else f"between steps {first} and {step}"
    last = ckpt.latest_checkpoint(run_dir)
    resume = (f"resume from the newest checkpoint (--resume {last}; if log.jsonl shows the loss "
              "already rising there, from an earlier one) with " if last else "")
    return (f"training stopped: the loss became NaN or infinite {where} (lr {lr:.3g}). Try: "
            f"{resume}a smaller learning rate (--lr-scale 0.5) or a longer warm-up (--warmup), "
            "gradient clipping (--clip-grad 1.0), or without --compile; on a GPU also --no-amp "
            f"to rule out bf16.  The steps are logged in {run_dir / 'log.jsonl'}.")


def build_model_config(cfg: TrainConfig, tokenizer) -> TransformerConfig:
    """The preset, sized to the tokenizer's vocabulary and special ids, then ``cfg.model``."""
    fields = dict(src_vocab_size=tokenizer.vocab_size, tgt_vocab_size=tokenizer.vocab_size,
                  pad_id=tokenizer.pad_id, bos_id=tokenizer.bos_id, eos_id=tokenizer.eos_id,
                  unk_id=tokenizer.unk_id)
    return TransformerConfig.from_preset(cfg.preset, **{**fields, **cfg.model})


def load_train_dataset(cfg: TrainConfig, rank: int = 0, world: int = 1):
    """The dataset ``cfg`` names, with its training and validation ids encoded.  Under
    torchrun rank 0 alone downloads it, trains the BPE vocabulary and writes the cache while
    the other ranks wait; they then read the cache."""
    def load():
        data = load_dataset(cfg.dataset, cfg.src, cfg.tgt, vocab_size=cfg.vocab_size,
                            data_dir=cfg.data_dir, seed=cfg.seed)
        for split in ("train", validation_split(data)):
            if split:
                data.kept_indices(split)  # encodes the split (and writes its cache file)
        return data

    data = load() if rank == 0 else None
    barrier()  # rank 0 has the corpus, the vocabulary and the token ids in the cache
    return data if rank == 0 else load()


def validation_split(dataset) -> str | None:
    return next((s for s in ("val", "valid", "validation", "dev") if s in dataset.splits), None)
