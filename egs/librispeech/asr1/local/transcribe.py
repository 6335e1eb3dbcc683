#!/usr/bin/env python3
"""Transcribe audio files with a model packed by the recipe (stage 14).

    python local/transcribe.py --model exp/asr_.../packed.zip a.wav b.flac ...

Any sample rate and any format libsndfile reads (wav, flac, ogg, mp3, ...);
multi-channel files are averaged to mono and everything is resampled to the
model's rate exactly as the recipe's training data was. Prints one line per
file: ``<file><TAB><transcript>``. Unreadable files are reported on stderr
and make the exit status 1; the others are still transcribed.
"""

import argparse
import logging
import sys
import time
from pathlib import Path
from typing import List, Optional

from audio_io import AudioError


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--model", type=Path, required=True, help="packed model zip")
    parser.add_argument("audio", nargs="+", help="audio files to transcribe")
    parser.add_argument(
        "--beam_size", type=int, help="override the packed decoding config"
    )
    parser.add_argument(
        "--ctc_weight", type=float, help="override the packed decoding config"
    )
    parser.add_argument(
        "--no_lexicon",
        action="store_true",
        help="decode with ESPnet's beam search even if the zip has a lexicon "
        "and word LM (--use_word_lm true)",
    )
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument(
        "--unpack_dir",
        type=Path,
        help="where to unpack the zip (default: a per-user cache directory)",
    )
    parser.add_argument("--verbose", action="store_true", help="show ESPnet's log")
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    args = get_parser().parse_args(argv)
    if not args.model.is_file():
        print(f"transcribe: ERROR: no such model file: {args.model}", file=sys.stderr)
        return 1
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s (%(module)s:%(lineno)d) %(levelname)s: %(message)s",
    )
    from packed_model import load_speech2text

    overrides = {
        k: v
        for k, v in (("beam_size", args.beam_size), ("ctc_weight", args.ctc_weight))
        if v is not None
    }
    model = load_speech2text(
        args.model,
        args.unpack_dir,
        device=args.device,
        use_lexicon=not args.no_lexicon,
        **overrides,
    )
    failed = 0
    for path in args.audio:
        start = time.monotonic()
        try:
            text = model.transcribe_file(path)
        except AudioError as e:
            print(f"transcribe: ERROR: {e}", file=sys.stderr)
            failed += 1
            continue
        print(f"{path}\t{text}", flush=True)
        logging.info("%s: %.2fs", path, time.monotonic() - start)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
