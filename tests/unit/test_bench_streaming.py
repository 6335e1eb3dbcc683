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
    run = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--model",
            str(trained["exp"]),
            "--decoding",
            str(trained["decode"]),
            "--data",
            str(root / "data"),
            "--test_sets",
            "tones",
            "--chunks",
            "4 2",
            "--num_left_chunks",
            "2",
            "--block_chunk",
            "4",
            "--search",
            "greedy",
            "--runtimes",
            "torch",
            "--out_dir",
            str(root / "out"),
            "--json",
            str(out),
            "--markdown",
            str(root / "table.md"),
            "--plot",
            str(root / "wer.png"),
        ],  # fmt: skip
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
    assert [(r["runtime"], r["chunk"]) for r in rows] == [
        ("torch", 0),
        ("torch", 4),
        ("torch", 2),
    ]
    table_rows = [
        line for line in report["table"].splitlines() if line.startswith("| torch")
    ]
    assert len(table_rows) == 3


def test_scores_come_from_sclite(report):
    # At the chunk it was trained with, the model says a1; a2's reference
    # has one word more: 1 deletion in 5 words.
    four = report["json"]["rows"][1]
    assert (report["out"] / "torch_4" / "tones" / "text").read_text() == (
        f"a1 {TEXT}\na2 {TEXT}\n"
    )
    assert four["scores"]["tones"]["wer"] == pytest.approx(20.0)
    # " TACO": 5 of 21 characters (spaces count).
    assert four["scores"]["tones"]["cer"] == pytest.approx(23.8)
    assert (report["out"] / "torch_4" / "tones" / "score_wer" / "result.txt").is_file()


def test_latency_and_compute_figures(report):
    # The tiny model: 8 ms hops, conv2d (window 7, stride 4) = 32 ms frames;
    # look-ahead 3 hops + half of a 256-point STFT frame = 32 ms.
    full, four, two = report["json"]["rows"]
    assert four["chunk_ms"] == 128 and four["algorithmic_latency_ms"] == 160
    assert two["chunk_ms"] == 64 and two["algorithmic_latency_ms"] == 96
    assert full["chunk_ms"] is None and "chunk_median_ms" not in full
    for row in (four, two):
        assert 0 < row["chunk_median_ms"] <= row["chunk_p95_ms"]
        assert row["chunk_p95_ratio"] > 0
    for row in (full, four, two):
        assert 0 < row["final_median_ms"] <= row["final_p95_ms"]
        assert row["peak_rss_mib"] > 50  # torch alone is more
        assert row["torch_imported"]
    assert report["plot"].stat().st_size > 1000
