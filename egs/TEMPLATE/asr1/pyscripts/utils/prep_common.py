"""Helpers shared by the stage-1 (data preparation) scripts of this recipe.

One home for: the timestamped log line, progress reporting, LibriSpeech text
normalization, all-or-nothing file and directory writes, and writing a
Kaldi-style data directory.  No work happens at import.
"""

from __future__ import annotations

import datetime
import os
import re
import shutil
import sys
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional, TextIO

from validate_data_dir import validate_data_dir  # sibling module in pyscripts/utils/

__all__ = [
    "StageError",
    "Utterance",
    "Progress",
    "atomic_write_text",
    "fold_accents",
    "log",
    "normalize_text",
    "replace_dir",
    "write_data_dir",
]


class StageError(Exception):
    """Bad input or a failed step; the message names the file (and line)."""


@dataclass(frozen=True)
class Utterance:
    """One row of a Kaldi data directory."""

    utt_id: str
    speaker: str
    audio: str  # path written to wav.scp
    text: str  # already normalized


def log(message: str, stream: TextIO = sys.stderr) -> None:
    """Print `message` with a timestamp and the script name, as asr.sh does."""
    now = datetime.datetime.now().strftime("%Y-%m-%dT%H:%M:%S")
    script = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "python"
    print(f"{now} ({script}) {message}", file=stream, flush=True)


class Progress:
    """Progress over a known total: a tqdm bar on a terminal, else a log line
    every `step_percent` percent (logs stay readable in CI and in nohup'd runs).
    """

    def __init__(
        self,
        total: float,
        desc: str,
        unit: str = "it",
        step_percent: int = 10,
        enabled: bool = True,
    ) -> None:
        self.total = max(total, 0)
        self.desc = desc
        self.unit = unit
        self.step = step_percent
        self.done = 0.0
        self._next_percent = step_percent
        self._bar = None
        self._enabled = enabled
        if enabled and sys.stderr.isatty():
            try:
                from tqdm import tqdm
            except ImportError:  # tqdm comes with ESPnet; lines work without it
                tqdm = None
            if tqdm is not None:
                scale = unit == "B"
                self._bar = tqdm(
                    total=self.total,
                    desc=desc,
                    unit=unit,
                    unit_scale=scale,
                    unit_divisor=1024 if scale else 1000,
                    leave=True,
                )

    def update(self, amount: float = 1) -> None:
        self.done += amount
        if self._bar is not None:
            self._bar.update(amount)
            return
        if not self._enabled or self.total <= 0:
            return
        percent = 100.0 * self.done / self.total
        if percent >= self._next_percent:
            done, total = self._fmt(self.done), self._fmt(self.total)
            log(f"{self.desc}: {int(percent)}% ({done}/{total} {self.unit})")
            while self._next_percent <= percent:
                self._next_percent += self.step

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def _fmt(self, value: float) -> str:
        if self.unit == "B":
            return f"{value / 2**20:.1f} Mi"
        return str(int(value)) if float(value).is_integer() else f"{value:.1f}"

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# Abbreviations are spelled out as LibriSpeech's transcripts spell them
# (its aligned texts say MISTER, MISSUS, DOCTOR, SAINT).
ABBREVIATIONS = {
    "Mr": "Mister",
    "Mrs": "Missus",
    "Dr": "Doctor",
    "St": "Saint",
    "Esq": "Esquire",
}

_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "`": "'", "\u02bc": "'"})
_NOT_LETTER_OR_APOSTROPHE = re.compile(r"[^A-Z']+")
_LOOSE_APOSTROPHE = re.compile(r"(?<![A-Z])'|'(?![A-Z])")


def fold_accents(text: str) -> str:
    """``é`` -> ``e``: drop combining marks after NFKD (ASCII passes through)."""
    if text.isascii():
        return text
    text = unicodedata.normalize("NFKD", text)
    return "".join(c for c in text if not unicodedata.combining(c))


def normalize_text(text: str) -> str:
    """LibriSpeech text form: upper case A-Z, apostrophes inside words, single
    spaces.  Accents are folded (``é`` -> ``E``), hyphens and all other
    punctuation become word breaks, apostrophes that are quote marks (not
    between two letters) are dropped.  Idempotent, so LibriSpeech's own
    transcripts pass through unchanged.
    """
    text = fold_accents(text.translate(_APOSTROPHES)).upper()
    text = _NOT_LETTER_OR_APOSTROPHE.sub(" ", text)
    text = _LOOSE_APOSTROPHE.sub(" ", text)
    return " ".join(text.split())


def atomic_write_text(path: Path, text: str) -> None:
    """Write `text` to a temporary sibling and rename it over `path`."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp.{os.getpid()}")
    with open(tmp, "w", encoding="utf-8", newline="\n") as f:
        f.write(text)
    os.replace(tmp, path)


def replace_dir(tmp: Path, final: Path) -> None:
    """Move the finished directory `tmp` to `final`, replacing an old one.

    The old directory is renamed away first and removed last, so `final`
    is never a mixture of old and new files.
    """
    tmp, final = Path(tmp), Path(final)
    old: Optional[Path] = None
    if final.exists():
        old = final.with_name(f".{final.name}.old.{os.getpid()}")
        os.replace(final, old)
    os.replace(tmp, final)
    if old is not None:
        shutil.rmtree(old)


def _lines(rows: Iterable[tuple[str, str]]) -> str:
    # Keys are ASCII without spaces, so sorting keys sorts lines as LC_ALL=C does.
    return "".join(f"{k} {v}\n" for k, v in sorted(rows, key=lambda r: r[0].encode()))


def write_data_dir(
    dst: Path,
    utterances: list[Utterance],
    marker: Optional[str] = None,
) -> None:
    """Write wav.scp, text, utt2spk and spk2utt for `utterances` to `dst`.

    The directory is built under a temporary name next to `dst`, checked with
    validate_data_dir, and only then moved into place; `marker` (if given) is
    written last as ``dst/.done``.  On any error `dst` is left as it was.
    """
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.name}.tmp.{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        spk2utt: dict[str, list[str]] = {}
        for u in utterances:
            spk2utt.setdefault(u.speaker, []).append(u.utt_id)
        files = {
            "wav.scp": _lines((u.utt_id, u.audio) for u in utterances),
            "text": _lines((u.utt_id, u.text) for u in utterances),
            "utt2spk": _lines((u.utt_id, u.speaker) for u in utterances),
            "spk2utt": _lines(
                (spk, " ".join(sorted(utts, key=str.encode)))
                for spk, utts in spk2utt.items()
            ),
        }
        for name, content in files.items():
            (tmp / name).write_text(content, encoding="utf-8")
        errors = validate_data_dir(tmp, display_name=str(dst))
        if errors:
            raise StageError(f"refusing to write {dst}:\n" + "\n".join(errors))
        if marker is not None:
            (tmp / ".done").write_text(marker, encoding="utf-8")
        replace_dir(tmp, dst)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
