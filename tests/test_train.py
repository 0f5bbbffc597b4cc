"""The training loop: it learns, it stops on NaN, label smoothing leaves padding out."""

import json

import pytest
import torch
from helpers import tiny_train_config, tokens_for
from torch.utils._python_dispatch import TorchDispatchMode

from transformer import Transformer, TransformerConfig
from transformer.data import load_dataset
from transformer.engine.evaluate import evaluate_loss
from transformer.engine.loss import loss_sum
from transformer.engine.rundir import Run
from transformer.engine.train import TrainConfig, train


@pytest.fixture(scope="module")
def copy_data():
    return load_dataset("copy", n_train=2000, n_val=100, n_test=100)


def tiny(tmp_path, **kw) -> TrainConfig:
    return tiny_train_config(tmp_path / "run", **kw)


def records(run_dir, kind="train"):
    lines = (run_dir / "log.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["kind"] == kind]


def test_loss_drops_on_the_copy_task(tmp_path, copy_data):
    summary = train(tiny(tmp_path, max_steps=60), copy_data)
    logged = records(tmp_path / "run")
    assert [r["step"] for r in logged] == [1, 10, 20, 30, 40, 50, 60]
    assert logged[-1]["loss"] < logged[0]["loss"] - 1.0
    for r in logged:
        assert {"loss", "ppl", "lr", "grad_norm", "tokens_per_s", "wall_time", "epoch"} <= set(r)
        assert r["tokens_per_s"] > 0 and r["grad_norm"] > 0
    val = records(tmp_path / "run", "val")
    assert len(val) == 1 and val[0]["step"] == 60
    assert summary["stopped"] == "max_steps" and summary["steps"] == 60
    seen = [b for e in range(4) for b in copy_data.batches("train", 1024, epoch=e)][:60]
    assert summary["tokens"] == sum(b.n_tgt_tokens for b in seen)  # epochs roll over
    assert (tmp_path / "run" / "summary.json").exists()
    assert (tmp_path / "run" / "config.json").exists()


def test_nan_guard_stops_with_a_clear_message(tmp_path, copy_data):
    cfg = tiny(tmp_path, max_steps=20, log_every=1, lr_scale=float("inf"))
    with pytest.raises(FloatingPointError) as err:
        train(cfg, copy_data)
    message = str(err.value)
    assert "NaN or infinite at step 2" in message  # step 1's update broke the weights
    assert "--lr-scale" in message and "--warmup" in message and "log.jsonl" in message


def test_time_budget_and_epoch_limits(tmp_path, copy_data):
    s = train(tiny(tmp_path, time_budget=1e-6, log_every=5), copy_data)
    assert s["stopped"] == "time_budget" and s["steps"] == 1  # checked at the first log step
    s = train(tiny(tmp_path, max_epochs=1, tokens_per_step=tokens_for(copy_data, 1024, 4),
                   overwrite=True), copy_data)
    n = len(copy_data.batches("train", 1024))
    assert s["stopped"] == "max_epochs" and s["steps"] == -(-n // 4) and s["epochs"] == 1.0


def test_time_budget_holds_between_logging_steps(tmp_path, copy_data):
    # one log record per 10**6 steps: one process looks at its clock at every step
    s = train(tiny(tmp_path, time_budget=0.05, log_every=10**6, max_steps=50_000), copy_data)
    assert s["stopped"] == "time_budget" and 1 < s["steps"] < 50_000
    assert s["wall_time"] < 0.05 * 60 + 20  # 3 s budget; the final validation and save extra


class HostReads(TorchDispatchMode):
    """Counts the reads of a tensor's value by the host (``item``, ``float``, ``bool``, ``int``,
    ``tolist``, ``numpy``): on a GPU each is a wait for the device."""

    def __init__(self):
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func is torch.ops.aten._local_scalar_dense.default:
            self.count += 1
        return func(*args, **(kwargs or {}))


def test_only_log_steps_wait_for_the_device(tmp_path, copy_data, monkeypatch):
    """The GPU's utilisation depends on the host running ahead: a step that neither logs,
    validates nor saves reads no value back (Adam's own step counter excepted: on a GPU it is
    fused and reads nothing)."""
    reads, per_step = HostReads(), {}
    for name in ("tolist", "numpy"):  # reads that bypass the dispatcher
        real = getattr(torch.Tensor, name)
        monkeypatch.setattr(torch.Tensor, name, lambda self, *a, _real=real, **kw: (
            setattr(reads, "count", reads.count + 1), _real(self, *a, **kw))[1])
    real_adam = torch.optim.Adam.step

    def adam_step(self, *args, **kw):
        before = reads.count
        out = real_adam(self, *args, **kw)
        reads.count = before
        return out

    real_bar = Run.bar_update

    def bar_update(self, step):  # called once after every step
        per_step[step] = reads.count - sum(per_step.values())
        return real_bar(self, step)

    monkeypatch.setattr(torch.optim.Adam, "step", adam_step)
    monkeypatch.setattr(Run, "bar_update", bar_update)
    with reads:
        train(tiny(tmp_path, max_steps=24, log_every=8, save_every=12, keep_last=3,
                   model={"dropout": 0.1}), copy_data)
    logged = {r["step"] for r in records(tmp_path / "run")}
    assert logged == {1, 8, 12, 16, 24}  # every 8 steps, the first, the saves, the last
    # the reads of a log step come after bar_update: they count towards the next step
    after_log = {s + 1 for s in logged}
    assert all(n == 0 for step, n in per_step.items() if step not in after_log), per_step
    assert all(per_step[s] >= 1 for s in after_log if s in per_step), per_step


def test_checkpoints_are_written_every_save_every_steps_and_at_the_end(tmp_path, copy_data):
    train(tiny(tmp_path, max_steps=7, save_every=3, keep_last=0), copy_data)
    saved = sorted(p.name for p in (tmp_path / "run" / "checkpoints").glob("step_*.pt"))
    assert saved == ["step_00000003.pt", "step_00000006.pt", "step_00000007.pt"]


def test_compiled_training_matches_eager(tmp_path, copy_data, monkeypatch):
    # --compile (inductor on a GPU) through the aot_eager backend, which runs on any CPU in
    # seconds: the same weights after the same steps
    eager = train(tiny(tmp_path / "eager", max_steps=4), copy_data)
    real_compile, calls = torch.compile, []
    monkeypatch.setattr(torch, "compile", lambda m, **kw: calls.append(m) or real_compile(
        m, backend="aot_eager"))
    compiled = train(tiny(tmp_path / "compiled", max_steps=4, compile=True), copy_data)
    assert len(calls) == 1
    a = torch.load(eager["checkpoint"], weights_only=False)["model"]
    b = torch.load(compiled["checkpoint"], weights_only=False)["model"]
    assert a.keys() == b.keys()  # no "_orig_mod." prefixes in checkpoints
    assert all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)


def test_a_fresh_run_refuses_a_run_dir_with_checkpoints(tmp_path, copy_data):
    train(tiny(tmp_path, max_steps=2), copy_data)
    with pytest.raises(FileExistsError, match="--resume auto"):
        train(tiny(tmp_path, max_steps=2), copy_data)


def test_label_smoothing_ignores_padding():
    torch.manual_seed(0)
    c = TransformerConfig.from_preset("tiny", src_vocab_size=30, tgt_vocab_size=30,
                                      label_smoothing=0.1)
    model = Transformer(c).eval()
    rows = [([5, 6, 7, 2], [1, 8, 9], [8, 9, 2]), ([5, 2], [1, 8, 9, 10, 11], [8, 9, 10, 11, 2])]

    def pad(seqs):
        out = torch.zeros(len(seqs), max(map(len, seqs)), dtype=torch.long)
        for i, s in enumerate(seqs):
            out[i, : len(s)] = torch.tensor(s)
        return out

    src, tgt_in, tgt_out = (pad([r[i] for r in rows]) for i in range(3))
    logits = model(src, tgt_in)
    batch_loss = loss_sum(logits, tgt_out, c)
    alone = sum(loss_sum(model(pad([s]), pad([ti])), pad([to]), c) for s, ti, to in rows)
    assert batch_loss.item() == pytest.approx(alone.item(), rel=1e-5)
    # padded positions get no gradient
    logits.retain_grad()
    batch_loss.backward()
    assert logits.grad[0, 3:].abs().max() == 0 and logits.grad[0, :3].abs().max() > 0


def test_evaluate_loss_reports_perplexity_of_the_unsmoothed_nll(copy_data):
    model = Transformer(TransformerConfig.from_preset(
        "tiny", src_vocab_size=copy_data.tokenizer.vocab_size,
        tgt_vocab_size=copy_data.tokenizer.vocab_size))
    m = evaluate_loss(model, copy_data, "val", max_tokens=2048)
    assert m["ppl"] == pytest.approx(torch.tensor(m["nll"]).exp().item())
    assert m["loss"] > m["nll"] > 0  # smoothing adds the uniform term: higher than the NLL here
    assert m["tokens"] == sum(b.n_tgt_tokens for b in copy_data.batches("val", 2048))
