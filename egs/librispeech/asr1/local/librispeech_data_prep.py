#!/usr/bin/env python3
"""LibriSpeech-layout subsets -> one Kaldi-style data directory.

Reads ``SRC/<reader>/<chapter>/<reader>-<chapter>.trans.txt`` and the
``<reader>-<chapter>-<utt>.flac`` files beside it, for every SRC given (one
LibriSpeech subset each; several are merged, as for train_960), and writes
``DST/{wav.scp,text,utt2spk,spk2utt}``:

- wav.scp points at the flac files themselves (absolute paths), at their own
  sample rate: resampling belongs to the dump stage;
- text is normalized to LibriSpeech's form (a no-op on LibriSpeech itself);
- the speaker of an utterance is ``<reader>-<chapter>``, as in Kaldi's and
  ESPnet's LibriSpeech recipes.

Every problem in the input (a chapter without transcript, an empty
transcript line, a transcript line without audio, audio without transcript
line, an id that does not belong to its chapter, a bad flac) is reported
with its file and line, and DST is then left untouched; the whole list is
printed, not only the first.  Every flac is decoded by
``espnet_shared_conformer.audio_io``, the loader of the dump stage and
``espnet_shared_conformer.bin.transcribe``, so the three agree on what is
bad ("empty file", "not an audio file (...)", "corrupt or truncated audio
data ...", "NaN/inf samples ..."); decoding runs at about 3000x real
time per thread (``--nj``; 16 kHz speech flac, measured), so about 20
CPU-minutes for all 960 h.  The finished directory is checked with
validate_data_dir before it replaces DST.  ``DST/.done`` records what was
read (files, sizes, times); a re-run with the same input does nothing.

    python local/librispeech_data_prep.py --dst data/dev \\
        LibriSpeech/dev-clean LibriSpeech/dev-other
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Optional

from datadir import (
    DataDirError,
    Progress,
    Utterance,
    check_audio_file,
    exit_status,
    log,
    write_data_dir,
)
from textnorm import normalize_text

__all__ = ["read_subset", "prepare", "main"]

# Bump when the output for the same input changes, so old markers are redone.
FORMAT_VERSION = 1
# Show progress of the audio check only where it takes a while (LibriSpeech).
PROGRESS_MIN_FILES = 5000


def _sorted_dirs(path: Path) -> list[Path]:
    return sorted(
        (p for p in path.iterdir() if p.is_dir() and not p.name.startswith(".")),
        key=lambda p: p.name,
    )


def read_subset(src: Path, errors: list[str]) -> list[tuple[Utterance, str]]:
    """Read one subset; return (utterance, "trans-file:line") pairs.

    Problems are appended to `errors` instead of raised, so that one run
    reports all of them.
    """
    src = Path(src)
    rows: list[tuple[Utterance, str]] = []
    if not src.is_dir():
        errors.append(f"{src}: subset directory does not exist")
        return rows
    readers = _sorted_dirs(src)
    if not readers:
        errors.append(f"{src}: no reader directories")
    for reader_dir in readers:
        for chapter_dir in _sorted_dirs(reader_dir):
            reader, chapter = reader_dir.name, chapter_dir.name
            prefix = f"{reader}-{chapter}"
            trans = chapter_dir / f"{prefix}.trans.txt"
            flacs = {p.name[: -len(".flac")] for p in chapter_dir.glob("*.flac")}
            if not trans.is_file():
                errors.append(
                    f"{trans}: transcript file missing "
                    f"({len(flacs)} flac files in {chapter_dir})"
                )
                continue
            seen: dict[str, int] = {}
            try:
                lines = trans.read_text(encoding="utf-8").splitlines()
            except UnicodeDecodeError as e:
                errors.append(f"{trans}: not valid UTF-8 ({e})")
                continue
            for number, line in enumerate(lines, start=1):
                where = f"{trans}:{number}"
                if not line.strip():
                    errors.append(f"{where}: empty line")
                    continue
                utt, _, words = line.strip().partition(" ")
                if not utt.startswith(prefix + "-"):
                    errors.append(
                        f"{where}: utterance id {utt!r} "
                        f"does not belong to chapter {prefix}"
                    )
                    continue
                if utt in seen:
                    errors.append(
                        f"{where}: duplicate utterance id {utt!r} "
                        f"(first on line {seen[utt]})"
                    )
                    continue
                seen[utt] = number
                text = normalize_text(words)
                if not text:
                    errors.append(f"{where}: empty transcript for {utt!r}")
                    continue
                if utt not in flacs:
                    errors.append(
                        f"{where}: audio file missing: {chapter_dir / (utt + '.flac')}"
                    )
                    continue
                audio = os.path.abspath(chapter_dir / f"{utt}.flac")
                rows.append((Utterance(utt, prefix, audio, text), where))
            for orphan in sorted(flacs - set(seen)):
                errors.append(
                    f"{chapter_dir / (orphan + '.flac')}: no line for it in {trans}"
                )
    return rows


def _fingerprint(sources: list[Path], check_audio: bool) -> str:
    """What the output depends on: sources, their transcript files (size and
    time) and the options.  Cheap: no audio is read."""
    digest = hashlib.sha256()
    for src in sources:
        digest.update(os.path.abspath(src).encode() + b"\0")
        if src.is_dir():
            for trans in sorted(src.glob("*/*/*.trans.txt")):
                st = trans.stat()
                flacs = sum(1 for _ in trans.parent.glob("*.flac"))
                line = f"{trans.relative_to(src)} {st.st_size} {st.st_mtime_ns} {flacs}"
                digest.update(line.encode() + b"\n")
    return (
        json.dumps(
            {
                "version": FORMAT_VERSION,
                "sources": [os.path.abspath(s) for s in sources],
                "check_audio": check_audio,
                "input_sha256": digest.hexdigest(),
            },
            indent=1,
            sort_keys=True,
        )
        + "\n"
    )


def prepare(
    sources: list[Path], dst: Path, nj: int = 1, check_audio: bool = True
) -> bool:
    """Write the data directory `dst` from `sources`.

    Returns False when `dst` was already up to date, True when written.
    Raises DataDirError listing every problem found (dst then untouched).
    """
    sources = [Path(s) for s in sources]
    dst = Path(dst)
    marker = _fingerprint(sources, check_audio)
    done = dst / ".done"
    if done.is_file() and done.read_text(encoding="utf-8") == marker:
        log(f"{dst} is up to date, skipping")
        return False

    errors: list[str] = []
    rows: list[tuple[Utterance, str]] = []
    for src in sources:
        rows.extend(read_subset(src, errors))
    first_seen: dict[str, str] = {}
    for u, where in rows:  # subsets are merged: ids must stay unique
        if u.utt_id in first_seen:
            errors.append(
                f"{where}: utterance id {u.utt_id!r} also in {first_seen[u.utt_id]}"
            )
        else:
            first_seen[u.utt_id] = where

    if check_audio and rows:
        with (
            Progress(
                len(rows),
                f"checking audio for {dst}",
                unit="files",
                enabled=len(rows) >= PROGRESS_MIN_FILES,
            ) as bar,
            ThreadPoolExecutor(max_workers=max(1, nj)) as pool,
        ):
            audio = [u.audio for u, _ in rows]
            problems = pool.map(check_audio_file, audio, chunksize=64)
            for (_, where), problem in zip(rows, problems, strict=True):
                bar.update()
                if problem:
                    errors.append(f"{where}: {problem}")
    if errors:
        raise DataDirError.listing(
            f"cannot prepare {dst} from {', '.join(map(str, sources))}", errors
        )
    write_data_dir(dst, [u for u, _ in rows], marker=marker)
    speakers = len({u.speaker for u, _ in rows})
    log(f"wrote {dst}: {len(rows)} utterances, {speakers} speakers")
    return True


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "sources", type=Path, nargs="+", help="LibriSpeech-layout subset directories"
    )
    parser.add_argument(
        "--dst", type=Path, required=True, help="data directory to write"
    )
    parser.add_argument(
        "--nj", type=int, default=1, help="threads for decoding the audio"
    )
    parser.add_argument(
        "--no_check_audio",
        action="store_true",
        help="do not decode the flac files (only check that they exist)",
    )
    args = parser.parse_args(argv)
    return exit_status(
        lambda: prepare(
            args.sources, args.dst, nj=args.nj, check_audio=not args.no_check_audio
        )
    )


if __name__ == "__main__":
    sys.exit(main())
