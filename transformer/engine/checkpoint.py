"""Checkpoints: atomic saving, strict loading, exact resumption, averaging (Section 6.1).

A checkpoint is one ``torch.save`` file holding everything needed to continue training or to
translate: the model weights and config, the tokenizer (its file's bytes), the optimizer and
the step, every rank's random-number-generator states and the data position
(epoch, next batch).  The file is a zip archive whose records carry CRC-32 checksums; they are
verified on every load, so a file changed after it was written is refused, never used.
Layout of a run directory::

    <run_dir>/checkpoints/step_00001000.pt   one per save, the last ``keep_last`` kept

The paper's base model is evaluated with the average of its last 5 checkpoints, written
every 10 minutes (Section 6.1); ``average_checkpoints`` does that averaging.
"""

from __future__ import annotations

import hashlib
import os
import random
import re
import tempfile
import zipfile
from pathlib import Path

import torch

from ..data import SubwordTokenizer
from ..model import Transformer, TransformerConfig
from .runtime import display_path, gather_objects, seed_everything

FORMAT = "transformer-checkpoint/1"
_STEP_FILE = re.compile(r"^step_(\d+)\.pt$")


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used, with what is wrong and what to do."""


# ---------------------------------------------------------------------------------------------
# files

def checkpoint_dir(run_dir: str | Path) -> Path:
    return Path(run_dir) / "checkpoints"


def checkpoint_path(run_dir: str | Path, step: int) -> Path:
    return checkpoint_dir(run_dir) / f"step_{step:08d}.pt"


def list_checkpoints(run_dir: str | Path) -> list[Path]:
    """The run's step checkpoints, oldest first."""
    folder = checkpoint_dir(run_dir)
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _STEP_FILE.match(p.name))]
    return [p for _, p in sorted(found)]


def step_of(path: str | Path) -> int:
    """The optimizer step a step checkpoint was written at (``step_00001000.pt`` -> 1000)."""
    match = _STEP_FILE.match(Path(path).name)
    if not match:
        raise ValueError(f"{path} is not a step checkpoint (step_<digits>.pt)")
    return int(match.group(1))


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    paths = list_checkpoints(run_dir)
    return paths[-1] if paths else None


def latest_intact_checkpoint(run_dir: str | Path, report=print) -> Path | None:
    """The newest step checkpoint that passes ``verify_checkpoint``.  Damaged newer ones are
    renamed ``<name>.damaged`` (kept, never listed again) and reported."""
    for path in reversed(list_checkpoints(run_dir)):
        try:
            verify_checkpoint(path)
            return path
        except CheckpointError as e:
            path.rename(path.with_name(path.name + ".damaged"))
            report(f"{e} Renamed it to {path.name}.damaged; looking for an earlier one.")
    return None


def resume_checkpoint(resume: str | Path | None, run_dir: str | Path, rank: int = 0,
                      world_size: int = 1) -> str | Path | None:
    """The checkpoint a run continues from: ``resume`` itself, or for "auto" the run dir's
    newest intact one, chosen by rank 0 (which alone renames damaged ones) for every rank.
    "auto" in a run dir without checkpoints starts afresh, and says so."""
    if resume != "auto":
        return resume
    found = latest_intact_checkpoint(run_dir) if rank == 0 else None
    found = gather_objects(found, world_size)[0]
    if found is None and rank == 0:
        print(f"--resume auto: no checkpoint in {display_path(run_dir)}; starting afresh")
    return found


def remove_partial_saves(run_dir: str | Path) -> list[Path]:
    """Delete the temporary files of saves that a kill interrupted (``.<name>.<random>.tmp``
    beside where the checkpoint would have gone); return what was removed."""
    folders = [Path(run_dir), checkpoint_dir(run_dir)]
    found = [p for d in folders if d.is_dir() for p in d.glob(".*.tmp")]
    for p in found:
        p.unlink(missing_ok=True)
    return found


