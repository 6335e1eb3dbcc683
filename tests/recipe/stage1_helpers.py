"""Helpers for the stage-1 tests: import path of egs/librispeech/asr1/local
and tiny LibriSpeech-layout trees with real flac audio."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import soundfile

RECIPE_DIR = Path(__file__).resolve().parents[2] / "egs" / "librispeech" / "asr1"
LOCAL_DIR = RECIPE_DIR / "local"
if str(LOCAL_DIR) not in sys.path:
    sys.path.insert(0, str(LOCAL_DIR))


def write_flac(path: Path, seconds: float = 0.2, sample_rate: int = 16000, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    audio = (0.1 * rng.standard_normal(int(seconds * sample_rate))).astype(np.float32)
    soundfile.write(str(path), audio, sample_rate, format="FLAC", subtype="PCM_16")
    return path


def make_chapter(subset_dir: Path, reader: str, chapter: str, texts: dict[str, str],
                 with_audio: bool = True) -> Path:
    """Write one chapter: ``texts`` maps utterance number ("0000") to transcript."""
    chapter_dir = subset_dir / reader / chapter
    chapter_dir.mkdir(parents=True, exist_ok=True)
    lines = []
    for number, text in texts.items():
        utt = f"{reader}-{chapter}-{number}"
        lines.append(f"{utt} {text}\n")
        if with_audio:
            write_flac(chapter_dir / f"{utt}.flac", seed=int(number))
    (chapter_dir / f"{reader}-{chapter}.trans.txt").write_text("".join(lines))
    return chapter_dir
