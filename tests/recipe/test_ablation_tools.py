"""The ablation's helpers: peer output normalization, train.log timing, and
the report that rewrites only its own part of docs/ablation.md."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
from pipeline_helpers import local_module

peers = local_module("peers")
report = local_module("ablation_report")


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("Mrs. Dashwood said, \u201cNo!\u201d", "MISSUS DASHWOOD SAID NO"),
        (
            "It's Mr. Palmer's well-known house.",
            "IT'S MISTER PALMER'S WELL KNOWN HOUSE",
        ),
        (
            "In 1811 there were 3 sisters & 2 brothers",
            "IN ONE THOUSAND EIGHT HUNDRED AND ELEVEN THERE WERE THREE SISTERS "
            "AND TWO BROTHERS",
        ),
        ("on the 2nd of May", "ON THE SECOND OF MAY"),
        ("  ...  ", ""),
        # Apostrophes at a word's edges are quotation marks in the peers' output.
        ("Dr. Jones said \u2018yes\u2019", "DOCTOR JONES SAID YES"),
    ],
)
def test_normalize_maps_peer_output_to_librispeech_conventions(
    raw: str, expected: str
) -> None:
    assert peers.normalize(raw) == expected


def test_epoch_seconds_reads_each_form_of_espnet_timespan(tmp_path: Path) -> None:
    log = tmp_path / "train.log"
    head = "[vm] 2026-11-26 (trainer:392) INFO: "
    log.write_text(
        head + "1epoch results: [train] loss=3.1, time=2 minutes and 13.53 seconds, "
        "total_count=149, [valid] loss=2.0, time=5.11 seconds, total_count=16\n"
        + head
        + "2epoch results: [train] loss=2.1, time=41.5 seconds, "
        "total_count=298, [valid] loss=1.9, time=4 seconds, total_count=32\n"
        + head
        + "3epoch results: [train] loss=1.1, time=1 hour, 2 minutes and "
        "3 seconds, total_count=447, [valid] loss=1.0, time=4 seconds, total_count=48\n"
        + head
        + "1epoch:train:1-10batch: loss=3.0, train_time=0.9\n"
    )
    assert report.epoch_seconds(log) == [133.53, 41.5, 3723.0]


def test_splice_keeps_the_prose_around_the_generated_part(tmp_path: Path) -> None:
    doc = tmp_path / "ablation.md"
    generated = f"{report.BEGIN}\nnew table\n{report.END}\n"
    assert report.splice(doc, generated).startswith("# Sharing ablation")
    doc.write_text(
        f"# Title\n\nIntro.\n\n{report.BEGIN}\nold table\n{report.END}\n\n"
        "## Reading\n\nWhat it shows.\n"
    )
    text = report.splice(doc, generated)
    assert "old table" not in text and "new table" in text
    assert text.startswith("# Title\n\nIntro.\n") and text.endswith("What it shows.\n")


def test_pocketsphinx_hypothesis_does_not_depend_on_earlier_utterances(
    tmp_path: Path,
) -> None:
    """Live CMN and noise tracking would carry the loud, clean utterance's
    statistics into the quiet, noisy one; the peer must decode every
    utterance as if it came first."""
    pytest.importorskip("pocketsphinx")
    audio_io = local_module("audio_io")

    def speak(name: str, text: str, *options: str) -> np.ndarray:
        wav = tmp_path / f"{name}.wav"
        subprocess.run(["espeak-ng", *options, "-w", str(wav), text], check=True)
        return audio_io.load_audio(str(wav), 16000)

    loud = speak("loud", "the weather was fine and the roads were dry", "-p", "90")
    quiet = 0.3 * speak(
        "quiet", "she walked to the village every morning", "-v", "en-us", "-p", "20"
    )
    quiet += 0.01 * np.random.default_rng(0).standard_normal(len(quiet))
    transcribe = peers.pocketsphinx_system()["transcribe"]
    alone = transcribe(quiet.astype(np.float32))
    transcribe(loud)
    assert alone and transcribe(quiet.astype(np.float32)) == alone


def test_plot_labels_of_coinciding_points_do_not_overlap() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.set_xlim(0, 2)
    ax.set_ylim(60, 100)
    # a0 and a1 of the real grid: 0.62M / 77.6% and 0.60M / 77.3%.
    points = [(0.62, 77.6, "a0_conformer_2x96"), (0.60, 77.3, "a1_conformer_6x60")]
    points.append((1.5, 70.7, "d_conformer_6x96"))
    report.label_points(ax, points)
    renderer = fig.canvas.get_renderer()
    boxes = [t.get_window_extent(renderer) for t in ax.texts]
    assert sorted(t.get_text() for t in ax.texts) == sorted(p[2] for p in points)
    assert not any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1 :])
    plt.close(fig)
