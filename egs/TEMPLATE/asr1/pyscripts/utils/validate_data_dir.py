#!/usr/bin/env python3
"""Check a Kaldi-style data directory (wav.scp, text, utt2spk, spk2utt).

Checks: the four files exist and are UTF-8; every line is ``<id> <value>``;
ids are unique and sorted as ``LC_ALL=C sort`` sorts them; wav.scp, text and
utt2spk list the same utterances; every utterance id starts with its speaker
id; spk2utt is exactly utt2spk inverted; no transcript is empty; transcripts
use LibriSpeech's alphabet (A-Z, apostrophe, space); every audio file exists.
With ``--check_audio`` each audio file is also decoded by ``audio_io``, the
loader the dump stage and ``transcribe.py`` use, and must be good audio there
(not empty, a format libsndfile reads, samples, a rate of at least 8 kHz, not
truncated, no NaN/inf samples); every bad file is reported with the reason.

Each error names the file and line.  Exit status: 0 when clean, 1 otherwise.

    python pyscripts/utils/validate_data_dir.py [--check_audio] [--nj N] data/train
"""

from __future__ import annotations

import argparse
import re
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Optional

__all__ = ["check_audio_file", "validate_data_dir", "main"]

REQUIRED_FILES = ("wav.scp", "text", "utt2spk", "spk2utt")
_TEXT_CHARSET = re.compile(r"[A-Z' ]*")
_ARK_OFFSET = re.compile(r"^(.*\.ark):\d+$")
MAX_REPORTED = 50


def _read_table(
    path: Path,
    shown: str,
    errors: list[str],
    allow_empty_value: bool = False,
) -> tuple[dict[str, str], dict[str, int]]:
    """Parse ``<id> <value>`` lines; return {id: value} and {id: line number}.

    Records syntax, order and duplicate errors in `errors`.
    """
    values: dict[str, str] = {}
    lines: dict[str, int] = {}
    try:
        content = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        errors.append(f"{shown}: not valid UTF-8 ({e})")
        return values, lines
    if content and not content.endswith("\n"):
        errors.append(f"{shown}: last line has no newline")
    previous: Optional[str] = None
    for number, line in enumerate(content.splitlines(), start=1):
        where = f"{shown}:{number}"
        if not line.strip():
            errors.append(f"{where}: empty line")
            continue
        if line != line.strip():
            errors.append(f"{where}: leading or trailing whitespace")
        key, _, value = line.strip().partition(" ")
        value = value.strip()
        if not value and not allow_empty_value:
            errors.append(f"{where}: no value after id {key!r}")
        if key in lines:
            errors.append(f"{where}: duplicate id {key!r} (first on line {lines[key]})")
            continue
        if previous is not None and key.encode() < previous.encode():
            errors.append(
                f"{where}: not sorted: {key!r} comes after {previous!r} "
                "(use LC_ALL=C sort)"
            )
        previous = key
        values[key] = value
        lines[key] = number
    return values, lines


def _audio_path(value: str) -> Optional[str]:
    """The file a wav.scp value reads, or None for a pipe command."""
    if value.endswith("|"):
        return None
    match = _ARK_OFFSET.match(value)
    return match.group(1) if match else value


def check_audio_file(path: str) -> Optional[str]:
    """``None`` when ``path`` is good audio, else ``"cannot read audio <path>:
    <reason>"``, the reason from ``audio_io`` (the whole file is decoded)."""
    from audio_io import check_audio  # sibling module in pyscripts/utils/

    problem = check_audio(path, allow_command=False)
    return None if problem is None else f"cannot read audio {path}: {problem}"


