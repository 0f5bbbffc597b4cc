"""``train --dry-run``: what a run would do, printed before anything is downloaded or trained.

    python -m transformer train --preset base --dataset wmt14 --src en --tgt de --dry-run
    torchrun --nproc-per-node 8 -m transformer train --preset big ... --dry-run
    python -m transformer train --preset big ... --dry-run --world-size 8     (the same plan)

Model size, steps, tokens per step and how they split into micro-batches on the given number of
ranks, the checkpoint schedule and averaging, the download, and the projected wall time from a
throughput: ``--tokens-per-second`` if given, else a short timed probe on this machine when the
corpus is at hand.  Without the corpus the micro-batch size is estimated, and says so.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from ..data import DATASETS, available_offline, download_size, load_dataset, resolve_data_dir
from ..engine.batch_size import BatchSize, choose_batch_size, measured_batch_size
from ..engine.loss import loss_sum
from ..engine.runtime import autocast, move_batch, pick_device
from ..engine.schedule import transformer_lr
from ..engine.train import TrainConfig, build_model_config
from ..model import Transformer, TransformerConfig

# Target tokens per micro-batch as a share of its budget, measured on Multi30k de-en's training
# split (0.90, 0.88, 0.85, 0.78 at budgets 1024, 2048, 4096, 8192): used only until the corpus
# is at hand to measure it.
FILL_ESTIMATE = 0.8
PROBE_STEPS = 3


class _Vocab:  # the vocabulary facts build_model_config needs, before a tokenizer exists
    pad_id, bos_id, eos_id, unk_id = 0, 1, 2, 3

    def __init__(self, size: int):
        self.vocab_size = size


def _parameters(config: TransformerConfig) -> int:
    with torch.device("meta"):  # counts without allocating (big: 213M parameters)
        return Transformer(config).num_parameters()


def probe(cfg: TrainConfig, dataset, batch: BatchSize, config: TransformerConfig) -> float:
    """Target tokens per second of a few training micro-batches of that size on this
    machine's device (one rank; ranks multiply it, minus communication)."""
    device = pick_device(cfg.device)
    model = Transformer(config).to(device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    batches = dataset.batches("train", batch.max_tokens, shuffle=True, seed=cfg.seed)
    amp = autocast(device, cfg.amp)
    tokens, start = 0, None
    for i, batch in enumerate(batches[:PROBE_STEPS + 1]):
        if i == 1:  # the first step warms up (allocations, kernels)
            if device.type == "cuda":
                torch.cuda.synchronize()
            tokens, start = 0, time.perf_counter()
        src, tgt_in, tgt_out = move_batch(batch, device)
        with amp():
            loss = loss_sum(model(src, tgt_in), tgt_out, config)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        tokens += batch.n_tgt_tokens
    if device.type == "cuda":
        torch.cuda.synchronize()
    return tokens / max(time.perf_counter() - start, 1e-9) if start else 0.0


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:.1f} hours" if seconds >= 3600 else f"{seconds / 60:.0f} minutes"


