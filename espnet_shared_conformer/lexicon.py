"""CTC decoding constrained to a lexicon, with a word n-gram language model.

ESPnet2's beam search scores tokens; with character tokens it happily spells
words that do not exist, and its inference has no word LM (its
``--word_lm_file`` raises ``NotImplementedError``). This module decodes the
CTC posteriors of an ESPnet model with flashlight's lexicon beam search
(``torchaudio.models.decoder.ctc_decoder``, backed by the ``flashlight-text``
package): every hypothesis is a sequence of lexicon words, scored by the CTC
posteriors plus ``lm_weight`` times a KenLM word n-gram model (an ARPA file,
e.g. from :mod:`espnet_shared_conformer.ngram` or LibriSpeech's official
ones) plus ``word_score`` per word.

The lexicon spells each word in the model's tokens followed by the word
separator (``<space>`` for ESPnet's character token lists)::

    CAT C A T <space>

Importing this module imports no torch (writing a lexicon needs none); the
decoder does, when built: torchaudio wraps flashlight-text's search, so on a
device without torch the streaming searches are the greedy and prefix beam
ones (:mod:`espnet_shared_conformer.ctc_search`).

Command line, to write a lexicon of every word of a text that the token list
can spell::

    python -m espnet_shared_conformer.lexicon --text dump/raw/lm_train.txt \\
        --token_list data/en_token_list/char/tokens.txt \\
        --lexicon exp/word_lm/lexicon.txt
"""

import argparse
import logging
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import (
    TYPE_CHECKING,
    Any,
    Dict,
    Iterable,
    List,
    Mapping,
    Optional,
    Sequence,
    Tuple,
)

from espnet_shared_conformer._cli import LOG_FORMAT, command_parser
from espnet_shared_conformer.ngram import add_text_argument, read_kaldi_text

if TYPE_CHECKING:  # the search runs on torch(audio); importing this needs neither
    import torch

__all__ = [
    "SEPARATOR",
    "LexiconDecoderConfig",
    "CTCLexiconDecoder",
    "write_lexicon",
    "main",
]

# ESPnet's character token lists name the space between words this way.
SEPARATOR = "<space>"
_BLANK = "<blank>"
_UNK = "<unk>"
# Log probability of a token that cannot be emitted (finite: the search adds
# and compares scores).
_IMPOSSIBLE = -1.0e4


def write_lexicon(
    words: Iterable[str], token_list: Sequence[str], path: Path
) -> Tuple[int, List[str]]:
    """Write ``WORD t o k e n s <space>`` for each distinct word the tokens can spell.

    The tokens must be characters (ESPnet's ``--token_type char``). Returns the
    number of words written and the words left out because a character of
    theirs is not a token. Written to a temporary name, then renamed.
    """
    tokens = set(token_list)
    for needed in (_BLANK, SEPARATOR):
        if needed not in tokens:
            raise ValueError(
                f"the token list has no {needed}: a lexicon needs a character "
                "token list (--token_type char) with <blank> and <space>"
            )
    written, skipped = 0, []
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for word in sorted(set(words)):
            if word in (_UNK, "<s>", "</s>"):
                continue
            if all(ch in tokens for ch in word):
                f.write(f"{word} {' '.join(word)} {SEPARATOR}\n")
                written += 1
            else:
                skipped.append(word)
    if written == 0:
        tmp.unlink()
        raise ValueError("no word of the text can be spelled with the token list")
    os.replace(tmp, path)
    return written, skipped


def _check_lexicon(path: Path, token_list: Sequence[str]) -> int:
    """Raise ``ValueError`` naming the first line the model cannot spell."""
    tokens = set(token_list)
    entries = 0
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) < 2:
                raise ValueError(
                    f"{path}:{number}: no spelling for the word {fields[0]!r}"
                )
            unknown = [t for t in fields[1:] if t not in tokens]
            if unknown:
                raise ValueError(
                    f"{path}:{number}: token {unknown[0]!r} of {fields[0]!r} "
                    "is not in the token list"
                )
            entries += 1
    if entries == 0:
        raise ValueError(f"{path}: the lexicon is empty")
    return entries


def _search_option(default: Any, option: str, help: str) -> Any:
    return field(default=default, metadata=dict(option=option, help=help))


