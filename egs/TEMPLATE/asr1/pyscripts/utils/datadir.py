"""Read, check and write Kaldi-style data directories.

A data directory holds ``wav.scp`` (utterance -> audio path or ``command |``),
``text`` (utterance -> transcript), ``utt2spk`` and ``spk2utt``. Every reader
here reports problems as ``DataDirError`` whose message names the file and the
line, so that a user can open the file and fix it.
"""

import os
import shutil
from pathlib import Path
from typing import Dict, Iterable, List, Mapping, Optional, Tuple

__all__ = [
    "DataDir",
    "DataDirError",
    "read_table",
    "read_data_dir",
    "replace_dir",
    "spk2utt_lines",
    "write_table",
]


class DataDirError(Exception):
    """A data directory is malformed or its files disagree."""


class Table(dict):
    """``key -> value`` in file order, remembering each key's line number."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path
        self.lineno: Dict[str, int] = {}

    def where(self, key: str) -> str:
        return f"{self.path} line {self.lineno[key]}"


def read_table(path: Path, *, allow_empty_value: bool = False) -> Table:
    """Read ``key value...`` lines; the value is the rest of the line.

    Raises ``DataDirError`` for a missing file, a blank line, a duplicate key or
    (unless ``allow_empty_value``) a line with a key and no value.
    """
    path = Path(path)
    table = Table(path)
    try:
        with path.open(encoding="utf-8") as f:
            lines = f.read().split("\n")
    except FileNotFoundError:
        raise DataDirError(f"{path}: no such file") from None
    except UnicodeDecodeError as e:
        raise DataDirError(f"{path}: not UTF-8 text ({e})") from None
    if lines and lines[-1] == "":
        lines.pop()
    for lineno, line in enumerate(lines, 1):
        fields = line.strip().split(maxsplit=1)
        if not fields:
            raise DataDirError(f"{path} line {lineno}: empty line")
        key = fields[0]
        value = fields[1] if len(fields) > 1 else ""
        if key in table:
            raise DataDirError(
                f"{path} line {lineno}: duplicate key '{key}' "
                f"(first at line {table.lineno[key]})"
            )
        if not value and not allow_empty_value:
            raise DataDirError(f"{path} line {lineno}: '{key}' has no value")
        table[key] = value
        table.lineno[key] = lineno
    return table


class DataDir:
    """A checked data directory: every file names the same utterances."""

    def __init__(
        self,
        path: Path,
        audio: Table,
        text: Table,
        utt2spk: Table,
        audio_file: str,
        extra: Mapping[str, Table],
    ) -> None:
        self.path = path
        self.audio = audio
        self.text = text
        self.utt2spk = utt2spk
        self.audio_file = audio_file
        self.extra = dict(extra)

    @property
    def utts(self) -> List[str]:
        """Utterance ids in sorted (C locale) order, as Kaldi keeps them."""
        return sorted(self.audio)


def read_data_dir(
    path: Path,
    *,
    audio_file: str = "wav.scp",
    extra_files: Iterable[str] = (),
    allow_empty_text: bool = False,
) -> DataDir:
    """Read and cross-check a data directory.

    ``audio_file`` is ``wav.scp`` or ``feats.scp``; ``extra_files`` (for
    example ``utt2num_samples``) must name the same utterances too.
    """
    path = Path(path)
    if not path.is_dir():
        raise DataDirError(f"{path}: no such data directory")
    audio = read_table(path / audio_file)
    text = read_table(path / "text", allow_empty_value=True)
    utt2spk = read_table(path / "utt2spk")
    if not audio:
        raise DataDirError(f"{path / audio_file}: no utterances")
    for key in audio:
        if "/" in key:
            raise DataDirError(f"{audio.where(key)}: utterance id '{key}' has a '/'")
    if not allow_empty_text:
        for key, value in text.items():
            if not value.strip():
                raise DataDirError(f"{text.where(key)}: empty transcript for '{key}'")
    extra = {name: read_table(path / name) for name in extra_files}
    for other in [text, utt2spk, *extra.values()]:
        _check_same_keys(audio, other)
    spk2utt_path = path / "spk2utt"
    if spk2utt_path.exists():
        _check_spk2utt(read_table(spk2utt_path), utt2spk)
    return DataDir(path, audio, text, utt2spk, audio_file, extra)


def _check_same_keys(reference: Table, other: Table) -> None:
    for key in other:
        if key not in reference:
            raise DataDirError(
                f"{other.where(key)}: utterance '{key}' is not in {reference.path}"
            )
    for key in reference:
        if key not in other:
            raise DataDirError(
                f"{reference.where(key)}: utterance '{key}' is not in {other.path}"
            )


def _check_spk2utt(spk2utt: Table, utt2spk: Table) -> None:
    seen = set()
    for spk, utts in spk2utt.items():
        for utt in utts.split():
            where = spk2utt.where(spk)
            if utt not in utt2spk:
                raise DataDirError(
                    f"{where}: utterance '{utt}' is not in {utt2spk.path}"
                )
            if utt2spk[utt] != spk:
                raise DataDirError(
                    f"{where}: utterance '{utt}' is listed under speaker '{spk}' but "
                    f"{utt2spk.where(utt)} says '{utt2spk[utt]}'"
                )
            seen.add(utt)
    for utt in utt2spk:
        if utt not in seen:
            raise DataDirError(
                f"{utt2spk.where(utt)}: utterance '{utt}' is not in {spk2utt.path}"
            )


def write_table(path: Path, rows: Iterable[Tuple[str, str]]) -> None:
    """Write ``key value`` lines sorted by key (byte order, like ``LC_ALL=C sort``)."""
    with Path(path).open("w", encoding="utf-8") as f:
        for key, value in sorted(rows):
            f.write(f"{key} {value}\n" if value else f"{key}\n")


def spk2utt_lines(utt2spk: Mapping[str, str]) -> List[Tuple[str, str]]:
    """``spk2utt`` rows built from ``utt2spk``, utterances in sorted order."""
    speakers: Dict[str, List[str]] = {}
    for utt in sorted(utt2spk):
        speakers.setdefault(utt2spk[utt], []).append(utt)
    return [(spk, " ".join(utts)) for spk, utts in sorted(speakers.items())]


def replace_dir(tmp: Path, final: Path, backup: Optional[Path] = None) -> None:
    """Move a completed ``tmp`` directory to ``final``, replacing what was there."""
    tmp, final = Path(tmp), Path(final)
    old = backup or final.with_name(final.name + ".old")
    if old.exists():
        shutil.rmtree(old)
    if final.exists():
        os.rename(final, old)
    os.rename(tmp, final)
    if old.exists():
        shutil.rmtree(old)
