"""Helpers for the tests of the recipe's stages 2-15: paths, audio, data dirs."""

from __future__ import annotations

import importlib
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Dict, Optional, Sequence

import numpy as np
import soundfile

REPO_DIR = Path(__file__).resolve().parents[2]
RECIPE_DIR = REPO_DIR / "egs" / "librispeech" / "asr1"
TEMPLATE_DIR = REPO_DIR / "egs" / "TEMPLATE" / "asr1"
LOCAL_DIR = RECIPE_DIR / "local"
UTILS_DIR = TEMPLATE_DIR / "pyscripts" / "utils"
AUDIO_DIR = TEMPLATE_DIR / "pyscripts" / "audio"
#: Where the recipe's Python scripts live; conftest.py puts them on sys.path
#: (they import each other by bare module name, as path.sh arranges).
SCRIPT_DIRS = (UTILS_DIR, AUDIO_DIR, LOCAL_DIR)


def local_module(name: str):
    """Import one of the recipe's Python scripts (TEMPLATE's ``pyscripts/``
    or the corpus's ``local/``) by module name."""
    return importlib.import_module(name)


def copy_recipe(dest: Path) -> Path:
    """A scratch copy of the recipe in ``dest``: its own files, and what it
    links from TEMPLATE copied in, so that the copy runs anywhere."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in ("run.sh", "asr.sh", "path.sh", "cmd.sh"):
        shutil.copy2(RECIPE_DIR / name, dest / name)
    for name in ("conf", "local", "scripts", "pyscripts"):
        shutil.copytree(RECIPE_DIR / name, dest / name, symlinks=True)
    return dest


def tone(
    path: Path,
    rate: int,
    seconds: float = 0.5,
    freq: float = 1000.0,
    channels: int = 1,
    fmt: Optional[str] = None,
) -> Path:
    """Write a sine tone of ``freq`` Hz at ``rate`` Hz (16-bit) and return the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * rate)) / rate
    wave = 0.3 * np.sin(2 * np.pi * freq * t)
    if channels > 1:
        wave = np.stack([wave] * channels, axis=1)
    soundfile.write(str(path), wave, rate, subtype="PCM_16", format=fmt)
    return path


def write_data_dir(
    directory: Path,
    wav: Dict[str, str],
    text: Optional[Dict[str, str]] = None,
    spk: Optional[Dict[str, str]] = None,
) -> Path:
    """A Kaldi data dir; text and speaker default to 'HELLO WORLD' and the id's
    first field."""
    directory.mkdir(parents=True, exist_ok=True)
    utts = sorted(wav)
    text = text if text is not None else {u: "HELLO WORLD" for u in utts}
    spk = spk if spk is not None else {u: u.split("-")[0] for u in utts}
    (directory / "wav.scp").write_text("".join(f"{u} {wav[u]}\n" for u in utts))
    (directory / "text").write_text(
        "".join(f"{u} {text[u]}\n" if text[u] else f"{u}\n" for u in sorted(text))
    )
    (directory / "utt2spk").write_text("".join(f"{u} {spk[u]}\n" for u in sorted(spk)))
    speakers: Dict[str, list] = {}
    for u in sorted(spk):
        speakers.setdefault(spk[u], []).append(u)
    (directory / "spk2utt").write_text(
        "".join(f"{s} {' '.join(us)}\n" for s, us in sorted(speakers.items()))
    )
    return directory


def read_table(path: Path) -> Dict[str, str]:
    rows = {}
    for line in path.read_text().splitlines():
        key, _, value = line.partition(" ")
        rows[key] = value
    return rows


def run(
    args: Sequence[str], cwd: Optional[Path] = None, timeout: float = 120
) -> subprocess.CompletedProcess:
    """Run a command with the test's Python first on PATH; capture text output."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    return subprocess.run(
        [str(a) for a in args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def dominant_frequency(samples: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.fft.rfftfreq(len(samples), 1 / rate)[np.argmax(spectrum)])
