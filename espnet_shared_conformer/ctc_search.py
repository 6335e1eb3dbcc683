"""Incremental CTC searches: fed log posteriors chunk by chunk, as a streaming
encoder produces them.

Every search has the same four calls, so that a streaming recognizer is
``features -> encoder.forward_chunk -> ctc.log_softmax -> search.step``::

    search.begin()                  # a new utterance
    for chunk in chunks:            # (T_chunk, V) CTC log posteriors, any T_chunk
        search.step(chunk)
        print(search.partial().text)
    best = search.end()             # Hypothesis: text, token ids, words with times

:class:`GreedySearch` (best token per frame), :class:`PrefixBeamSearch` (CTC
prefix beam search: the most probable label sequences, every alignment of
each summed) and :class:`LexiconSearch` (the lexicon-constrained search with
a word n-gram of :mod:`espnet_shared_conformer.lexicon`, through flashlight's
incremental ``decode_begin`` / ``decode_step`` / ``decode_end``). Fed the same
frames in any chunks, each ends where its offline counterpart does (tested):
:func:`greedy_search`, :func:`prefix_beam_search` (one step over the whole
utterance) and ``CTCLexiconDecoder.__call__``.

Words carry times: a word starts at the frame of its first token and ends
one frame after its last token's frame, in seconds (frame index times
``frame_shift``, the encoder's output frame period: the feature hop times
the subsampling factor, 40 ms for 10 ms hops and conv2d). A token's frame is
where the best path first emits it.

Tokens become text as ESPnet's tokenizers do: ``<space>`` separates the
words of a character token list, ``▁`` starts a word of a sentencepiece one.

Log posteriors are numpy arrays or torch tensors alike; the greedy and
prefix beam searches compute with numpy, and importing this module imports
no torch (an ONNX Runtime device has none). The lexicon search drives
torchaudio's flashlight decoder, so it needs torch when it runs.
"""

import abc
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

if TYPE_CHECKING:  # torch: only where a caller has it
    import torch

    from espnet_shared_conformer.lexicon import CTCLexiconDecoder

__all__ = [
    "GreedySearch",
    "Hypothesis",
    "LexiconSearch",
    "PrefixBeamSearch",
    "Search",
    "TokenText",
    "Word",
    "greedy_search",
    "prefix_beam_search",
]

LogProbs = Union["torch.Tensor", np.ndarray]

_BLANK = "<blank>"
_SPACE = "<space>"  # word separator of ESPnet's character token lists
_PIECE_START = "\u2581"  # "▁": sentencepiece's mark of a word's first piece
_NEG_INF = float("-inf")


@dataclass(frozen=True)
class Word:
    """A recognized word and where it is, in seconds from the utterance start."""

    word: str
    start: float
    end: float


@dataclass(frozen=True)
class Hypothesis:
    """A search's result: text, token ids, words with times, log score."""

    text: str
    token_ids: Tuple[int, ...]
    words: Tuple[Word, ...]
    #: The search's own score: the best path's log probability (greedy), the
    #: prefix's log probability over all its alignments (prefix search), the
    #: CTC + LM + word score sum (lexicon search).
    score: float


