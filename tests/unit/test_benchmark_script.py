"""The benchmark scripts run and report every figure they promise.

A tiny model and one or two rounds: this checks that ``bench_encoder.py``
and ``bench_drift.py`` still work against the encoder's API (they time the
blocks through ``subsample`` and ``encode_subsampled``), not the figures
themselves.
"""

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
SCRIPT = BENCHMARKS / "bench_encoder.py"
TINY_MODEL = [
    "--output_size", "32", "--attention_heads", "2", "--linear_units", "64",
    "--num_blocks", "2", "--lowrank_rank", "8", "--cnn_module_kernel", "7",
    "--input_size", "20", "--frames", "80", "--threads", "1",
]  # fmt: skip
TINY_RUN = TINY_MODEL + [
    "--deep_num_blocks", "4", "--deep_unique_blocks", "2", "--warmup", "0",
    "--repeats", "2", "--memory_runs", "1",
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


def test_drift_windows_are_written_and_drawn(tmp_path):
    table, figure = tmp_path / "drift.csv", tmp_path / "drift.png"
    run = subprocess.run(
        [sys.executable, str(BENCHMARKS / "bench_drift.py"), *TINY_MODEL,
         "--seconds", "1", "--window", "0.25", "--csv", str(table),
         "--plot", str(figure)],
        capture_output=True,
        text=True,
        timeout=300,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    with table.open() as rows:
        windows = list(csv.DictReader(rows))
    assert len(windows) >= 3
    for window in windows:
        full, low = float(window["full_ms"]), float(window["lowrank_ms"])
        assert full > 0 and low > 0 and int(window["pairs"]) >= 1
        assert float(window["ratio"]) == pytest.approx(full / low, rel=0.02)
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"all {len(windows)} windows: median ratio" in run.stdout


def test_drift_window_longer_than_the_run_is_refused():
    run = subprocess.run(
        [sys.executable, str(BENCHMARKS / "bench_drift.py"), "--seconds", "5",
         "--window", "10"],
        capture_output=True,
        text=True,
        timeout=120,
    )  # fmt: skip
    assert run.returncode == 2
    assert "--window (10.0) must be > 0 and <= --seconds (5.0)" in run.stderr


def test_startup_benchmark_refuses_what_it_cannot_time(tmp_path):
    script = BENCHMARKS / "bench_startup.py"
    zero = subprocess.run(
        [sys.executable, str(script), "--model", __file__, "--runs", "0"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    missing = subprocess.run(
        [sys.executable, str(script), "--model", str(tmp_path / "none.zip")],
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert zero.returncode == 2 and "--runs (0) must be >= 1" in zero.stderr
    assert missing.returncode == 2 and "--model: no such file" in missing.stderr