def average_last(run_dir: str | Path, n: int, up_to: int | None = None) -> list[Path]:
    """Section 6.1: average the run's last ``n`` checkpoints (written at or before step
    ``up_to``, if given) into ``<run_dir>/averaged.pt``; return the paths averaged, [] when
    fewer than two exist."""
    paths = checkpoints_up_to(run_dir, up_to, n)
    if len(paths) < 2:
        return []
    write_average(paths, Path(run_dir) / "averaged.pt")
    return paths


def checkpoints_up_to(run_dir: str | Path, step: int | None, n: int) -> list[Path]:
    """The last ``n`` kept checkpoints written at or before ``step`` (any step if None; all
    kept ones if none is that early): what Section 6.1 averages, ending at the best one."""
    paths = list_checkpoints(run_dir)
    if step is not None:
        paths = [p for p in paths if step_of(p) <= step] or paths
    return paths[-n:] if n > 0 else []


def save_checkpoint(state: dict, path: str | Path) -> Path:
    """Write ``state`` to ``path`` atomically: a crash mid-write leaves the old file or none.

    Writes a temporary file in the same directory, flushes it to disk, then renames it over
    ``path`` (``os.replace`` is atomic on one file system).

    A write that fails (ENOSPC, EFBIG, EIO ...) raises ``OSError`` with the system's errno and
    strerror and ``path`` as its filename, and leaves no temporary file: ``torch.save`` itself
    reports a failed write as a ``RuntimeError`` ("unexpected pos ...") when it closes the
    archive, so the file's writes go through ``_RecordingFile``, which keeps the first error.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            recording = _RecordingFile(f)
            try:
                torch.save(state, recording)
            except RuntimeError as e:
                if recording.error is None:
                    raise
                raise _write_error(recording.error, path) from e
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        Path(tmp).unlink(missing_ok=True)
        error = _write_error(e, path)
        if error is e:
            raise
        raise error from e
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    try:  # make the rename itself durable
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:
        pass  # some file systems cannot fsync a directory
    return path


class _RecordingFile:
    """A binary file for ``torch.save`` that remembers the first ``OSError`` of a write or a
    flush (PyTorch's writer turns it into a ``RuntimeError`` without the errno)."""

    def __init__(self, file):
        self.file, self.error = file, None

    def write(self, data) -> int:
        try:
            return self.file.write(data)
        except OSError as e:
            self.error = self.error or e
            raise

    def flush(self) -> None:
        try:
            self.file.flush()
        except OSError as e:
            self.error = self.error or e
            raise


def _write_error(e: OSError, path: Path) -> OSError:
    """``e`` naming ``path``: the same errno and strerror (so the same OSError subclass)."""
    if e.filename == str(path):
        return e
    if e.errno is None:
        return OSError(f"could not write {path}: {e}")
    return OSError(e.errno, e.strerror, str(path))


def prune_checkpoints(run_dir: str | Path, keep_last: int) -> list[Path]:
    """Delete all but the newest ``keep_last`` step checkpoints; return the deleted paths."""
    if keep_last <= 0:
        return []
    old = list_checkpoints(run_dir)[:-keep_last]
    for p in old:
        p.unlink(missing_ok=True)
    return old


def _unreadable(path: Path, e: Exception) -> CheckpointError:
    lines = [x.strip() for x in str(e).splitlines() if x.strip()] or [""]
    reason = next((x for x in lines if "Unpickler error" in x), lines[0])
    return CheckpointError(
        f"checkpoint {path} ({path.stat().st_size} bytes) cannot be read: "
        f"{type(e).__name__}: {reason}. The file is truncated or corrupt (a copy cut short, a "
        "disk that filled up, or a file not written by this project). Use an earlier "
        f"checkpoint from {path.parent} or copy the file again.")


def verify_checkpoint(path: str | Path) -> None:
    """Raise ``CheckpointError`` unless every record of the file matches its CRC-32.

    ``torch.load`` does not check the archive's checksums: a file with flipped bytes inside
    its weights would load and silently give a damaged model.
    """
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (zipfile.BadZipFile, EOFError, ValueError, OSError) as e:
        raise _unreadable(path, e) from e
    if bad is not None:
        raise CheckpointError(
            f"checkpoint {path} is damaged: its record {bad!r} fails the archive's CRC check "
            "(the bytes changed after it was written: a failing disk or a broken copy). It was "
            f"not used. Use an earlier checkpoint from {path.parent} or copy the file again.")


def load_checkpoint(path: str | Path, map_location="cpu") -> dict:
    """Read a checkpoint, or raise ``CheckpointError`` saying what is wrong and what to do."""
    path = Path(path)
    if not path.is_file():
        hint = ""
        if path.is_dir():
            found = list_checkpoints(path) or list_checkpoints(path.parent)
            hint = f" It is a directory; did you mean {found[-1]}?" if found else ""
        raise CheckpointError(f"checkpoint {path}: no such file.{hint}")
    verify_checkpoint(path)
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:
        raise _unreadable(path, e) from e
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        found = state.get("format") if isinstance(state, dict) else type(state).__name__
        raise CheckpointError(
            f"checkpoint {path} is not a checkpoint of this project (format {found!r}, "
            f"expected {FORMAT!r}). Write checkpoints with `python -m transformer train` "
            "or `python -m transformer average`."
        )
    missing = {"model", "model_config"} - state.keys()
    if missing:
        raise CheckpointError(f"checkpoint {path} lacks {sorted(missing)}; it is incomplete.")
    return state


# ---------------------------------------------------------------------------------------------
# model weights and config

def check_config(state: dict, config: TransformerConfig, path: str | Path = "checkpoint") -> None:
    """Raise ``CheckpointError`` if the checkpoint was trained with another model config."""
    saved, current = state["model_config"], config.to_dict()
    diff = {k: (saved.get(k), current.get(k)) for k in saved.keys() | current.keys()
            if saved.get(k) != current.get(k)}
    if diff:
        lines = "; ".join(f"{k}: checkpoint {a!r}, current {b!r}" for k, (a, b) in sorted(
            diff.items()))
        raise CheckpointError(
            f"checkpoint {path} was written for a different model: {lines}. "
            "Resume with the same --preset and model options (they are stored in the "
            "checkpoint), or start a new run in another --run-dir."
        )


def load_model_state(model: torch.nn.Module, state_dict: dict, path: str | Path = "checkpoint"):
    """Strict ``load_state_dict``: every parameter present, nothing extra, shapes equal."""
    try:
        model.load_state_dict(state_dict, strict=True)
    except RuntimeError as e:
        raise CheckpointError(
            f"checkpoint {path}: its weights do not fit the model ({e}). "
            "Nothing was loaded partially; rebuild the model from the checkpoint's "
            "model_config (transformer.engine.checkpoint.load_model does)."
        ) from e


def build_model(state: dict, path: str | Path = "checkpoint", device="cpu") -> Transformer:
    """The model a checkpoint describes, with its weights, in eval mode."""
    try:
        config = TransformerConfig.from_dict(state["model_config"])
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"checkpoint {path}: its model_config is invalid: {e}") from e
    model = Transformer(config)
    load_model_state(model, state["model"], path)
    return model.to(device).eval()


