#!/usr/bin/env python3
"""Check Kaldi-style data directories (wav.scp, text, utt2spk, spk2utt).

Checks (``datadir.validate_data_dir``): the four files exist and are UTF-8;
every line is ``<id> <value>``; ids are unique and sorted as ``LC_ALL=C
sort`` sorts them; wav.scp, text and utt2spk list the same utterances; every
utterance id starts with its speaker id; spk2utt is exactly utt2spk
inverted; no transcript is empty; transcripts use LibriSpeech's alphabet
(A-Z, apostrophe, space); every audio file exists. With ``--check_audio``
each audio file is also decoded by ``espnet_shared_conformer.audio_io``, the
loader the dump stage and ``espnet_shared_conformer.bin.transcribe`` use,
and must be good audio there (not empty, a format libsndfile reads, samples,
a rate of at least 8 kHz, not truncated, no NaN/inf samples).

Each problem is logged with its file and line. Exit status: 0 when clean,
1 otherwise.

    python pyscripts/utils/validate_data_dir.py [--check_audio] [--nj N] data/train
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional

from datadir import MAX_REPORTED, log, validate_data_dir


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
        problems = validate_data_dir(
            data_dir,
            check_audio=args.check_audio,
            check_charset=not args.no_check_charset,
            nj=args.nj,
        )
        for problem in problems[:MAX_REPORTED]:
            log(f"ERROR: {problem}")
        if len(problems) > MAX_REPORTED:
            more = len(problems) - MAX_REPORTED
            log(f"ERROR: ... and {more} more problems in {data_dir}")
        if problems:
            status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
