"""``benchmarks/bench_encoder.py`` runs and reports every figure it promises.

A tiny model and one round: this checks that the script still works against
the encoder's API (it times the blocks through ``subsample`` and
``encode_subsampled``), not the figures themselves.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_encoder.py"
TINY_RUN = [
    "--output_size", "32", "--attention_heads", "2", "--linear_units", "64",
    "--num_blocks", "2", "--deep_num_blocks", "4", "--deep_unique_blocks", "2",
    "--lowrank_rank", "8", "--cnn_module_kernel", "7", "--input_size", "20",
    "--frames", "80", "--threads", "1", "--warmup", "0", "--repeats", "2",
    "--memory_runs", "1",
]  # fmt: skip


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "report.json"
    run = subprocess.run(
        [sys.executable, str(SCRIPT), *TINY_RUN, "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    return json.loads(out.read_text()), run.stdout


def test_every_candidate_is_timed_every_round(report):
    data, _ = report
    forward = data["no_sharing_and_lowrank"]["forward_seconds"]["wall"]
    assert set(forward) == {
        "espnet",
        "ours",
        "ours rank 8",
        "embed only",
        "ours, blocks",
        "ours rank 8, blocks",
    }
    assert all(len(samples) == 2 and min(samples) > 0 for samples in forward.values())


def test_verdicts_cover_both_lowrank_speedups(report):
    data, stdout = report
    targets = [v["target"] for v in data["verdicts"]]
    assert "[2] forward full/rank 8" in targets
    assert "[2] blocks full/rank 8" in targets
    flops = data["no_sharing_and_lowrank"]
    assert flops["flops_full"]["blocks"] > flops["flops_lowrank"]["blocks"]
    assert "the whole encoder's speedup is bounded by its FLOP ratio" in stdout


def test_impossible_round_count_is_refused():
    run = subprocess.run(
        [sys.executable, str(SCRIPT), "--repeats", "0"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 2
    assert "--repeats (0) must be >= 1" in run.stderr
