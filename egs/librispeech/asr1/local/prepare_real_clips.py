#!/usr/bin/env python3
"""Real recorded English shipped by Debian packages -> a Kaldi-style data directory.

Two transcript formats:

- ``sphinx`` (pocketsphinx-testdata's ``librivox/transcription``): lines
  ``<s> words </s> (fileid)``, audio ``AUDIO_DIR/<fileid>.wav``.  Every line
  must have its audio and words: anything else stops with file and line.
- ``asterisk`` (asterisk-core-sounds-en's ``core-sounds-en.txt[.gz]``): lines
  ``name: Text as written.``, audio ``AUDIO_DIR/<name>.wav``.  These are
  prompt scripts, not verbatim transcripts: prompts whose wording cannot be
  normalized faithfully (digits, symbols, acronyms, web addresses, stage
  directions in brackets) or whose audio is not installed are left out and
  counted in the log.

Audio stays as it is (16 kHz LibriVox, 8 kHz Asterisk); the dump stage
resamples. Every file is decoded first by
``espnet_shared_conformer.audio_io``, the loader of the dump stage and
``espnet_shared_conformer.bin.transcribe``; each bad one is reported with its
reason and nothing is written. Utterance ids are ``<speaker>-<name>`` (``/``
in names becomes ``_``).

    python local/prepare_real_clips.py --format sphinx --speaker librivox \\
        --transcripts /usr/share/pocketsphinx/test/data/librivox/transcription \\
        --audio_dir /usr/share/pocketsphinx/test/data/librivox --dst data/test_librivox
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import re
import sys
from pathlib import Path
from typing import Optional

from datadir import (
    DataDirError,
    Utterance,
    check_audio_file,
    exit_status,
    log,
    write_data_dir,
)
from textnorm import normalize_text

__all__ = ["read_sphinx", "read_asterisk", "prepare", "main"]

FORMAT_VERSION = 1
_SPHINX_LINE = re.compile(r"^(.*?)\s*\(([^()\s]+)\)\s*$")
_SPHINX_MARKUP = re.compile(r"</?s>|<sil>|\+\+[A-Z_]+\+\+")
# Written forms a speaker does not read out letter for letter.
_UNFAITHFUL = re.compile(r"[0-9\[\]{}()*#@&%$/\\|+=<>~^_]|\w\.\w|\b[A-Z]{2,}\b")


def _read_lines(path: Path) -> list[str]:
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", encoding="utf-8") as f:
            return f.read().splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise DataDirError(f"cannot read {path}: {e}") from e


def read_sphinx(transcripts: Path, audio_dir: Path, speaker: str) -> list[Utterance]:
    errors: list[str] = []
    utts: list[Utterance] = []
    for number, line in enumerate(_read_lines(transcripts), start=1):
        where = f"{transcripts}:{number}"
        if not line.strip():
            continue
        match = _SPHINX_LINE.match(line)
        if not match:
            errors.append(f"{where}: expected '<s> words </s> (fileid)', got {line!r}")
            continue
        words, file_id = match.groups()
        text = normalize_text(_SPHINX_MARKUP.sub(" ", words))
        audio = Path(audio_dir) / f"{file_id}.wav"
        if not text:
            errors.append(f"{where}: empty transcript for {file_id!r}")
        elif not audio.is_file():
            errors.append(f"{where}: audio file missing: {audio}")
        else:
            utts.append(
                Utterance(f"{speaker}-{file_id}", speaker, os.path.abspath(audio), text)
            )
    if errors:
        raise DataDirError("bad transcripts:\n" + "\n".join(errors))
    return utts


def read_asterisk(transcripts: Path, audio_dir: Path, speaker: str) -> list[Utterance]:
    utts: list[Utterance] = []
    unusable = no_audio = 0
    for number, line in enumerate(_read_lines(transcripts), start=1):
        if not line.strip() or line.lstrip().startswith(";"):
            continue
        name, sep, written = line.partition(":")
        if not sep or not name.strip() or " " in name.strip():
            raise DataDirError(
                f"{transcripts}:{number}: expected 'name: text', got {line!r}"
            )
        name, written = name.strip(), written.strip()
        if _UNFAITHFUL.search(written) or not normalize_text(written):
            unusable += 1
            continue
        audio = Path(audio_dir) / f"{name}.wav"
        if not audio.is_file():
            no_audio += 1
            continue
        utt_id = f"{speaker}-{name.replace('/', '_')}"
        utts.append(
            Utterance(utt_id, speaker, os.path.abspath(audio), normalize_text(written))
        )
    log(
        f"{transcripts}: {len(utts)} prompts kept, {unusable} not normalizable "
        f"(digits, symbols, acronyms), {no_audio} without installed audio"
    )
    return utts


def prepare(
    fmt: str, transcripts: Path, audio_dir: Path, speaker: str, dst: Path
) -> bool:
    """Write `dst`; False when it was already up to date."""
    transcripts, audio_dir, dst = Path(transcripts), Path(audio_dir), Path(dst)
    if not transcripts.is_file():
        raise DataDirError(f"{transcripts}: transcript file missing")
    st = transcripts.stat()
    marker = (
        json.dumps(
            {
                "version": FORMAT_VERSION,
                "format": fmt,
                "speaker": speaker,
                "transcripts": os.path.abspath(transcripts),
                "size": st.st_size,
                "mtime_ns": st.st_mtime_ns,
                "audio_dir": os.path.abspath(audio_dir),
            },
            sort_keys=True,
        )
        + "\n"
    )
    done = dst / ".done"
    if done.is_file() and done.read_text(encoding="utf-8") == marker:
        log(f"{dst} is up to date, skipping")
        return False
    reader = {"sphinx": read_sphinx, "asterisk": read_asterisk}[fmt]
    utts = reader(transcripts, audio_dir, speaker)
    if not utts:
        raise DataDirError(f"{transcripts}: no usable utterance")
    problems = [p for u in utts if (p := check_audio_file(u.audio))]
    if problems:
        raise DataDirError.listing(f"bad audio files; {dst} not written", problems)
    write_data_dir(dst, utts, marker=marker)
    log(f"wrote {dst}: {len(utts)} utterances")
    return True


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--format",
        choices=("sphinx", "asterisk"),
        required=True,
        help="transcript file format",
    )
    parser.add_argument(
        "--transcripts", type=Path, required=True, help="transcript file (.gz allowed)"
    )
    parser.add_argument(
        "--audio_dir", type=Path, required=True, help="directory of the .wav files"
    )
    parser.add_argument(
        "--speaker", required=True, help="speaker id, prefix of every utterance id"
    )
    parser.add_argument(
        "--dst", type=Path, required=True, help="data directory to write"
    )
    args = parser.parse_args(argv)
    return exit_status(
        lambda: prepare(
            args.format, args.transcripts, args.audio_dir, args.speaker, args.dst
        )
    )


if __name__ == "__main__":
    sys.exit(main())
