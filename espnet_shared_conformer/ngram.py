"""Word n-gram language models: interpolated Kneser-Ney, written as ARPA.

ESPnet's own n-gram support (``--ngram_file``) scores *tokens* with a KenLM
model that KenLM's ``lmplz`` binary must build; neither the binary nor a
word-level model is available from the package index. This module estimates a
word model from a Kaldi-style text file in pure Python, good for the corpora
a recipe trains its LM on (the mini corpus's ~24k sentences take seconds),
and writes it in the ARPA format that KenLM (and so flashlight's lexicon
decoder, :mod:`espnet_shared_conformer.lexicon`) reads.

The estimate is interpolated Kneser-Ney with one absolute discount per order,
``D = n1 / (n1 + 2 n2)`` from the counts-of-counts, as in Chen & Goodman
(1998). Lower orders use continuation counts (how many distinct words
precede an n-gram) except n-grams that start with ``<s>``, which have no
left context and keep their raw counts. The unigram distribution is
interpolated with a uniform one over the vocabulary plus ``<unk>``, so every
word has a non-zero probability. An interpolated model is exactly a backoff
model whose back-off weight of a context is its interpolation weight, which
is what the ARPA file stores.

Command line::

    python -m espnet_shared_conformer.ngram --text dump/raw/lm_train.txt \\
        --order 3 --arpa exp/word_lm/3gram.arpa
"""

import argparse
import logging
import math
import os
from collections import defaultdict
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

from espnet_shared_conformer._cli import LOG_FORMAT, command_parser

__all__ = [
    "BOS",
    "EOS",
    "UNK",
    "NgramLM",
    "add_text_argument",
    "estimate_kneser_ney",
    "read_kaldi_text",
    "main",
]

BOS, EOS, UNK = "<s>", "</s>", "<unk>"

Ngram = Tuple[str, ...]


class NgramLM:
    """A backoff n-gram model: ``prob[n][ngram]`` and ``backoff[n][context]``.

    ``prob[n]`` maps every stored n-gram to its probability (not a log);
    ``backoff[n]`` maps an n-gram used as a context to its back-off weight.
    Index 0 of both lists is unused, so ``prob[n]`` holds n-grams.
    """

    def __init__(
        self, prob: List[Dict[Ngram, float]], backoff: List[Dict[Ngram, float]]
    ) -> None:
        self.prob = prob
        self.backoff = backoff

    @property
    def order(self) -> int:
        return len(self.prob) - 1

    @property
    def vocabulary(self) -> List[str]:
        return sorted(g[0] for g in self.prob[1])

    def probability(self, word: str, context: Sequence[str] = ()) -> float:
        """P(word | context), backing off as an ARPA reader does.

        Only the last ``order - 1`` words of ``context`` count; a word outside
        the vocabulary is scored as ``<unk>``.
        """
        if (word,) not in self.prob[1]:
            word = UNK
        context = tuple(w if (w,) in self.prob[1] else UNK for w in context)
        return self._prob(context[len(context) - self.order + 1 :] + (word,))

    def _prob(self, ngram: Ngram) -> float:
        n = len(ngram)
        if ngram in self.prob[n]:
            return self.prob[n][ngram]
        # Unigrams always exist (the vocabulary is closed over <unk>).
        return self.backoff[n - 1].get(ngram[:-1], 1.0) * self._prob(ngram[1:])

    def write_arpa(self, path: Path) -> None:
        """Write the model as an ARPA file (to a temporary name, then renamed)."""
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            f.write("\n\\data\\\n")
            for n in range(1, self.order + 1):
                f.write(f"ngram {n}={len(self.prob[n])}\n")
            for n in range(1, self.order + 1):
                f.write(f"\n\\{n}-grams:\n")
                for ngram in sorted(self.prob[n]):
                    # <s> is only ever a context: ARPA's convention is log10 P = -99.
                    p = self.prob[n][ngram]
                    logp = -99.0 if ngram == (BOS,) else math.log10(p)
                    line = f"{logp:.7f}\t{' '.join(ngram)}"
                    if n < self.order and ngram in self.backoff[n]:
                        line += f"\t{math.log10(self.backoff[n][ngram]):.7f}"
                    f.write(line + "\n")
            f.write("\n\\end\\\n")
        os.replace(tmp, path)


def _discount(counts: Iterable[int]) -> float:
    counts = list(counts)
    n1 = sum(1 for c in counts if c == 1)
    n2 = sum(1 for c in counts if c == 2)
    # With nothing seen once (a toy text) the formula gives 0, i.e. no mass
    # left for unseen words; a middling discount keeps the model smooth.
    # With nothing seen twice it gives 1: every singleton's mass goes to the
    # lower order, which is still a proper distribution.
    return n1 / (n1 + 2 * n2) if n1 else 0.5