class TokenText:
    """How a token list's ids become words: ``<space>`` or ``▁`` conventions.

    ``token_list`` is the model's, ``<blank>`` first (ESPnet's CTC blank).
    """

    def __init__(self, token_list: Sequence[str], frame_shift: float) -> None:
        token_list = list(token_list)
        if not token_list or token_list[0] != _BLANK:
            raise ValueError(
                f"the token list must start with {_BLANK} (the CTC blank), "
                f"not {token_list[:1]}"
            )
        if not frame_shift > 0:
            raise ValueError(f"frame_shift ({frame_shift}) must be positive seconds")
        self.token_list = token_list
        self.frame_shift = float(frame_shift)
        self.blank = 0
        self._characters = _SPACE in token_list

    @property
    def vocab_size(self) -> int:
        return len(self.token_list)

    def check(self, log_probs: LogProbs) -> None:
        """``ValueError`` unless ``log_probs`` is (T, V) for this token list."""
        shape = tuple(log_probs.shape)
        if len(shape) != 2 or shape[1] != self.vocab_size:
            raise ValueError(
                f"log_probs must be (T, {self.vocab_size}) for this token list, "
                f"not {shape}"
            )

    def words(self, token_ids: Sequence[int], frames: Sequence[int]) -> List[Word]:
        """The words the tokens spell, timed by the tokens' ``frames``."""
        return [
            self.timed(text, first, last)
            for text, first, last in self.spellings(token_ids, frames)
        ]

    def spellings(
        self, token_ids: Sequence[int], frames: Sequence[int]
    ) -> List[Tuple[str, int, int]]:
        """Each word's text and the frames of its first and last tokens."""
        groups: List[Tuple[str, int, int]] = []
        for token_id, frame in zip(token_ids, frames, strict=True):
            token = self.token_list[token_id]
            if self._characters and token == _SPACE:
                groups.append(("", -1, -1))
                continue
            if not self._characters and token.startswith(_PIECE_START):
                groups.append(("", -1, -1))
                token = token[len(_PIECE_START) :]
            if not groups:
                groups.append(("", -1, -1))
            text, first, _ = groups[-1]
            if token:
                groups[-1] = (text + token, frame if first < 0 else first, frame)
        return [group for group in groups if group[0]]

    def timed(self, word: str, first: int, last: int) -> Word:
        """A :class:`Word` from the frames of its first and last tokens."""
        return Word(word, first * self.frame_shift, (last + 1) * self.frame_shift)

    def hypothesis(
        self, token_ids: Sequence[int], frames: Sequence[int], score: float
    ) -> Hypothesis:
        """A :class:`Hypothesis` of the tokens (their text is the words')."""
        words = self.words(token_ids, frames)
        return Hypothesis(
            " ".join(w.word for w in words), tuple(token_ids), tuple(words), score
        )


class Search(abc.ABC):
    """What every incremental search does (see the module for the calls)."""

    def __init__(self, text: TokenText) -> None:
        self.text = text
        #: Frames stepped through since :meth:`begin`.
        self.frames = 0
        self._begun = False

    def begin(self) -> None:
        """Forget everything: a new utterance starts."""
        self.frames = 0
        self._begun = True
        self._begin()

    def step(self, log_probs: LogProbs) -> None:
        """Search on through ``log_probs`` (T_chunk, V): CTC log posteriors."""
        if not self._begun:
            raise RuntimeError("step() before begin()")
        self.text.check(log_probs)
        self._step(log_probs)
        self.frames += len(log_probs)

    def partial(self) -> Hypothesis:
        """The best hypothesis so far (the search goes on)."""
        if not self._begun:
            raise RuntimeError("partial() before begin()")
        return self._partial()

    def end(self) -> Hypothesis:
        """The final hypothesis; :meth:`begin` starts the next utterance."""
        if not self._begun:
            raise RuntimeError("end() before begin()")
        self._begun = False
        return self._end()

    @abc.abstractmethod
    def _begin(self) -> None: ...

    @abc.abstractmethod
    def _step(self, log_probs: LogProbs) -> None: ...

    @abc.abstractmethod
    def _partial(self) -> Hypothesis: ...

    def _end(self) -> Hypothesis:
        return self._partial()


# ---------------------------------------------------------------- greedy


def greedy_search(
    log_probs: LogProbs, token_list: Sequence[str], frame_shift: float
) -> Hypothesis:
    """Offline best-path decoding of one utterance's ``log_probs`` (T, V):
    the best token of every frame, repeats merged, blanks dropped."""
    text = TokenText(token_list, frame_shift)
    text.check(log_probs)
    scores = _float64(log_probs)
    if len(scores) == 0:
        return text.hypothesis([], [], 0.0)
    path = scores.argmax(axis=1)
    best = scores[np.arange(len(path)), path]
    # A token is emitted where the path changes to it from something else.
    changed = np.ones(len(path), dtype=bool)
    changed[1:] = path[1:] != path[:-1]
    frames = np.flatnonzero(changed & (path != text.blank))
    return text.hypothesis(path[frames].tolist(), frames.tolist(), float(best.sum()))