def load_model(path: str | Path, device="cpu"):
    """Rebuild ``(model, tokenizer, state)`` from one checkpoint file, ready to translate."""
    state = load_checkpoint(path)
    return build_model(state, path, device), load_tokenizer(state, path), state


# ---------------------------------------------------------------------------------------------
# tokenizer: stored inside the checkpoint so that one file is enough to translate

def tokenizer_record(tokenizer, source: str | Path | None = None) -> dict:
    """The tokenizer's saved file as bytes, with a digest identifying it."""
    with tempfile.TemporaryDirectory() as tmp:
        file = Path(tmp) / "tokenizer.json"
        tokenizer.save(file)
        blob = file.read_bytes() if file.is_file() else None
    return {"blob": blob, "sha256": hashlib.sha256(blob).hexdigest() if blob else None,
            "path": None if source is None else str(source),
            "vocab_size": int(tokenizer.vocab_size)}


def load_tokenizer(state: dict, path: str | Path = "checkpoint") -> SubwordTokenizer:
    record = state.get("tokenizer") or {}
    if record.get("blob"):
        with tempfile.TemporaryDirectory() as tmp:
            file = Path(tmp) / "tokenizer.json"
            file.write_bytes(record["blob"])
            return SubwordTokenizer.load(file)
    if record.get("path") and Path(record["path"]).exists():
        return SubwordTokenizer.load(record["path"])
    raise CheckpointError(f"checkpoint {path} holds no tokenizer; it cannot translate text.")