def estimate_kneser_ney(sentences: Iterable[Sequence[str]], order: int = 3) -> NgramLM:
    """Estimate an interpolated Kneser-Ney model of the given order.

    ``sentences`` are lists of words, without ``<s>``/``</s>``; empty ones are
    skipped. Raises ``ValueError`` for an order below 1, a sentence that
    contains a reserved symbol, or a text with no words.
    """
    if order < 1:
        raise ValueError(f"order ({order}) must be at least 1")
    raw: List[Dict[Ngram, int]] = [defaultdict(int) for _ in range(order + 1)]
    for i, words in enumerate(sentences):
        if not words:
            continue
        reserved = {BOS, EOS, UNK}.intersection(words)
        if reserved:
            raise ValueError(
                f"sentence {i + 1} contains the reserved symbol {sorted(reserved)[0]}"
            )
        seq = (BOS, *words, EOS)
        for n in range(1, order + 1):
            for start in range(len(seq) - n + 1):
                ngram = seq[start : start + n]
                if ngram != (BOS,):
                    raw[n][ngram] += 1
    if not raw[1]:
        raise ValueError("no words to estimate an n-gram model from")

    # Kneser-Ney's adjusted counts: the highest order keeps raw counts; a
    # lower-order n-gram counts the distinct words seen before it.
    adjusted: List[Dict[Ngram, int]] = [{} for _ in range(order + 1)]
    adjusted[order] = dict(raw[order])
    for n in range(order - 1, 0, -1):
        left_contexts: Dict[Ngram, int] = defaultdict(int)
        for ngram in raw[n + 1]:
            left_contexts[ngram[1:]] += 1
        adjusted[n] = {
            g: (c if g[0] == BOS else left_contexts.get(g, c))
            for g, c in raw[n].items()
        }

    prob: List[Dict[Ngram, float]] = [{} for _ in range(order + 1)]
    backoff: List[Dict[Ngram, float]] = [{} for _ in range(order + 1)]

    # Unigrams, interpolated with a uniform distribution over the words that
    # can be predicted (</s> and <unk> included, so <unk> gets exactly the
    # uniform share). <s> is only ever a context: probability 0.
    discount = _discount(adjusted[1].values())
    total = sum(adjusted[1].values())
    vocabulary = {g[0] for g in adjusted[1]} | {UNK}
    uniform = discount * len(adjusted[1]) / total / len(vocabulary)
    for word in vocabulary:
        prob[1][(word,)] = (
            max(adjusted[1].get((word,), 0) - discount, 0.0) / total + uniform
        )
    prob[1][(BOS,)] = 0.0

    for n in range(2, order + 1):
        discount = _discount(adjusted[n].values())
        context_total: Dict[Ngram, int] = defaultdict(int)
        context_types: Dict[Ngram, int] = defaultdict(int)
        for ngram, c in adjusted[n].items():
            context_total[ngram[:-1]] += c
            context_types[ngram[:-1]] += 1
        for context, c in context_total.items():
            backoff[n - 1][context] = discount * context_types[context] / c
        lower = NgramLM(prob[:n], backoff[:n])
        for ngram, c in adjusted[n].items():
            context = ngram[:-1]
            prob[n][ngram] = max(c - discount, 0.0) / context_total[context] + backoff[
                n - 1
            ][context] * lower._prob(ngram[1:])
    return NgramLM(prob, backoff)


def read_kaldi_text(*paths: Path) -> List[List[str]]:
    """Words of each line of Kaldi-style ``utt-id word word ...`` files, in order."""
    sentences = []
    for path in paths:
        with open(path, encoding="utf-8") as f:
            for number, line in enumerate(f, 1):
                fields = line.split()
                if not fields:
                    raise ValueError(f"{path}:{number}: empty line")
                sentences.append(fields[1:])
    return sentences


def add_text_argument(parser: argparse.ArgumentParser) -> None:
    """``--text``, repeatable: the Kaldi-style texts :func:`read_kaldi_text` reads."""
    parser.add_argument(
        "--text",
        type=Path,
        required=True,
        action="append",
        help="Kaldi-style text (utt-id words...); repeat to add files",
    )


def get_parser() -> argparse.ArgumentParser:
    parser = command_parser(
        "ngram", "Estimate an interpolated Kneser-Ney word n-gram LM; write it as ARPA."
    )
    add_text_argument(parser)
    parser.add_argument("--order", type=int, default=3, help="n-gram order")
    parser.add_argument("--arpa", type=Path, required=True, help="ARPA file to write")
    return parser


def main(argv: Optional[List[str]] = None) -> None:
    args = get_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    try:
        sentences = read_kaldi_text(*args.text)
        lm = estimate_kneser_ney(sentences, args.order)
        args.arpa.parent.mkdir(parents=True, exist_ok=True)
        lm.write_arpa(args.arpa)
    except (OSError, ValueError) as e:
        raise SystemExit(f"ngram: error: {e}") from e
    counts = ", ".join(f"{len(lm.prob[n])} {n}-grams" for n in range(1, lm.order + 1))
    logging.info(
        f"{sum(map(len, sentences))} words in {len(sentences)} sentences -> "
        f"{args.arpa} ({counts})"
    )


if __name__ == "__main__":
    main()
