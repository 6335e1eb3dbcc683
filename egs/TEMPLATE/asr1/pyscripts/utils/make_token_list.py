#!/usr/bin/env python3
"""Token list (and sentencepiece model) from training text: stage 5.

    make_token_list.py --token_type bpe --nbpe 5000 --bpemode unigram \\
        dump/raw/train_960/text data/en_token_list/bpe_unigram5000

``text`` has Kaldi's ``utt-id transcript`` lines. With ``--token_type bpe``
a sentencepiece model is trained with its Python API (ESPnet ships no
trainer binary) into ``bpe.model``; with ``char`` the tokens are characters
and a space is ``<space>``. ``tokens.txt`` follows ESPnet's layout:
``<blank>`` first, ``<unk>`` second, tokens by descending frequency in the
text (ties in byte order; pieces of the model that never occur come last),
``<sos/eos>`` last.
"""

import argparse
import collections
import os
import sys
from pathlib import Path
from typing import Iterable, List, Optional

from datadir import DataDirError, building, exit_status, log, read_table

BLANK, UNK, SOS_EOS, SPACE = "<blank>", "<unk>", "<sos/eos>", "<space>"


def ordered_tokens(counts: collections.Counter, extra: Iterable[str] = ()) -> List[str]:
    """The token list: specials around tokens by frequency, then ``extra``."""
    specials = {BLANK, UNK, SOS_EOS}
    seen = [
        t
        for t, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
        if t not in specials
    ]
    unseen = [t for t in extra if t not in counts and t not in specials]
    return [BLANK, UNK, *seen, *unseen, SOS_EOS]


def train_sentencepiece(
    lines: List[str], out_dir: Path, nbpe: int, bpemode: str, input_sentence_size: int
) -> List[str]:
    import sentencepiece as spm

    train_text = out_dir / "train.txt"
    train_text.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    spm.set_random_generator_seed(1)
    try:
        spm.SentencePieceTrainer.train(
            input=str(train_text),
            model_prefix=str(out_dir / "bpe"),
            vocab_size=nbpe,
            model_type=bpemode,
            character_coverage=1.0,
            input_sentence_size=input_sentence_size,
            shuffle_input_sentence=True,
            num_threads=min(16, os.cpu_count() or 1),
            minloglevel=2,
        )
    except RuntimeError as e:
        raise DataDirError(
            f"sentencepiece cannot train --nbpe {nbpe} ({bpemode}): {e}"
        ) from None
    finally:
        train_text.unlink()
    model = spm.SentencePieceProcessor(model_file=str(out_dir / "bpe.model"))
    counts = collections.Counter()
    for line in lines:
        counts.update(model.encode(line, out_type=str))
    pieces = [
        model.id_to_piece(i)
        for i in range(model.get_piece_size())
        if not (model.is_unknown(i) or model.is_control(i))
    ]
    return ordered_tokens(counts, pieces)


def char_tokens(lines: List[str]) -> List[str]:
    counts = collections.Counter()
    for line in lines:
        counts.update(SPACE if c == " " else c for c in line)
    return ordered_tokens(counts)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--token_type", choices=["bpe", "char"], default="bpe")
    parser.add_argument(
        "--nbpe", type=int, default=5000, help="sentencepiece vocabulary size"
    )
    parser.add_argument("--bpemode", choices=["unigram", "bpe"], default="unigram")
    parser.add_argument(
        "--input_sentence_size",
        type=int,
        default=100_000_000,
        help="sentences sentencepiece samples from the text",
    )
    parser.add_argument("text", type=Path, help="Kaldi text file (utt-id transcript)")
    parser.add_argument("out_dir", type=Path)
    args = parser.parse_args(argv)
    return exit_status(lambda: make_token_list(args))


def make_token_list(args: argparse.Namespace) -> None:
    """``main``'s work: ``args.out_dir`` from ``args.text``."""
    table = read_table(args.text, allow_empty_value=True)
    lines = [" ".join(v.split()) for v in table.values() if v.strip()]
    if not lines:
        raise DataDirError(f"{args.text}: no transcripts")
    with building(args.out_dir) as tmp:
        if args.token_type == "bpe":
            tokens = train_sentencepiece(
                lines, tmp, args.nbpe, args.bpemode, args.input_sentence_size
            )
        else:
            tokens = char_tokens(lines)
        (tmp / "tokens.txt").write_text(
            "".join(t + "\n" for t in tokens), encoding="utf-8"
        )
    log(f"{len(tokens)} tokens -> {args.out_dir}/tokens.txt")


if __name__ == "__main__":
    sys.exit(main())