def check_tokenizer(checkpoint: dict | str | Path, tokenizer, where: str | Path | None = None,
                    path: str | Path | None = None, fix: str | None = None) -> None:
    """Raise ``CheckpointError`` unless ``tokenizer``, the vocabulary in use (read from the
    file ``where``), is the one the checkpoint was trained with.

    A model's token ids mean something only with its own vocabulary: a cache trained again or
    changed since would give them other meanings, silently (wrong translations, a resumed run
    that learns the new ids over the old ones and saves them with the new file).  Call it
    wherever a checkpoint meets a vocabulary it does not carry itself: resuming, evaluating
    on a dataset.  ``checkpoint`` is a state from ``load_checkpoint`` or a checkpoint file
    (``path`` names it in the message; default: the file); ``fix`` replaces the advice.
    """
    if not isinstance(checkpoint, dict):
        path = checkpoint if path is None else path
        checkpoint = load_checkpoint(checkpoint)
    path = "checkpoint" if path is None else path
    saved = load_tokenizer(checkpoint, path)
    if saved == tokenizer:
        return
    source = (checkpoint.get("tokenizer") or {}).get("path")
    trained = f"{_describe(saved)}" + (f", saved from {source}" if source else "")
    where = "the vocabulary in use" if where is None else where
    fix = fix or ("Use the data cache the model was trained with (--data-dir), or train a new "
                  "model with this vocabulary in another --run-dir")
    raise CheckpointError(
        f"checkpoint {path} was trained with another vocabulary ({trained}) than {where} "
        f"({_describe(tokenizer)}); its token ids would mean other words. {fix}.")


def _describe(tokenizer) -> str:
    """``"8000 tokens, sha256 1a2b3c4d5e6f"``: enough to tell two vocabularies apart."""
    digest = hashlib.sha256(tokenizer.to_str().encode("utf-8")).hexdigest()[:12]
    return f"{tokenizer.vocab_size} tokens, sha256 {digest}"


# ---------------------------------------------------------------------------------------------
# training state: everything ``train`` needs to continue exactly where it stopped

def save_training(path: str | Path, *, model, config: TransformerConfig, tokenizer: dict,
                  optimizer, progress: dict, rng: list, **meta) -> Path:
    """Write a resumable checkpoint: weights and config, tokenizer record (from
    ``tokenizer_record``), optimizer, ``progress`` (step, epoch, batch, ...; the learning rate
    follows from the step), every rank's generator states ``rng``, and ``meta`` (data,
    train_config, world_size, ...).

    A write that fails (a full disk ...) raises ``CheckpointError`` in one line that says
    whether the previous checkpoint of the run is intact: the atomic write leaves it so.
    """
    state = {"format": FORMAT, "model": model.state_dict(), "model_config": config.to_dict(),
             "tokenizer": tokenizer, "optimizer": optimizer.state_dict(),
             "step": progress["step"], "progress": dict(progress), "rng": rng, **meta,
             "torch": str(torch.__version__)}
    previous = latest_checkpoint(Path(path).parent.parent)
    try:
        return save_checkpoint(state, path)
    except OSError as e:
        kept = (f"the previous checkpoint {previous} is intact" if previous
                else "no earlier checkpoint exists")
        raise CheckpointError(
            f"could not write checkpoint {path}: {e.strerror or e}; {kept} (nothing partial "
            "was left). Free space or choose another --run-dir, then continue with --resume "
            "auto.") from e