@dataclass(frozen=True)
class LexiconDecoderConfig:
    """Search options: ``asr_inference``'s ``--lexicon_*``/``--word_*`` options.

    Each field but ``nbest`` (ESPnet's own ``--nbest``) is one, named in its
    metadata (``option``, with its ``help``). Defaults are those chosen on the
    mini corpus's dev set (recipe README).
    """

    beam_size: int = _search_option(500, "lexicon_beam_size", "hypotheses kept")
    beam_threshold: float = _search_option(
        25.0,
        "lexicon_beam_threshold",
        "prune hypotheses this far (log) below the best",
    )
    lm_weight: float = _search_option(2.0, "word_lm_weight", "weight of the word LM")
    word_score: float = _search_option(2.0, "word_score", "score added per word")
    sil_score: float = _search_option(
        -1.0, "sil_score", "score added per word separator (<space>) frame"
    )
    nbest: int = 1

    @classmethod
    def option_fields(cls) -> Dict[str, str]:
        """The field of each ``asr_inference`` search option."""
        return {f.metadata["option"]: f.name for f in fields(cls) if f.metadata}

    @classmethod
    def from_options(
        cls, options: Mapping[str, Any], nbest: int = 1
    ) -> "LexiconDecoderConfig":
        """The config ``asr_inference``'s search options in ``options`` give
        (missing ones at their defaults; other entries ignored)."""
        given = {
            name: options[option]
            for option, name in cls.option_fields().items()
            if option in options
        }
        return cls(nbest=nbest, **given)

    def __post_init__(self) -> None:
        if self.beam_size < 1:
            raise ValueError(f"lexicon_beam_size ({self.beam_size}) must be at least 1")
        if self.beam_threshold <= 0:
            raise ValueError(
                f"lexicon_beam_threshold ({self.beam_threshold}) must be positive"
            )
        if not 1 <= self.nbest <= self.beam_size:
            raise ValueError(
                f"nbest ({self.nbest}) must be between 1 and "
                f"lexicon_beam_size ({self.beam_size})"
            )