def dry_run(cfg: TrainConfig, world_size: int = 1, tokens_per_second: float | None = None,
            recipe=None) -> str:
    """The plan of ``cfg`` on ``world_size`` ranks, as printable lines."""
    info = DATASETS[cfg.dataset]
    lines = [f"dry run: nothing is downloaded or trained ({world_size} rank(s))"]
    if recipe is not None:
        lines.append(f"recipe: {recipe.what}")
    at_hand = available_offline(cfg.dataset, cfg.src, cfg.tgt, cfg.data_dir)
    dataset = (load_dataset(cfg.dataset, cfg.src, cfg.tgt, vocab_size=cfg.vocab_size,
                            data_dir=cfg.data_dir, seed=cfg.seed) if at_hand else None)
    src, tgt = cfg.src or info.default_pair[0], cfg.tgt or info.default_pair[1]
    vocab = dataset.tokenizer if dataset else _Vocab(
        cfg.vocab_size or info.default_vocab_size(src, tgt))
    config = build_model_config(cfg, vocab)
    lines.append(f"model: {cfg.preset}, N={config.n_layers}, d_model={config.d_model}, "
                 f"d_ff={config.d_ff}, h={config.n_heads}, dropout={config.dropout}, "
                 f"{_parameters(config) / 1e6:.1f}M parameters with a shared vocabulary of "
                 f"{vocab.vocab_size}" + ("" if dataset else " (the size asked for)"))
    lines.append(f"data: {cfg.dataset} {src}->{tgt}: " + (
        "at hand in " + str(resolve_data_dir(cfg.data_dir) / cfg.dataset) if at_hand
        else _download_line(cfg)))
    limits = [f"{cfg.max_steps:,} steps" if cfg.max_steps else None,
              f"{cfg.max_epochs} epochs" if cfg.max_epochs else None,
              f"{cfg.time_budget} minutes" if cfg.time_budget else None,
              f"{cfg.patience} validations without improvement" if cfg.patience else None]
    lines.append("stops after: " + (", ".join(x for x in limits if x) or "nothing (set one)")
                 + f"; warm-up {cfg.warmup} steps, peak learning rate "
                 f"{transformer_lr(cfg.warmup, config.d_model, cfg.warmup, cfg.lr_scale):.2e}")
    if dataset is not None:
        batch = measured_batch_size(dataset, cfg.tokens_per_step, world_size, cfg.max_tokens)
        how = "measured on the corpus"
    else:
        batch = choose_batch_size(cfg.tokens_per_step, world_size, cfg.max_tokens,
                                  lambda budget: FILL_ESTIMATE * budget,
                                  min_tokens=257)  # the training filter keeps pairs <= 256
        how = f"estimated ({FILL_ESTIMATE:.0%} of a budget as target tokens; measured once " \
              "the corpus is at hand)"
    lines.append(f"batch: {batch.describe()}, {how}")
    if batch.warning():
        lines.append(batch.warning())
    every = f"every {cfg.save_every} steps" if cfg.save_every else "at the end"
    lines.append(f"checkpoints: {every}, the "
                 f"last {cfg.keep_last or 'all'} kept; " + (
                     f"the last {cfg.average} averaged into {Path(cfg.run_dir) / 'averaged.pt'}"
                     if cfg.average > 1 else "no averaging"))
    if recipe is not None:
        d = recipe.decode
        lines.append(f"decoding: beam {d['beam_size']}, alpha {d['alpha']}, max length input + "
                     f"{d.get('max_len_offset', 50)}")
    lines.append(_time_line(cfg, batch, tokens_per_second, dataset, config))
    return "\n".join(lines)


def _download_line(cfg: TrainConfig) -> str:
    return "not downloaded yet: " + download_size(cfg.dataset, cfg.src, cfg.tgt)["summary"]


def _time_line(cfg, batch, tokens_per_second, dataset, config) -> str:
    steps = cfg.max_steps
    if tokens_per_second is None and dataset is not None:
        per_rank = probe(cfg, dataset, batch, config)
        tokens_per_second = per_rank * batch.world_size
        source = (f"a {PROBE_STEPS}-micro-batch probe on {pick_device(cfg.device)}: "
                  f"{per_rank:,.0f} target tokens/s per rank, times {batch.world_size} ranks "
                  "(communication not counted)")
    elif tokens_per_second is not None:
        source = "--tokens-per-second"
    else:
        return ("time: unknown; pass --tokens-per-second N (target tokens per second, all "
                "ranks), or download the corpus for a timed probe")
    if not steps:
        return f"time: {tokens_per_second:,.0f} target tokens/s ({source}); no step limit set"
    seconds = steps * batch.expected / max(tokens_per_second, 1e-9)
    return (f"time: {steps:,} steps x {batch.expected:,.0f} target tokens at "
            f"{tokens_per_second:,.0f} tokens/s ({source}) = about {_hours(seconds)}")