def restore_training(state: dict, path: str | Path, *, model, config: TransformerConfig,
                     optimizer, tokenizer, vocabulary: str, rank: int = 0,
                     world_size: int = 1, seed: int = 0) -> dict:
    """Load a checkpoint written by ``save_training`` into ``model`` and ``optimizer``, and
    this rank's generator states (with another number of ranks dropout cannot repeat exactly:
    the generators are seeded from ``seed``, the rank and the step instead); return its
    progress.

    Refused: a checkpoint trained with another vocabulary than ``tokenizer`` (read from
    ``vocabulary``), for another config, or without optimizer state (an average)."""
    check_tokenizer(state, tokenizer, where=vocabulary, path=path,
                    fix="Resume with the --data-dir and --vocab-size the run was trained with, "
                        "or start a new run in another --run-dir")
    check_config(state, config, path)
    load_model_state(model, state["model"], path)
    if "optimizer" not in state:
        raise CheckpointError(f"checkpoint {path} holds no optimizer state (an average?); it "
                              "can be translated with but not resumed.")
    optimizer.load_state_dict(state["optimizer"])
    progress, rngs = state["progress"], state["rng"]
    if len(rngs) == world_size:
        set_rng_state(rngs[rank])
    else:
        seed_everything(seed + rank + 1000 * progress["step"])
    return progress


# ---------------------------------------------------------------------------------------------
# random-number generators (dropout masks): saved per rank so a resumed run repeats exactly

def rng_state() -> dict:
    """Python's and torch's generators, and the current CUDA device's (one per rank)."""
    state = {"python": random.getstate(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


# ---------------------------------------------------------------------------------------------
# checkpoint averaging (Section 6.1)

def average_checkpoints(paths) -> dict:
    """The element-wise mean of the model parameters of ``paths`` (a model ``state_dict``).

    Section 6.1: "For the base models, we used a single model obtained by averaging the last
    5 checkpoints".  Every checkpoint must hold the same model config and parameter shapes.
    """
    paths = [Path(p) for p in paths]
    if not paths:
        raise ValueError("average_checkpoints needs at least one checkpoint")
    first = load_checkpoint(paths[0])
    total = {k: v.detach().double().clone() if v.is_floating_point() else v
             for k, v in first["model"].items()}
    for path in paths[1:]:
        state = load_checkpoint(path)
        check_config(state, TransformerConfig.from_dict(first["model_config"]), path)
        if state["model"].keys() != total.keys():
            raise CheckpointError(f"checkpoint {path} has other parameters than {paths[0]}")
        for k, v in state["model"].items():
            if v.is_floating_point():
                total[k] += v.double()
    dtypes = {k: v.dtype for k, v in first["model"].items()}
    return {k: (v / len(paths)).to(dtypes[k]) if v.is_floating_point() else v
            for k, v in total.items()}


def write_average(paths, out: str | Path) -> Path:
    """Average ``paths`` into one checkpoint at ``out`` that ``translate``/``evaluate`` load.

    It keeps the last checkpoint's config, tokenizer and data description, and no optimizer
    state (an average is for decoding, not for resuming).
    """
    paths = [Path(p) for p in paths]
    last = load_checkpoint(paths[-1])
    state = {k: v for k, v in last.items() if k in (
        "format", "model_config", "tokenizer", "data", "train_config", "step", "torch")}
    state["model"] = average_checkpoints(paths)
    state["averaged_from"] = [str(p) for p in paths]
    return save_checkpoint(state, out)
