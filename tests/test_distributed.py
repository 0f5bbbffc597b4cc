"""Data parallelism: 2 CPU processes (gloo) train exactly like one process seeing both shards.

The single-process reference takes, at each step, rank 0's and rank 1's micro-batch as two
accumulated micro-batches.  Both normalise the summed loss by the step's target tokens over
both shards, so the gradients, hence the logged losses, gradient norms and final weights, agree.
"""

import json
import os
import socket

import pytest
import torch
import torch.multiprocessing as mp
from helpers import tiny_train_config, tokens_for

from transformer.data import load_dataset
from transformer.engine import checkpoint as ckpt
from transformer.engine.train import TrainConfig, train

STEPS = 5


def dataset():
    return load_dataset("copy", n_train=400, n_val=40, n_test=40)


def config(run_dir, **kw) -> TrainConfig:
    fields = dict(max_tokens=384, warmup=10, max_steps=STEPS, log_every=1)
    return tiny_train_config(run_dir, **{**fields, **kw})


class BothShards:
    """One process's view of what 2 ranks see: their batches interleaved, rank 0 first."""

    def __init__(self, inner):
        self.inner = inner

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def batches(self, split, max_tokens, *, rank=0, world_size=1, **kw):
        shards = [self.inner.batches(split, max_tokens, rank=r, world_size=2, **kw)
                  for r in range(2)]
        return [b for pair in zip(*shards) for b in pair]


def worker(rank: int, port: int, run_dir: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE="2", LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    train(config(run_dir, device="cpu"), dataset())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def train_records(run_dir):
    lines = (run_dir / "log.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["kind"] == "train"]


@pytest.mark.skipif(not torch.distributed.is_available(), reason="no torch.distributed")
def test_two_gloo_ranks_match_one_process_on_both_shards(tmp_path):
    mp.spawn(worker, args=(free_port(), str(tmp_path / "ddp")), nprocs=2, join=True)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        both = BothShards(dataset())
        single = train(config(tmp_path / "one", tokens_per_step=tokens_for(both, 384, 2)), both)
    finally:
        torch.set_num_threads(threads)

    ddp_log, one_log = train_records(tmp_path / "ddp"), train_records(tmp_path / "one")
    assert [r["step"] for r in ddp_log] == [r["step"] for r in one_log] == list(
        range(1, STEPS + 1))
    for a, b in zip(ddp_log, one_log):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-5)
        assert a["grad_norm"] == pytest.approx(b["grad_norm"], rel=1e-4)  # the same gradients
        assert a["total_tokens"] == b["total_tokens"]  # every rank's tokens counted
    ddp_state = ckpt.load_checkpoint(ckpt.latest_checkpoint(tmp_path / "ddp"))
    one_state = ckpt.load_checkpoint(single["checkpoint"])
    assert ddp_state["world_size"] == 2 and len(ddp_state["rng"]) == 2
    for name, tensor in one_state["model"].items():
        torch.testing.assert_close(ddp_state["model"][name], tensor, rtol=1e-4, atol=1e-5)


def batch_size_worker(rank: int, port: int, run_dir: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE="2", LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    # no dataset given: rank 0 builds it (here: generates it) while rank 1 waits
    train(config(run_dir, device="cpu", tokens_per_step=2000, max_tokens=1024, max_steps=4))


@pytest.mark.skipif(not torch.distributed.is_available(), reason="no torch.distributed")
def test_two_ranks_achieve_the_tokens_per_step_they_are_asked_for(tmp_path):
    mp.spawn(batch_size_worker, args=(free_port(), str(tmp_path / "run")), nprocs=2, join=True)
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["world_size"] == 2
    assert abs(summary["tokens_per_step"] - 2000) <= 0.10 * 2000, summary


def resume_worker(rank: int, port: int, run_dir: str, steps: int, resume) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE="2", LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    train(config(run_dir, device="cpu", max_steps=steps, save_every=1, resume=resume),
          dataset())


@pytest.mark.skipif(not torch.distributed.is_available(), reason="no torch.distributed")
def test_two_ranks_resume_auto_from_the_checkpoint_rank_0_picks(tmp_path):
    run_dir = tmp_path / "resume"
    mp.spawn(resume_worker, args=(free_port(), str(run_dir), 3, None), nprocs=2, join=True)
    mp.spawn(resume_worker, args=(free_port(), str(run_dir), 5, "auto"), nprocs=2, join=True)
    config_json = json.loads((run_dir / "config.json").read_text())
    assert config_json["resumed_from"].endswith("step_00000003.pt")
    assert json.loads((run_dir / "summary.json").read_text())["steps"] == 5
    assert [r["step"] for r in train_records(run_dir)] == [1, 2, 3, 4, 5]