class GreedySearch(Search):
    """:func:`greedy_search`, chunk by chunk: the partial is a prefix of the final."""

    def __init__(self, token_list: Sequence[str], frame_shift: float) -> None:
        super().__init__(TokenText(token_list, frame_shift))

    def _begin(self) -> None:
        self._previous = -1  # the last frame's best token, across chunks
        self._ids: List[int] = []
        self._frames: List[int] = []
        self._score = 0.0

    def _step(self, log_probs: LogProbs) -> None:
        scores = _float64(log_probs)
        path = scores.argmax(axis=1)
        self._score += float(scores[np.arange(len(path)), path].sum())
        for offset, token in enumerate(path.tolist()):
            if token != self._previous and token != self.text.blank:
                self._ids.append(token)
                self._frames.append(self.frames + offset)
            self._previous = token

    def _partial(self) -> Hypothesis:
        return self.text.hypothesis(self._ids, self._frames, float(self._score))


# ---------------------------------------------------------------- prefix search


@dataclass
class _Prefix:
    """A label sequence's probability, split by whether its paths end in blank."""

    blank: float = _NEG_INF  # log P(prefix, path ends in blank)
    nonblank: float = _NEG_INF  # log P(prefix, path ends in its last token)
    # The frames of its tokens along its most probable single contribution.
    frames: Tuple[int, ...] = ()
    strongest: float = _NEG_INF

    @property
    def total(self) -> float:
        return _logaddexp(self.blank, self.nonblank)

    def add(self, blank: bool, value: float, frames: Tuple[int, ...]) -> None:
        if blank:
            self.blank = _logaddexp(self.blank, value)
        else:
            self.nonblank = _logaddexp(self.nonblank, value)
        if value > self.strongest:
            self.strongest, self.frames = value, frames


class PrefixBeamSearch(Search):
    """CTC prefix beam search: the ``beam_size`` most probable label sequences.

    Each prefix's probability sums all its alignments (blank-ending and
    token-ending paths kept apart, so that a repeated token needs a blank
    between). Each frame extends the prefixes with its ``token_beam`` most
    probable tokens (default: ``beam_size``); with both at least the number
    of possible prefixes and tokens, the search is exact. No ESPnet: the
    search only needs the log posteriors.
    """

    def __init__(
        self,
        token_list: Sequence[str],
        frame_shift: float,
        beam_size: int = 10,
        token_beam: Optional[int] = None,
    ) -> None:
        super().__init__(TokenText(token_list, frame_shift))
        if beam_size < 1:
            raise ValueError(f"beam_size ({beam_size}) must be at least 1")
        token_beam = beam_size if token_beam is None else token_beam
        if token_beam < 1:
            raise ValueError(f"token_beam ({token_beam}) must be at least 1")
        self.beam_size = beam_size
        self.token_beam = min(token_beam, self.text.vocab_size)

    def _begin(self) -> None:
        self._beam: Dict[Tuple[int, ...], _Prefix] = {(): _Prefix(blank=0.0)}

    def _step(self, log_probs: LogProbs) -> None:
        rows = _float64(log_probs)
        # A stable sort: equal scores keep the token order, whatever the chunks.
        candidates = np.argsort(-rows, axis=1, kind="stable")[:, : self.token_beam]
        for offset, (row, tokens) in enumerate(zip(rows, candidates, strict=True)):
            self._extend(row.tolist(), tokens.tolist(), self.frames + offset)

    def _extend(self, row: List[float], tokens: List[int], frame: int) -> None:
        """One frame: every prefix stays (blank, its last token) or grows."""
        blank = self.text.blank
        grown: Dict[Tuple[int, ...], _Prefix] = {}
        for prefix, state in self._beam.items():
            total = state.total
            stay = grown.setdefault(prefix, _Prefix(frames=state.frames))
            stay.add(True, total + row[blank], state.frames)
            last = prefix[-1] if prefix else None
            if last is not None:  # the last token goes on: no new label
                stay.add(False, state.nonblank + row[last], state.frames)
            for token in tokens:
                # The same token again is a new label only after a blank.
                value = (state.blank if token == last else total) + row[token]
                if token == blank or value == _NEG_INF:
                    continue
                frames = state.frames + (frame,)
                longer = grown.setdefault(prefix + (token,), _Prefix(frames=frames))
                longer.add(False, value, frames)
        best = sorted(grown.items(), key=lambda item: item[1].total, reverse=True)
        self._beam = dict(best[: self.beam_size])

    def nbest(self) -> List[Hypothesis]:
        """Every hypothesis of the beam, best first."""
        ranked = sorted(self._beam.items(), key=lambda i: i[1].total, reverse=True)
        return [
            self.text.hypothesis(prefix, state.frames, float(state.total))
            for prefix, state in ranked
        ]

    def _partial(self) -> Hypothesis:
        return self.nbest()[0]


