"""Where and how the model runs: device, torch.distributed, autocast, eval mode, seeds, provenance.

Everything here is plumbing shared by training, decoding and evaluation; none of it is in the
paper.  Collectives (``all_reduce``, ``gather_objects``) are no-ops in a single process.
"""

from __future__ import annotations

import copy
import os
import platform
import random
import signal
import subprocess
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path

import torch
import torch.distributed as dist


def pick_device(name: str = "auto", local_rank: int = 0) -> torch.device:
    """The device named (``auto``: cuda if available, else cpu).  Picking a CUDA device also
    turns cuDNN's attention off (``no_cudnn_attention``)."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", local_rank)
    if device.type == "cuda":
        no_cudnn_attention()
    return device


def no_cudnn_attention() -> None:
    """Keep ``F.scaled_dot_product_attention`` off cuDNN's kernel (to flash, memory-efficient
    or math).  PyTorch prefers cuDNN's on recent GPUs, and cuDNN builds a plan for every new
    shape, while batches of sentences have new shapes at almost every step: with it the base
    model trains on Multi30k about 5x slower (results/gpu-logs/2026-11-30a/README.md)."""
    torch.backends.cuda.enable_cudnn_sdp(False)


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


def all_reduce(tensor: torch.Tensor) -> torch.Tensor:
    """Sum ``tensor`` over ranks in place; a no-op in a single process."""
    if _distributed():
        dist.all_reduce(tensor)
    return tensor


def barrier() -> None:
    """Wait until every rank gets here; a no-op in a single process."""
    if _distributed():
        dist.barrier()


def gather_objects(obj, world_size: int) -> list:
    """Every rank's ``obj``, in rank order (a collective: all ranks must call it)."""
    if world_size == 1 or not _distributed():
        return [obj]
    out = [None] * world_size
    dist.all_gather_object(out, obj)
    return out


def reduce_values(values: list, device: torch.device) -> list[float]:
    """``values`` (numbers or 0-d tensors) summed over ranks, as Python floats.

    One collective for all of them, and the one wait for the device."""
    stacked = torch.stack([torch.as_tensor(v, device=device).double() for v in values])
    return all_reduce(stacked).tolist()


def wrap_ddp(model: torch.nn.Module, device: torch.device):
    """DDP with gradients all-reduced once per step; buffers are not broadcast: the sinusoid
    table is a constant.  (torch 2.13 deprecates ``broadcast_buffers`` in favour of
    ``forward_sync_buffers``, which would still sync at init; its warning says to keep
    ``broadcast_buffers=False`` until ``init_sync_buffers`` exists.)"""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*broadcast_buffers.*", category=FutureWarning)
        return torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device] if device.type == "cuda" else None,
            gradient_as_bucket_view=True, broadcast_buffers=False)


class StopSignals:
    """SIGINT (Ctrl-C) and SIGTERM as requests to stop, while the block runs.

    The first sets ``received`` (the signal's name) and prints ``note``: the loop stops at its
    next chance, with a checkpoint.  A second raises ``KeyboardInterrupt`` at once, except
    inside ``hold()`` (a checkpoint being written), which it lets finish first.  Handlers can
    only be set from the main thread; elsewhere signals keep Python's default handling.
    """

    def __init__(self, note):
        self.note, self.received, self.holding, self.pending = note, None, False, False

    def __enter__(self):
        self.previous = {}
        if threading.current_thread() is threading.main_thread():
            self.previous = {s: signal.signal(s, self.handle)
                             for s in (signal.SIGINT, signal.SIGTERM)}
        return self

    def __exit__(self, *exc):
        for s, h in self.previous.items():
            signal.signal(s, h)

    def handle(self, signum, frame):
        if self.received is None:
            self.received = signal.Signals(signum).name
            self.note(f"{self.received}: stopping with a checkpoint after this step (under "
                      "torchrun: at the next log step); send it again to stop at once")
        elif self.holding:
            self.pending = True
        else:
            raise KeyboardInterrupt

    @contextmanager
    def hold(self):
        """A second signal during the block waits for its end, then stops the run."""
        self.holding = True
        try:
            yield
        finally:
            self.holding = False
        if self.pending:
            raise KeyboardInterrupt


def autocast(device: torch.device, enabled: bool = True):
    """A context-manager factory: bf16 autocast on CUDA when ``enabled``, else float32."""
    if device.type == "cuda" and enabled:
        return lambda: torch.autocast("cuda", dtype=torch.bfloat16)
    return nullcontext


@contextmanager
def eval_mode(model: torch.nn.Module) -> Iterator[torch.nn.Module]:
    """Switch ``model`` to eval mode (no dropout) for the block, then restore its mode."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def in_dtype(model: torch.nn.Module, dtype=None) -> torch.nn.Module:
    """``model`` to run in ``dtype`` (a ``torch.dtype`` or a name of ``DTYPES``; None: as it is).

    Its own dtype gives ``model`` itself; another gives a copy whose parameters and buffers are
    cast, so ``model`` keeps its float32 weights.  Decoding in bfloat16 this way needs no casts
    at run time.  It pays only on a CPU with native bf16 (AVX512-BF16, AMX): beam search about
    1.2-1.4x as fast as float32 through oneDNN (``onednn.py``), with about one output in ten
    changed (results/bench/decode_cpu.json).  Other CPUs emulate bf16 and are slower; on a GPU
    the small model decodes about as fast as in float32 (results/bench/decode_cuda.json).
    """
    dtype = resolve_dtype(dtype)
    if dtype is None or model_dtype(model) == dtype:
        return model
    return copy.deepcopy(model).to(dtype)


def model_dtype(model: torch.nn.Module) -> torch.dtype:
    """The dtype of ``model``'s parameters (float32 for a module without any, or no module)."""
    first = next(model.parameters(), None) if isinstance(model, torch.nn.Module) else None
    return torch.float32 if first is None else first.dtype


def resolve_dtype(dtype) -> torch.dtype | None:
    """A ``torch.dtype`` from one, from a name in ``DTYPES``, or None from None."""
    if isinstance(dtype, str):
        if dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
        return DTYPES[dtype]
    return dtype


def move_batch(batch, device: torch.device):
    """``(src, tgt_in, tgt_out)`` of a ``Batch`` on ``device``; on CUDA through pinned memory,
    without waiting for the copy."""
    tensors = (batch.src, batch.tgt_in, batch.tgt_out)
    if device.type != "cuda":
        return tuple(t.to(device) for t in tensors)
    return tuple(t.pin_memory().to(device, non_blocking=True) for t in tensors)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)  # seeds every CUDA device too


REPO = Path(__file__).resolve().parents[2]  # the checkout, when the package runs from one
CHECKOUT = REPO if (REPO / "pyproject.toml").is_file() else None  # None: an installed package


def display_path(path) -> str:
    """``path`` as printed and recorded: relative to the checkout (or else to the working
    directory) when it lies inside, so that outputs carry no path of the machine they ran on."""
    path = Path(path).resolve()
    for base in (CHECKOUT, Path.cwd()):
        if base is not None and path.is_relative_to(base):
            return str(path.relative_to(base))
    return str(path)


def git_commit(repo: Path | None = None) -> str | None:
    """The checkout's commit (with "-dirty" for local changes), or None outside git."""
    repo = repo or REPO
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