class CTCLexiconDecoder:
    """Lexicon-constrained CTC beam search over one utterance's log posteriors.

    ``token_list`` is the model's (``<blank>`` first, ``<space>`` between
    words); ``word_lm_file`` an ARPA or KenLM binary file, or ``None`` for a
    lexicon search without an LM.
    """

    def __init__(
        self,
        token_list: Sequence[str],
        lexicon_file: Path,
        word_lm_file: Optional[Path] = None,
        config: LexiconDecoderConfig = LexiconDecoderConfig(),
    ) -> None:
        try:
            from torchaudio.models.decoder import ctc_decoder
        except (
            ImportError,
            RuntimeError,
        ) as e:  # torchaudio raises RuntimeError without flashlight-text
            raise ImportError(
                f"lexicon decoding needs the flashlight-text package: {e}"
            ) from e
        token_list = list(token_list)
        if not token_list or token_list[0] != _BLANK:
            raise ValueError(
                f"the token list must start with {_BLANK} (the CTC blank), "
                f"not {token_list[:1]}"
            )
        if SEPARATOR not in token_list:
            raise ValueError(
                f"the token list has no {SEPARATOR}: "
                "lexicon decoding needs character tokens"
            )
        for name, path in (
            ("lexicon_file", lexicon_file),
            ("word_lm_file", word_lm_file),
        ):
            if path is not None and not Path(path).is_file():
                raise FileNotFoundError(f"{name}: no such file: {path}")
        self.num_words = _check_lexicon(Path(lexicon_file), token_list)
        self.token_list = token_list
        self.config = config
        self._index = {t: i for i, t in enumerate(token_list)}
        self._decoder = ctc_decoder(
            lexicon=str(lexicon_file),
            tokens=token_list,
            lm=None if word_lm_file is None else str(word_lm_file),
            nbest=config.nbest,
            beam_size=config.beam_size,
            beam_threshold=config.beam_threshold,
            lm_weight=config.lm_weight,
            word_score=config.word_score,
            sil_score=config.sil_score,
            # Words outside the lexicon are never hypothesised.
            unk_score=float("-inf"),
            log_add=False,
            blank_token=_BLANK,
            sil_token=SEPARATOR,
            unk_word=_UNK,
        )

    def __call__(
        self, log_probs: "torch.Tensor"
    ) -> List[Tuple[List[str], List[int], float]]:
        """Decode ``log_probs`` (T, V): up to ``nbest`` (words, token ids, score).

        Best first.

        The token ids spell the words with ``<space>`` between them, as
        ESPnet's character tokenizer would.
        """
        import torch

        emissions = self._emissions(log_probs)
        if emissions.size(0) == 0:
            return [([], [], 0.0)]
        emissions = torch.cat([emissions, self._closing_frame()]).contiguous()[None]
        results = []
        for hyp in self._decoder(emissions)[0]:
            ids = self.spell(hyp.words)
            results.append((list(hyp.words), ids, float(hyp.score)))
        return results or [([], [], float("-inf"))]

    # Incremental decoding (``ctc_search.LexiconSearch``): the same search,
    # fed frames as they come; after the same frames it ends where
    # ``__call__`` does. Results are (words, per-frame tokens, score): the
    # token the best path takes at each frame since ``decode_begin``, the
    # frame of the closing <space> (and one more of flashlight's) included.

    def decode_begin(self) -> None:
        """Start an utterance."""
        self._decoder.decode_begin()

    def decode_step(self, log_probs: "torch.Tensor") -> None:
        """Search on through ``log_probs`` (T, V)."""
        emissions = self._emissions(log_probs)
        if emissions.size(0):
            self._decoder.decode_step(emissions.contiguous())

    def decode_best(self) -> Tuple[List[str], List[int], float]:
        """The best hypothesis so far, up to its last completed word (flashlight's
        choice: the words after it are not settled)."""
        return self._result(self._decoder.decoder.get_best_hypothesis())

    def decode_end(self) -> List[Tuple[List[str], List[int], float]]:
        """End the utterance: up to ``nbest`` results, best first."""
        self._decoder.decode_step(self._closing_frame())
        self._decoder.decode_end()
        results = self._decoder.decoder.get_all_final_hypothesis()
        return [self._result(r) for r in results[: self.config.nbest]] or [
            ([], [], float("-inf"))
        ]

    def _result(self, result: Any) -> Tuple[List[str], List[int], float]:
        """Words, per-frame tokens and score of a flashlight ``DecodeResult``."""
        words = [self._decoder.word_dict.get_entry(w) for w in result.words if w >= 0]
        # Its first token is the start state's, before the first frame.
        return words, list(result.tokens[1:]), float(result.score)

    def _emissions(self, log_probs: "torch.Tensor") -> "torch.Tensor":
        """``log_probs`` (torch or numpy) checked (T, V), as the float32 CPU
        tensor flashlight reads."""
        import torch

        log_probs = torch.as_tensor(log_probs)
        if log_probs.dim() != 2 or log_probs.size(1) != len(self.token_list):
            raise ValueError(
                f"log_probs must be (T, {len(self.token_list)}) for this token "
                f"list, not {tuple(log_probs.shape)}"
            )
        return log_probs.detach().to("cpu", torch.float32)

    def _closing_frame(self) -> "torch.Tensor":
        """A frame (1, V) that is certainly ``<space>``.

        Every lexicon spelling ends with <space>, but ESPnet's transcripts do
        not, so nothing in the posteriors closes the last word: an utterance
        whose last frame is its last letter lost that word ("CAT" came out
        "CA"), and otherwise a trailing frame had to be spent on an unlikely
        <space>. One extra frame that is certainly <space> ends every
        hypothesis alike. (Dev WER of the mini model: 21.2 -> 20.9%.)
        """
        import torch

        closing = torch.full((1, len(self.token_list)), _IMPOSSIBLE)
        closing[0, self._index[SEPARATOR]] = 0.0
        return closing

    def spell(self, words: Sequence[str]) -> List[int]:
        """Token ids of ``words`` with ``<space>`` between them."""
        index = self._index
        ids: List[int] = []
        for i, word in enumerate(words):
            if i:
                ids.append(index[SEPARATOR])
            ids.extend(index[ch] for ch in word)
        return ids


def get_parser() -> argparse.ArgumentParser:
    parser = command_parser(
        "lexicon",
        "Write a lexicon (word -> characters + <space>) of every word of a "
        "Kaldi-style text.",
    )
    add_text_argument(parser)
    parser.add_argument(
        "--token_list",
        type=Path,
        required=True,
        help="the ASR model's token list, one per line",
    )
    parser.add_argument(
        "--lexicon", type=Path, required=True, help="lexicon file to write"
    )
    return parser


def main(argv: Optional[List[str]] = None) -> None:
    args = get_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    try:
        token_list = args.token_list.read_text(encoding="utf-8").split()
        words = [w for sentence in read_kaldi_text(*args.text) for w in sentence]
        args.lexicon.parent.mkdir(parents=True, exist_ok=True)
        written, skipped = write_lexicon(words, token_list, args.lexicon)
    except (OSError, ValueError) as e:
        raise SystemExit(f"lexicon: error: {e}") from e
    if skipped:
        logging.warning(
            f"{len(skipped)} words have characters outside the token list, "
            f"e.g. {skipped[:5]}"
        )
    logging.info(
        f"{len(words)} words of {', '.join(map(str, args.text))} -> "
        f"{args.lexicon} ({written} entries)"
    )


if __name__ == "__main__":
    main()