def validate_data_dir(
    data_dir: Path,
    check_audio: bool = False,
    check_charset: bool = True,
    nj: int = 1,
    display_name: Optional[str] = None,
) -> list[str]:
    """Return the list of problems found in `data_dir` (empty when clean).

    `display_name` replaces the directory name in messages (used when a
    directory is checked under a temporary name before it is moved in place).
    """
    data_dir = Path(data_dir)
    name = display_name if display_name is not None else str(data_dir)
    errors: list[str] = []
    if not data_dir.is_dir():
        return [f"{name}: not a directory"]
    missing = [f for f in REQUIRED_FILES if not (data_dir / f).is_file()]
    for f in missing:
        errors.append(f"{name}/{f}: missing")
    if missing:
        return errors

    shown = {f: f"{name}/{f}" for f in REQUIRED_FILES}
    wav, wav_line = _read_table(data_dir / "wav.scp", shown["wav.scp"], errors)
    text, text_line = _read_table(
        data_dir / "text", shown["text"], errors, allow_empty_value=True
    )
    utt2spk, u2s_line = _read_table(data_dir / "utt2spk", shown["utt2spk"], errors)
    spk2utt, s2u_line = _read_table(data_dir / "spk2utt", shown["spk2utt"], errors)

    if not wav:
        errors.append(f"{shown['wav.scp']}: no utterances")

    # The three utterance tables must list the same ids.
    tables = (("wav.scp", wav_line), ("text", text_line), ("utt2spk", u2s_line))
    for this, this_lines in tables:
        for other, other_lines in tables:
            if this == other:
                continue
            for utt, number in this_lines.items():
                if utt not in other_lines:
                    errors.append(
                        f"{shown[this]}:{number}: utterance {utt!r} is not in {other}"
                    )

    for utt, words in text.items():
        where = f"{shown['text']}:{text_line[utt]}"
        if not words:
            errors.append(f"{where}: empty transcript for {utt!r}")
        elif check_charset and not _TEXT_CHARSET.fullmatch(words):
            bad = "".join(sorted(set(re.sub(r"[A-Z' ]", "", words))))
            errors.append(
                f"{where}: characters outside A-Z, apostrophe and space: {bad!r}"
            )
        elif "  " in words:
            errors.append(f"{where}: repeated spaces in transcript")

    for utt, spk in utt2spk.items():
        where = f"{shown['utt2spk']}:{u2s_line[utt]}"
        if " " in spk:
            errors.append(f"{where}: more than one speaker for {utt!r}")
        elif not (utt == spk or utt.startswith(spk + "-") or utt.startswith(spk + "_")):
            errors.append(
                f"{where}: utterance id {utt!r} "
                f"does not start with its speaker id {spk!r}"
            )

    # spk2utt must be utt2spk inverted, utterances in sorted order.
    expected: dict[str, list[str]] = {}
    for utt, spk in utt2spk.items():
        expected.setdefault(spk, []).append(utt)
    for spk, listed in spk2utt.items():
        where = f"{shown['spk2utt']}:{s2u_line[spk]}"
        utts = listed.split()
        if spk not in expected:
            errors.append(f"{where}: speaker {spk!r} has no utterance in utt2spk")
            continue
        if sorted(utts, key=str.encode) != utts:
            errors.append(f"{where}: utterances of speaker {spk!r} are not sorted")
        for utt in sorted(set(utts) - set(expected[spk])):
            owner = utt2spk.get(utt)
            said = (
                f"utt2spk:{u2s_line[utt]} gives speaker {owner!r}"
                if owner
                else "it is not in utt2spk"
            )
            errors.append(f"{where}: speaker {spk!r} lists {utt!r}, but {said}")
        for utt in sorted(set(expected[spk]) - set(utts)):
            errors.append(
                f"{where}: speaker {spk!r} does not list {utt!r} "
                f"(utt2spk:{u2s_line[utt]})"
            )
        if len(set(utts)) != len(utts):
            errors.append(f"{where}: speaker {spk!r} lists an utterance twice")
    for spk in sorted(set(expected) - set(spk2utt)):
        first = expected[spk][0]
        errors.append(
            f"{shown['spk2utt']}: speaker {spk!r} is missing "
            f"(utt2spk:{u2s_line[first]})"
        )

    # Audio files: existence always, readability with check_audio.
    to_open: list[tuple[str, str]] = []
    for utt, value in wav.items():
        where = f"{shown['wav.scp']}:{wav_line[utt]}"
        path = _audio_path(value)
        if path is None:
            continue
        if not Path(path).is_file():
            errors.append(f"{where}: audio file does not exist: {path}")
        elif check_audio and not value.endswith("|") and not _ARK_OFFSET.match(value):
            to_open.append((where, path))
    if to_open:
        with ThreadPoolExecutor(max_workers=max(1, nj)) as pool:
            problems = pool.map(check_audio_file, [p for _, p in to_open])
            for (where, _), problem in zip(to_open, problems, strict=True):
                if problem:
                    errors.append(f"{where}: {problem}")
    return errors


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "data_dir", type=Path, nargs="+", help="data directories to check"
    )
    parser.add_argument(
        "--check_audio",
        action="store_true",
        help="decode every audio file and check its samples",
    )
    parser.add_argument(
        "--no_check_charset",
        action="store_true",
        help="accept any characters in transcripts",
    )
    parser.add_argument("--nj", type=int, default=1, help="threads for --check_audio")
    args = parser.parse_args(argv)
    status = 0
    for data_dir in args.data_dir:
        errors = validate_data_dir(
            data_dir,
            check_audio=args.check_audio,
            check_charset=not args.no_check_charset,
            nj=args.nj,
        )
        for e in errors[:MAX_REPORTED]:
            print(f"ERROR: {e}", file=sys.stderr)
        if len(errors) > MAX_REPORTED:
            more = len(errors) - MAX_REPORTED
            print(
                f"ERROR: ... and {more} more problems in {data_dir}",
                file=sys.stderr,
            )
        if errors:
            status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