def prefix_beam_search(
    log_probs: LogProbs,
    token_list: Sequence[str],
    frame_shift: float,
    beam_size: int = 10,
    token_beam: Optional[int] = None,
) -> Hypothesis:
    """Offline :class:`PrefixBeamSearch` of one utterance's ``log_probs`` (T, V)."""
    search = PrefixBeamSearch(token_list, frame_shift, beam_size, token_beam)
    search.begin()
    search.step(log_probs)
    return search.end()


# ---------------------------------------------------------------- lexicon


class LexiconSearch(Search):
    """The lexicon + word n-gram search of a ``CTCLexiconDecoder``, incrementally.

    Ends where the decoder's offline call ends for the same frames (the same
    closing ``<space>`` frame, see ``CTCLexiconDecoder``). The partial holds
    the words the best hypothesis has completed (a word is complete at the
    ``<space>`` after it); a later frame can still change them, as the beam
    search revises its choice. Memory grows with the utterance, as offline:
    a recognizer ends utterances at pauses.
    """

    def __init__(self, decoder: "CTCLexiconDecoder", frame_shift: float) -> None:
        super().__init__(TokenText(decoder.token_list, frame_shift))
        self.decoder = decoder

    def _begin(self) -> None:
        self.decoder.decode_begin()

    def _step(self, log_probs: LogProbs) -> None:
        import torch

        self.decoder.decode_step(torch.as_tensor(log_probs))

    def _hypothesis(
        self, words: List[str], frame_tokens: List[int], score: float
    ) -> Hypothesis:
        ids, frames = _collapse(frame_tokens, self.text.blank)
        spellings = self.text.spellings(ids, frames)
        # Every word the search emitted is spelled by its own run of tokens
        # between <space>s (the lexicon's spelling: not always the word's
        # letters, so the word is named by the search). A partial path may
        # end in the first letters of a word not yet emitted.
        assert len(spellings) >= len(words), (spellings, words)
        spellings = spellings[: len(words)]
        timed = tuple(
            self.text.timed(word, first, last)
            for word, (_, first, last) in zip(words, spellings, strict=True)
        )
        return Hypothesis(
            " ".join(words), tuple(self.decoder.spell(words)), timed, score
        )

    def _partial(self) -> Hypothesis:
        return self._hypothesis(*self.decoder.decode_best())

    def _end(self) -> Hypothesis:
        results = self.decoder.decode_end()
        if self.frames == 0:  # as the offline call: nothing said, score 0
            return Hypothesis("", (), (), 0.0)
        return self._hypothesis(*results[0])


def _float64(log_probs: Any) -> np.ndarray:
    """(T, V) log posteriors, numpy or torch (any device), as float64 numpy."""
    if hasattr(log_probs, "detach"):  # a torch tensor: no torch import needed
        log_probs = log_probs.detach().cpu().double().numpy()
    return np.asarray(log_probs, dtype=np.float64)


def _logaddexp(a: float, b: float) -> float:
    """log(exp(a) + exp(b)) of Python floats (numpy's is slower per call)."""
    if a == _NEG_INF:
        return b
    if b == _NEG_INF:
        return a
    return max(a, b) + math.log1p(math.exp(-abs(a - b)))


def _collapse(frame_tokens: Sequence[int], blank: int) -> Tuple[List[int], List[int]]:
    """CTC's rule on a per-frame path: (emitted tokens, the frame of each)."""
    ids, frames = [], []
    previous = -1
    for frame, token in enumerate(frame_tokens):
        if token != previous and token != blank:
            ids.append(token)
            frames.append(frame)
        previous = token
    return ids, frames
