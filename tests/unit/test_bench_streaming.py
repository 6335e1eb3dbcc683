"""benchmarks/bench_streaming.py runs on a tiny streaming model and reports
every figure it promises, scored by sclite; not the figures themselves."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from tiny_asr import TEXT, train_tiny_ctc_model

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_streaming.py"

pytestmark = pytest.mark.skipif(
    shutil.which("sclite") is None and not Path("/usr/lib/sctk/bin/sclite").exists(),
    reason="needs sclite (Debian's sctk)",
)


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    root = tmp_path_factory.mktemp("bench")
    trained = train_tiny_ctc_model(root / "model", streaming=True)
    # One test set: the utterance the model learned, and the same audio
    # under a second name with a reference it cannot say (a known WER).
    data = root / "data" / "tones"
    data.mkdir(parents=True)
    wav = trained["wav_scp"].read_text().split()[1]
    (data / "wav.scp").write_text(f"a1 {wav}\na2 {wav}\n")
    (data / "text").write_text(f"a1 {TEXT}\na2 {TEXT} TACO\n")
    (data / "utt2spk").write_text("a1 a\na2 a\n")
    out = root / "report.json"
    # fmt: off
    arguments = [
        "--model", str(trained["exp"]), "--decoding", str(trained["decode"]),
        "--data", str(root / "data"), "--test_sets", "tones", "--chunks", "4 2",
        "--num_left_chunks", "2", "--block_chunk", "4", "--searches", "greedy",
        "--runtimes", "torch onnx pocketsphinx", "--out_dir", str(root / "out"),
        "--json", str(out), "--markdown", str(root / "table.md"),
        "--plot", str(root / "wer.png"),
    ]
    # fmt: on
    run = subprocess.run(
        [sys.executable, str(SCRIPT), *arguments],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    return dict(
        json=json.loads(out.read_text()),
        table=(root / "table.md").read_text(),
        plot=root / "wer.png",
        out=root / "out",
    )


def test_one_row_per_chunk_and_full_context(report):
    rows = report["json"]["rows"]
    assert [(r["runtime"], r["search"], r["chunk"]) for r in rows] == [
        ("torch", "greedy", 0),
        ("torch", "greedy", 4),
        ("torch", "greedy", 2),
        ("onnx", "greedy", 4),  # no full context: its caches are bounded
        ("onnx", "greedy", 2),
        ("pocketsphinx", None, None),  # live, on blocks of --block_chunk
    ]
    table = report["table"].splitlines()
    assert len([line for line in table if line.startswith("| ")]) == 1 + 6


def test_scores_come_from_sclite(report):
    # At the chunk it was trained with, the model says a1; a2's reference
    # has one word more: 1 deletion in 5 words.
    for row, tag in ((1, "torch_greedy_4"), (3, "onnx_greedy_4")):
        four = report["json"]["rows"][row]
        assert (report["out"] / tag / "tones" / "text").read_text() == (
            f"a1 {TEXT}\na2 {TEXT}\n"
        )
        assert four["scores"]["tones"]["wer"] == pytest.approx(20.0)
        # " TACO": 5 of 21 characters (spaces count).
        assert four["scores"]["tones"]["cer"] == pytest.approx(23.8)
        assert (report["out"] / tag / "tones" / "score_wer" / "result.txt").is_file()


def test_latency_and_compute_figures(report):
    # The tiny model: 8 ms hops, conv2d (window 7, stride 4) = 32 ms frames;
    # look-ahead 3 hops + half of a 256-point STFT frame = 32 ms.
    full, four, two, onnx_four, onnx_two, live = report["json"]["rows"]
    assert four["chunk_ms"] == 128 and four["algorithmic_latency_ms"] == 160
    assert two["chunk_ms"] == 64 and two["algorithmic_latency_ms"] == 96
    assert full["chunk_ms"] is None and "chunk_median_ms" not in full
    assert onnx_four["algorithmic_latency_ms"] == 160
    for row in (four, two, onnx_four, onnx_two):
        assert 0 < row["chunk_median_ms"] <= row["chunk_p95_ms"]
        assert row["chunk_p95_ratio"] > 0
    assert live["algorithmic_latency_ms"] is None and live["chunk_median_ms"] > 0
    for row in (full, four, two, onnx_four, onnx_two, live):
        assert 0 < row["final_median_ms"] <= row["final_p95_ms"]
        assert row["peak_rss_mib"] > 10
    # The ONNX recognizer runs without torch, in less memory.
    assert [r["torch_imported"] for r in (full, onnx_four)] == [True, False]
    assert onnx_four["peak_rss_mib"] < four["peak_rss_mib"]
    assert report["plot"].stat().st_size > 1000
