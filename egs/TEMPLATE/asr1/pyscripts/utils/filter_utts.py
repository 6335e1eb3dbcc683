#!/usr/bin/env python3
"""Drop utterances that are too short, too long or have no transcript: stage 4.

    filter_utts.py --min_duration 0.1 --max_duration 20 \
        dump/raw/org/train dump/raw/train

Reads a directory written by ``dump_audio.py`` (its ``utt2num_samples`` and
``fs`` give each duration) and writes the kept utterances, with every file of
the input directory restricted to them.
"""

import argparse
import shutil
import sys
from pathlib import Path
from typing import List, Optional

from datadir import (
    DataDirError,
    building,
    exit_status,
    log,
    read_data_dir,
    read_table,
    spk2utt_lines,
    write_table,
)

#: Per-utterance tables copied with the kept utterances when present.
_TABLES = ("wav.scp", "feats.scp", "text", "utt2spk", "utt2num_samples", "feats_shape")
#: Whole-directory marker files copied as they are.
_MARKERS = ("feats_type", "audio_format", "fs")


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--min_duration", type=float, default=0.1, help="seconds")
    parser.add_argument("--max_duration", type=float, default=20.0, help="seconds")
    parser.add_argument("in_dir", type=Path)
    parser.add_argument("out_dir", type=Path)
    args = parser.parse_args(argv)
    if args.min_duration > args.max_duration:
        parser.error(
            f"--min_duration ({args.min_duration}) is above "
            f"--max_duration ({args.max_duration})"
        )
    return exit_status(
        lambda: filter_dir(
            args.in_dir, args.out_dir, args.min_duration, args.max_duration
        )
    )


def filter_dir(in_dir: Path, out_dir: Path, min_duration: float, max_duration: float):
    """Write ``out_dir``: ``in_dir``'s utterances of ``min_duration`` to
    ``max_duration`` seconds with a transcript; return how many were kept and
    how many removed for each reason."""
    feats_type = (
        (in_dir / "feats_type").read_text().strip()
        if (in_dir / "feats_type").exists()
        else "raw"
    )
    audio_file = "feats.scp" if feats_type != "raw" else "wav.scp"
    fs_file = in_dir / "fs"
    if not fs_file.exists():
        raise DataDirError(
            f"{fs_file}: no such file (is {in_dir} written by dump_audio.py?)"
        )
    fs = int(fs_file.read_text().strip())
    data = read_data_dir(
        in_dir,
        audio_file=audio_file,
        extra_files=["utt2num_samples"],
        allow_empty_text=True,
    )
    num_samples = data.extra["utt2num_samples"]
    keep = []
    counts = {"short": 0, "long": 0, "empty": 0}
    for utt in data.utts:
        try:
            seconds = int(num_samples[utt]) / fs
        except ValueError:
            raise DataDirError(
                f"{num_samples.where(utt)}: '{num_samples[utt]}' is not a sample count"
            ) from None
        if not data.text[utt].strip():
            counts["empty"] += 1
        elif seconds < min_duration:
            counts["short"] += 1
        elif seconds > max_duration:
            counts["long"] += 1
        else:
            keep.append(utt)
    if not keep:
        raise DataDirError(
            f"{in_dir}: no utterance is between {min_duration} and {max_duration} "
            "seconds with a transcript"
        )
    kept = set(keep)

    with building(out_dir) as tmp:
        for name in _TABLES:
            if (in_dir / name).exists():
                table = read_table(in_dir / name, allow_empty_value=(name == "text"))
                write_table(tmp / name, [(k, v) for k, v in table.items() if k in kept])
        write_table(tmp / "spk2utt", spk2utt_lines({u: data.utt2spk[u] for u in keep}))
        for name in _MARKERS:
            if (in_dir / name).exists():
                shutil.copyfile(in_dir / name, tmp / name)
    log(
        f"{in_dir} -> {out_dir}: kept {len(keep)} of {len(data.utts)} utterances "
        f"(removed {counts['short']} shorter than {min_duration}s, "
        f"{counts['long']} longer than {max_duration}s, {counts['empty']} "
        "with empty text)"
    )
    return len(keep), counts


if __name__ == "__main__":
    sys.exit(main())
