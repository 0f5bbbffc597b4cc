"""The benchmarks in bench/ still run (they are not tests, and nothing else would notice one
breaking): each on tiny settings, and what they compare must agree."""

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

import bench_decode  # noqa: E402
import bench_train  # noqa: E402


def test_bench_decode_greedy_part_runs_and_every_float32_decoder_agrees():
    threads = torch.get_num_threads()
    result = bench_decode.main(["--only", "greedy", "--repeats", "1", "--batch", "2",
                                "--src-len", "6", "--steps", "3", "--threads", "1"])
    torch.set_num_threads(threads)
    agree = result["greedy"]["agreement_with_this_package"]
    assert agree["torch.nn.Transformer"] == agree["baseline (before #14)"] == 1.0
    assert result["provenance"]["device"] == "cpu"
    assert bench_decode.provenance()["device"] == "cpu"  # bench_loss.py calls it so
    assert "linear" not in result and "beam" not in result  # --only: that part alone


@pytest.mark.skipif(not bench_decode.onednn.available(), reason="needs oneDNN's packed linear")
def test_bench_decode_linear_part_times_both_ways_for_every_shape():
    result = bench_decode.main(["--only", "linear", "--repeats", "1", "--linear-calls", "2",
                                "--threads", "1"])
    linear = result["linear"]
    assert len(linear) == 2 * len(bench_decode.LINEAR_SHAPES) and "greedy" not in result
    assert all(row[way]["us"] > 0 and row[way]["gflops"] > 0
               for row in linear.values() for way in ("pytorch", "onednn"))


def test_bench_train_runs_on_the_cpu():
    result = bench_train.main(["--device", "cpu", "--preset", "tiny", "--steps", "1",
                               "--warmup-steps", "0", "--tokens", "60", "--seq-len", "6"])
    cpu = result["cpu"]
    assert cpu["ours"]["ms_per_step"] > 0 and cpu["torch"]["ms_per_step"] > 0
    assert "cuda" not in result


def test_bench_train_profiles_a_step_and_names_where_its_time_goes(tmp_path):
    out = tmp_path / "profile.txt"
    result = bench_train.main(["--device", "cpu", "--preset", "tiny", "--steps", "1",
                               "--warmup-steps", "0", "--tokens", "60", "--seq-len", "6",
                               "--profile", str(out)])
    profile = result["cpu"]["ours"]["profile"]
    names = [row["name"] for row in profile["top"]]
    assert profile["file"] == "profile.txt" and "aten::mm" in out.read_text()
    assert any(name in ("aten::mm", "aten::addmm") for name in names)  # the model's matmuls
    shares = [row["share"] for row in profile["top"]]
    assert shares == sorted(shares, reverse=True) and 0 < sum(shares) <= 1.0001
