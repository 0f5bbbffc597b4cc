"""The notebooks' training run: train the model of a profile once, reuse it afterwards.

    run = notebook_run()            # trains (cpu: a few minutes) or reuses a finished run
    run.model, run.tokenizer, run.dataset, run.run_dir, run.summary, run.reused
    summary, reused = train_or_reuse(cfg, dataset)   # the same for any other small run

Notebook 06 trains this run and notebook 07 evaluates it; both call ``notebook_run`` so they
agree on the run directory and the settings: the recipe ``notebook-cpu`` or ``notebook-gpu`` of
``recipes.py`` (where their reasons are written), English -> German by default (the direction
of the paper's Table 2, here on Multi30k).  When two processes ask for the same run
at once (``make notebooks`` executes 06 and 07 in parallel), the second waits for the first to
finish training it, then reuses it.  A run is *finished* when its
``summary.json`` names a checkpoint that exists and its ``config.json`` holds the same training
settings as asked for now; a finished run is reused, never retrained silently.  On the cpu
profile a partial or mismatched run is retrained from scratch (it is short); on the gpu
profile an interrupted run is resumed from its latest checkpoint, and a run dir trained with
other settings is an error, not a silent retraining.

Run directories live in ``<repo>/runs/`` (git-ignored) or under ``$TRANSFORMER_RUNS_DIR``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path

from ..data import TranslationDataset
from ..engine import checkpoint as ckpt
from ..engine.rundir import RunDirBusy, RunLock, best_val_step, read_log
from ..engine.runtime import display_path
from ..engine.train import TrainConfig, train
from ..model import Transformer
from .profiles import device as profile_device
from .profiles import resolve_profile
from .recipes import RECIPES
from .reproduce import default_runs_dir, pick_data

# TrainConfig fields that do not change what is trained
_VOLATILE = {"run_dir", "overwrite", "resume", "progress", "data_dir"}


_DATA_CACHE: dict = {}


def notebook_dataset(data_dir=None, src="en", tgt="de"):
    """``(dataset, note)``: Multi30k src->tgt when available, else the numbers task (cached)."""
    key = (None if data_dir is None else str(data_dir), src, tgt)
    if key not in _DATA_CACHE:
        _DATA_CACHE[key] = pick_data(data_dir, src, tgt)
    return _DATA_CACHE[key]


def notebook_config(profile: str, dataset, data_dir=None, model=None) -> TrainConfig:
    """The training settings of the notebook run of ``profile`` on ``dataset``; ``model``
    changes model settings (``{"label_smoothing": 0.0}``), and the run directory's name says
    which."""
    variant = "".join(f"-{k}{v}" for k, v in sorted((model or {}).items()))
    name = f"notebook-{dataset.name}-{dataset.src_lang}-{dataset.tgt_lang}-{profile}{variant}"
    return RECIPES[f"notebook-{profile}"].config(
        dataset=dataset.name, src=dataset.src_lang, tgt=dataset.tgt_lang,
        data_dir=None if data_dir is None else str(data_dir), model=dict(model or {}),
        run_dir=str(default_runs_dir() / name))


def _settings(train_config: dict) -> dict:
    return {k: v for k, v in train_config.items() if k not in _VOLATILE}


def run_status(cfg: TrainConfig) -> tuple[str, dict | None]:
    """``("finished", summary)``, ``("partial", None)``, ``("other", None)`` (trained with
    other settings) or ``("missing", None)`` for the run dir of ``cfg``."""
    run_dir = Path(cfg.run_dir)
    config_file, summary_file = run_dir / "config.json", run_dir / "summary.json"
    if not config_file.is_file() and not ckpt.list_checkpoints(run_dir):
        return "missing", None
    try:
        saved = json.loads(config_file.read_text())["train_config"]
    except (OSError, ValueError, KeyError):
        return "other", None
    if _settings(saved) != _settings(json.loads(json.dumps(cfg.to_dict()))):
        return "other", None
    if summary_file.is_file():
        summary = json.loads(summary_file.read_text())
        if Path(summary.get("checkpoint", "")).is_file():
            return "finished", summary
    return "partial", None


def train_or_reuse(cfg: TrainConfig, dataset=None) -> tuple[dict, bool]:
    """``(summary, reused)``: the finished run in ``cfg.run_dir`` when it was trained with the
    settings of ``cfg`` (``run_status``), else ``train(cfg, dataset)`` afresh there.  For the
    notebooks' small runs (07's Table 3 rows): the first execution trains and tests them, a
    second one reuses them instead of training them again."""
    status, summary = run_status(cfg)
    if status == "finished":
        return summary, True
    # partial, or trained with other settings: these runs are short, train afresh
    (Path(cfg.run_dir) / "summary.json").unlink(missing_ok=True)
    return train(replace(cfg, overwrite=True, resume=None), dataset), False


@dataclass
class NotebookRun:
    """A finished notebook run: its model (the checkpoint with the best validation loss, in
    eval mode), data, directory and summary."""

    profile: str
    model: Transformer
    tokenizer: object
    dataset: TranslationDataset
    data_note: str
    run_dir: Path
    checkpoint: Path
    summary: dict
    reused: bool
    config: TrainConfig = field(repr=False)

    def log(self, kind: str | None = None) -> list[dict]:
        """The records of ``log.jsonl`` ("train" and "val"), optionally of one kind."""
        return read_log(self.run_dir, kind)

    def checkpoints(self) -> list[Path]:
        """The step checkpoints the run kept, oldest first."""
        return ckpt.list_checkpoints(self.run_dir)


def notebook_run(profile: str | None = None, *, src: str = "en", tgt: str = "de",
                 model: dict | None = None, train_if_missing: bool = True,
                 retrain: bool = False, data_dir=None, device=None) -> NotebookRun:
    """The notebook model of ``profile`` (default: ``profiles.resolve_profile()``), trained
    ``src`` -> ``tgt``, with the recipe's model settings changed by ``model`` if given (a
    variant gets its own run directory: notebook 06's ``{"label_smoothing": 0.0}`` twin).

    Reuses a finished run; otherwise trains it when ``train_if_missing`` (the gpu profile
    resumes an interrupted run), else raises ``FileNotFoundError`` saying what to run.
    ``retrain=True`` starts afresh even when a finished run exists.
    """
    profile = resolve_profile(profile)
    dataset, note = notebook_dataset(data_dir, src, tgt)
    cfg = notebook_config(profile, dataset, data_dir, model)
    status, summary = run_status(cfg)
    run_dir = Path(cfg.run_dir)
    if retrain or status != "finished":
        if not train_if_missing:
            raise FileNotFoundError(
                f"no finished notebook run in {run_dir} ({status}). Execute "
                "notebooks/06_training.ipynb first, or in Python: "
                f"`from transformer.apps.notebook import notebook_run; notebook_run({profile!r})`.")
        if status == "other" and profile == "gpu" and not retrain:
            raise FileExistsError(
                f"{run_dir} holds a run trained with other settings; delete it (or move it) "
                "or call notebook_run('gpu', retrain=True) to train the base model afresh.")
        resume = status == "partial" and profile == "gpu" and not retrain
        cfg.overwrite, cfg.resume = not resume, "auto" if resume else None
        if resume:
            print(f"resuming the interrupted run in {display_path(run_dir)} from "
                  f"{ckpt.latest_checkpoint(run_dir).name}")
        (run_dir / "summary.json").unlink(missing_ok=True)
        try:
            summary = train(cfg, dataset)
        except RunDirBusy:  # another process trains this very run (06 and 07 run in parallel)
            print(f"another process is training {display_path(run_dir)}; waiting for it to end")
            RunLock(run_dir).wait()
            return notebook_run(profile, src=src, tgt=tgt, model=model,
                                train_if_missing=train_if_missing, data_dir=data_dir,
                                device=device)
        reused = False
    else:
        reused = True
        print(f"reusing the finished run in {display_path(run_dir)}: {summary['steps']} steps, "
              f"{summary['wall_time']:.0f} s of training, checkpoint "
              f"{Path(summary['checkpoint']).name} (notebook_run(retrain=True) trains afresh)")
    if summary.get("stopped") == "time_budget" and cfg.max_steps:
        print(f"note: this run stopped at its time budget ({cfg.time_budget} min) after "
              f"{summary['steps']} of {cfg.max_steps} steps: the machine was slow or busy. "
              "notebook_run(retrain=True) tries again.")
    # the model to evaluate: the kept checkpoint with the best validation loss (the last one,
    # unless the run went on past its best, as the gpu profile's early stopping does)
    chosen = ckpt.checkpoints_up_to(run_dir, best_val_step(run_dir), 1)
    path = chosen[0] if chosen else Path(summary["checkpoint"])
    if path.name != Path(summary["checkpoint"]).name:
        print(f"evaluating {path.name}, the kept checkpoint with the best validation loss "
              f"(the run ended at {Path(summary['checkpoint']).name})")
    model, tokenizer, _ = ckpt.load_model(path, device or profile_device(profile))
    if tokenizer != dataset.tokenizer:
        raise ckpt.CheckpointError(
            f"{path} was trained with another tokenizer than the {dataset.name} vocabulary on "
            f"this machine; call notebook_run({profile!r}, retrain=True).")
    return NotebookRun(profile, model, tokenizer, dataset, note, run_dir, path, summary, reused,
                       cfg)
