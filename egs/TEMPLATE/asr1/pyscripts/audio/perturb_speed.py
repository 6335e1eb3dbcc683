#!/usr/bin/env python3
"""Speed perturbation of a data directory: stage 2 of the recipe.

    perturb_speed.py --factors "0.9 1.0 1.1" data/train data/train_sp

For each factor other than 1.0 every utterance gets a copy whose id and
speaker carry the prefix ``sp<factor>-`` (as Kaldi's recipes name them) and
whose ``wav.scp`` entry pipes the audio through ``sox ... speed <factor>``
(tempo and pitch change together, the sample rate stays). Factor 1.0 keeps
the original utterances. No audio is written here: stage 3 runs the pipes.
"""

import argparse
import shlex
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
    spk2utt_lines,
    write_table,
)


def parse_factors(text: str) -> List[str]:
    """Validate the factors, keeping each as written (it names the copies)."""
    factors = text.split()
    if not factors:
        raise ValueError("--factors is empty")
    values = []
    for factor in factors:
        try:
            value = float(factor)
        except ValueError:
            raise ValueError(f"--factors: '{factor}' is not a number") from None
        if not 0.5 <= value <= 2.0:
            raise ValueError(f"--factors: {factor} is outside 0.5..2.0")
        if value in values:
            raise ValueError(f"--factors: {factor} is given twice")
        values.append(value)
    return factors


def perturbed_entry(entry: str, factor: str) -> str:
    """The ``wav.scp`` value that plays ``entry`` at ``factor`` times the speed."""
    effect = f"-t wav -b 16 - speed {factor} |"
    if entry.rstrip().endswith("|"):
        return f"{entry.rstrip()[:-1].rstrip()} | sox -t wav - {effect}"
    return f"sox {shlex.quote(entry)} {effect}"


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--factors", required=True, help='e.g. "0.9 1.0 1.1"')
    parser.add_argument("in_dir", type=Path)
    parser.add_argument("out_dir", type=Path)
    args = parser.parse_args(argv)
    try:
        factors = parse_factors(args.factors)
    except ValueError as e:
        log(f"ERROR: {e}")
        return 1
    return exit_status(lambda: perturb(args.in_dir, args.out_dir, factors))


def perturb(in_dir: Path, out_dir: Path, factors: List[str]) -> None:
    """Write ``out_dir``: ``in_dir``'s utterances at each of ``factors``."""
    data = read_data_dir(in_dir)
    if shutil.which("sox") is None:
        raise DataDirError("sox is not installed (Debian: sox)")
    wav, text, utt2spk = [], [], {}
    for factor in factors:
        prefix = "" if float(factor) == 1.0 else f"sp{factor}-"
        for utt in data.utts:
            new = prefix + utt
            entry = data.audio[utt]
            wav.append((new, entry if not prefix else perturbed_entry(entry, factor)))
            text.append((new, data.text[utt]))
            utt2spk[new] = prefix + data.utt2spk[utt]

    with building(out_dir) as tmp:
        write_table(tmp / "wav.scp", wav)
        write_table(tmp / "text", text)
        write_table(tmp / "utt2spk", utt2spk.items())
        write_table(tmp / "spk2utt", spk2utt_lines(utt2spk))
    log(f"{len(data.utts)} utterances x {len(factors)} factors -> {out_dir}")


if __name__ == "__main__":
    sys.exit(main())
