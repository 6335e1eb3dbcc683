"""Streaming recognition: audio in as it arrives, partial and final transcripts out.

:class:`StreamingRecognizer` chains the streaming parts of the package,
``StreamingFeatures -> chunk encoder -> CTC search``, and cuts a long stream
into utterances at pauses::

    from espnet_shared_conformer.inference import load_model
    from espnet_shared_conformer.recognizer import StreamingRecognizer

    recognizer = StreamingRecognizer.from_model(load_model("packed.zip"))
    for block in microphone:                # mono float32 samples, any length
        update = recognizer.feed(block)
        for utterance in update.finals:     # utterances endpointing closed
            print(utterance.start, utterance.end, utterance.text)
        print(update.partial.text)          # the current one, so far
    last = recognizer.finish()              # the rest: the last utterance

The parts (:mod:`~espnet_shared_conformer.features`,
:mod:`~espnet_shared_conformer.ctc_search`) compute what their offline
counterparts do, so an utterance's transcript is the offline one of the same
model with the same chunk mask (the encoder's ``forward`` with
``chunk_size`` set) over the same stretch of input (tested).

**The encoder** is anything with the :class:`ChunkEncoder` interface: log
posteriors chunk by chunk from feature frames, with an opaque state.
:class:`TorchChunkEncoder` is the PyTorch one
(``SharedConformerEncoder.forward_chunk`` + the CTC head);
``onnx_runtime.OnnxStreamingEncoder`` runs the chunk step that
``onnx_export --streaming`` writes. :meth:`StreamingRecognizer.from_onnx`
builds a recognizer on it that imports neither torch nor ESPnet (an
always-on device carries neither): numpy features from the frontend data
the export writes beside the graph, the ONNX encoder, the greedy or prefix
beam search; it recognizes what the PyTorch recognizer of the same model
and chunks does (tested)::

    recognizer = StreamingRecognizer.from_onnx("model.onnx", search="greedy")

**Endpointing** (:class:`Endpointing`) cuts the stream after a chunk when

1. some speech was heard in the utterance (a frame whose most probable
   token is not blank) and the frames since its last such frame, all blank,
   span at least ``silence`` seconds; or
2. the utterance spans ``max_utterance`` seconds.

After a cut the search returns the utterance's final hypothesis and starts
again, the encoder restarts from an empty state at the next input frame
(the frames it buffered are fed to the new state, so no audio is lost), and
times go on counting from the stream's start: memory stays bounded however
long the stream runs (the encoder's caches by ``num_left_chunks``, or by
``max_utterance`` when that is -1; a search's by the utterance). The
features are computed without a break across cuts. Cuts fall on chunk
boundaries, so an utterance is exactly the offline encoding of its stretch
of input frames. Checks run on whole chunks: a cut comes at the end of the
chunk in which the rule is met.
"""

import math
from dataclasses import dataclass, replace
from typing import (
    TYPE_CHECKING,
    Any,
    List,
    Optional,
    Protocol,
    Sequence,
    Tuple,
    runtime_checkable,
)

import numpy as np

if TYPE_CHECKING:  # the searches import torch: the command's --help need not
    from espnet_shared_conformer.ctc_search import Search, Word

__all__ = [
    "SEARCHES",
    "ChunkEncoder",
    "Endpointing",
    "StreamingRecognizer",
    "TorchChunkEncoder",
    "Update",
    "Utterance",
    "make_search",
]

#: The searches :func:`make_search` builds, by name.
SEARCHES = ("greedy", "prefix_beam", "lexicon")


@runtime_checkable
class ChunkEncoder(Protocol):
    """What the recognizer needs of an encoder: CTC log posteriors, chunk by chunk.

    ``forward_chunk(feats, state, final)`` takes the next normalized feature
    frames ``feats`` (n, F) of one stream, any ``n >= 0``, and returns the
    CTC log posteriors now computable, (m, V) float32, with ``m`` a multiple
    of :attr:`chunk_size` unless ``final`` (which flushes the rest), and the
    next state; the state passed in stays valid. Output frame ``t`` reads
    input frames from ``stride * t`` on, so after ``m`` output frames the
    encoder holds the input from frame ``stride * m`` on.
    """

    #: Output frames per chunk.
    chunk_size: int
    #: Input frames per output frame (the subsampling's step).
    stride: int

    def init_state(self) -> Any:
        """The state of a stream that has seen nothing."""
        ...

    def forward_chunk(
        self, feats: np.ndarray, state: Any, final: bool = False
    ) -> Tuple[np.ndarray, Any]: ...


class TorchChunkEncoder:
    """:class:`ChunkEncoder` of an ESPnet ASR model with a shared-conformer
    encoder: ``encoder.forward_chunk`` then ``ctc.log_softmax``.

    ``chunk_size`` and ``num_left_chunks`` default to the encoder's own
    options. ``ValueError`` where the model cannot stream, naming the reason
    (no chunk size, a symmetric convolution, no CTC head, ...).
    """

    def __init__(
        self,
        asr_model: Any,
        chunk_size: Optional[int] = None,
        num_left_chunks: Optional[int] = None,
    ) -> None:
        from espnet_shared_conformer.subsampling import time_window

        encoder = getattr(asr_model, "encoder", None)
        if not hasattr(encoder, "init_streaming_state"):
            raise ValueError(
                f"the model cannot stream: its encoder ({type(encoder).__name__}) "
                "is not encoder: shared_conformer"
            )
        if getattr(asr_model, "ctc", None) is None:
            raise ValueError("the model cannot stream: it has no CTC head")
        if getattr(asr_model, "preencoder", None) is not None:
            raise ValueError(
                "the model cannot stream: its preencoder "
                f"({type(asr_model.preencoder).__name__}) has no streaming version"
            )
        try:
            self._empty = encoder.init_streaming_state(1, chunk_size, num_left_chunks)
        except ValueError as e:
            raise ValueError(f"the model cannot stream: {e}") from None
        self.encoder = encoder
        self.ctc = asr_model.ctc
        self.chunk_size: int = self._empty.chunk_size
        self.num_left_chunks: int = self._empty.num_left_chunks
        self.stride: int = time_window(encoder.build_options["input_layer"])[1]
        self._device = next(encoder.parameters()).device

    def init_state(self) -> Any:
        # States are immutable: every stream can start from the same one.
        return self._empty

    def forward_chunk(
        self, feats: np.ndarray, state: Any, final: bool = False
    ) -> Tuple[np.ndarray, Any]:
        import torch

        x = torch.as_tensor(np.asarray(feats, dtype=np.float32), device=self._device)
        with torch.inference_mode():
            out, state = self.encoder.forward_chunk(x[None], state, final)
            log_probs = self.ctc.log_softmax(out)[0]
        return log_probs.float().cpu().numpy(), state


@dataclass(frozen=True)
class Endpointing:
    """When :class:`StreamingRecognizer` ends an utterance (module docstring).

    ``silence``: seconds of blank frames after some speech; ``max_utterance``:
    seconds an utterance may last. 0 turns a rule off; both 0, the stream is
    one utterance.
    """

    silence: float = 0.8
    max_utterance: float = 20.0

    def __post_init__(self) -> None:
        for name in ("silence", "max_utterance"):
            value = getattr(self, name)
            if not (value >= 0 and math.isfinite(value)):
                raise ValueError(
                    f"{name} ({value}) must be a non-negative number of seconds "
                    "(0: off)"
                )

    @classmethod
    def off(cls) -> "Endpointing":
        """No cuts: the whole stream is one utterance."""
        return cls(silence=0.0, max_utterance=0.0)


@dataclass(frozen=True)
class Utterance:
    """A stretch of the stream and what was recognized in it.

    Times are seconds from the stream's start: ``start`` where the
    utterance's first output frame begins, ``end`` where its last one (so
    far) ends, each word's as the search gives it (see
    :mod:`~espnet_shared_conformer.ctc_search`), moved by ``start``.
    """

    text: str
    words: Tuple["Word", ...]
    start: float
    end: float
    #: Whether the utterance is over (a partial goes on).
    final: bool
    #: The best hypothesis's token ids and the search's score for it.
    token_ids: Tuple[int, ...] = ()
    score: float = 0.0


@dataclass(frozen=True)
class Update:
    """What one :meth:`StreamingRecognizer.feed` gives."""

    #: Utterances endpointing ended during this block, in order.
    finals: Tuple[Utterance, ...]
    #: The utterance under way, so far.
    partial: Utterance


def make_search(
    kind: str,
    token_list: Sequence[str],
    frame_shift: float,
    beam_size: int = 10,
    lexicon_decoder: Any = None,
) -> "Search":
    """A search of :data:`SEARCHES`: ``greedy``, ``prefix_beam`` (``beam_size``
    prefixes) or ``lexicon`` (``lexicon_decoder``, a ``CTCLexiconDecoder``)."""
    from espnet_shared_conformer.ctc_search import (
        GreedySearch,
        LexiconSearch,
        PrefixBeamSearch,
    )

    if kind == "greedy":
        return GreedySearch(token_list, frame_shift)
    if kind == "prefix_beam":
        return PrefixBeamSearch(token_list, frame_shift, beam_size)
    if kind == "lexicon":
        if lexicon_decoder is None:
            raise ValueError(
                "search 'lexicon' needs the model's lexicon and word LM "
                "(lexicon_file in its decoding config)"
            )
        return LexiconSearch(lexicon_decoder, frame_shift)
    raise ValueError(f"search ({kind!r}) must be one of {', '.join(SEARCHES)}")


@dataclass
class _Current:
    """The utterance under way: where it starts and what endpointing counts."""

    first_frame: int  # output frames of the stream before it
    frames: int = 0  # its output frames so far
    heard: bool = False  # some frame's best token was not blank
    blank_run: int = 0  # frames since the last such frame (all blank)


class StreamingRecognizer:
    """Samples in, partial and final utterances out (see the module docstring).

    Args:
        features: Gives the encoder's input frames: ``begin()``,
            ``step(samples) -> (n, F)``, ``end() -> (n, F)``, and ``dim``
            (F) (a :class:`~espnet_shared_conformer.features.
            StreamingFeatures`).
        encoder: A :class:`ChunkEncoder`.
        search: An incremental CTC search whose ``text.frame_shift`` is the
            encoder's output frame period.
        endpointing: When to end an utterance; :meth:`Endpointing.off` for
            never.

    :meth:`from_model` builds all of it from ``load_model``'s result.
    """

    def __init__(
        self,
        features: Any,
        encoder: ChunkEncoder,
        search: "Search",
        endpointing: Endpointing = Endpointing(),
    ) -> None:
        self.features = features
        self.encoder = encoder
        self.search = search
        self.endpointing = endpointing
        #: Seconds per encoder output frame.
        self.frame_shift: float = search.text.frame_shift
        self._silence_frames = _frames(endpointing.silence, self.frame_shift)
        self._max_frames = _frames(endpointing.max_utterance, self.frame_shift)
        self.reset()

    @classmethod
    def from_model(
        cls,
        transcriber: Any,
        search: Optional[str] = None,
        chunk_size: Optional[int] = None,
        num_left_chunks: Optional[int] = None,
        endpointing: Endpointing = Endpointing(),
        beam_size: Optional[int] = None,
        frames_in: bool = False,
    ) -> "StreamingRecognizer":
        """A recognizer of a loaded model (``inference.load_model``'s result).

        ``search`` (one of :data:`SEARCHES`) defaults to the model's own: the
        lexicon search when it decodes with a lexicon, else the CTC prefix
        beam search at its decoding config's ``beam_size`` (which
        ``beam_size`` overrides). ``chunk_size`` and ``num_left_chunks``
        default to the model's decoding options (a streaming decoding's
        record holds them), else to the encoder's options. ``frames_in``:
        :meth:`feed` takes the model's input features (n, D) instead of
        samples (a model without a frontend, fed dumped fbank:
        ``FeatureFrames``).
        """
        from espnet_shared_conformer.features import FeatureFrames, StreamingFeatures

        model = transcriber.asr_model
        lexicon = transcriber.lexicon_decoder
        if search is None:
            search = "lexicon" if lexicon is not None else "prefix_beam"
        if beam_size is None:
            beam_size = int(transcriber.options.get("beam_size", 10))
        if chunk_size is None:
            chunk_size = transcriber.options.get("chunk_size")
        if num_left_chunks is None:
            num_left_chunks = transcriber.options.get("num_left_chunks")
        encoder = TorchChunkEncoder(model, chunk_size, num_left_chunks)
        if frames_in:
            features: Any = FeatureFrames(model, transcriber.fs)
        else:
            features = StreamingFeatures(model, transcriber.fs, transcriber.n_mels)
        frame_shift = features.hop_length * encoder.stride / transcriber.fs
        return cls(
            features,
            encoder,
            make_search(search, model.token_list, frame_shift, beam_size, lexicon),
            endpointing,
        )

    @classmethod
    def from_onnx(
        cls,
        path: str,
        search: str = "prefix_beam",
        beam_size: int = 10,
        endpointing: Endpointing = Endpointing(),
        threads: int = 1,
        lexicon_decoder: Any = None,
    ) -> "StreamingRecognizer":
        """A recognizer of the chunk step ``path`` that ``onnx_export
        --streaming`` wrote, on ONNX Runtime, without torch or ESPnet.

        The sidecar beside the graph gives the token list and the chunks
        (fixed in the graph); the frontend data beside it the features
        (``onnx_runtime.read_frontend``: ``ValueError`` naming the file for
        a graph exported without them). ``search``: ``greedy`` or
        ``prefix_beam`` (``beam_size`` prefixes); ``lexicon`` needs a
        ``CTCLexiconDecoder`` in ``lexicon_decoder``, which runs on
        torchaudio. ``threads``: ONNX Runtime's intra-op threads.
        """
        from espnet_shared_conformer.features import StreamingFeatures
        from espnet_shared_conformer.onnx_runtime import (
            OnnxStreamingEncoder,
            read_frontend,
            read_sidecar,
            sidecar_path,
        )

        spec = read_sidecar(path)
        if spec["output"] != "log_probs":
            raise ValueError(
                f"{path}: the graph outputs the encoder's frames ({spec['output']}: "
                "exported with --no_ctc); recognition needs its CTC head"
            )
        if not spec.get("token_list"):
            raise ValueError(
                f"{sidecar_path(path)}: no token_list; export the model with "
                "python -m espnet_shared_conformer.onnx_export --streaming"
            )
        frontend = read_frontend(path, spec)
        encoder = OnnxStreamingEncoder(path, threads)
        features = StreamingFeatures(frontend)
        frame_shift = features.hop_length * encoder.stride / frontend.fs
        return cls(
            features,
            encoder,
            make_search(
                search, spec["token_list"], frame_shift, beam_size, lexicon_decoder
            ),
            endpointing,
        )

    def reset(self) -> None:
        """Drop the stream under way: the next :meth:`feed` starts a new one,
        its times from 0."""
        self._started = False

    def _start(self) -> None:
        # Not at reset(): the lexicon search drives the model's decoder, which
        # the model's own transcriber may use between two streams.
        self._started = True
        self.features.begin()
        self._state = self.encoder.init_state()
        # Input frames given to the encoder that no accepted output frame
        # has consumed yet: what it still buffers, fed again after a cut.
        self._pending = self._no_frames()
        self.search.begin()
        self._current = _Current(first_frame=0)

    def feed(self, samples: Any) -> Update:
        """Recognize the next mono samples (T,) of the stream (feature frames
        (n, D) for a recognizer built with ``frames_in``)."""
        if not self._started:
            self._start()
        frames = self.features.step(samples)
        finals = self._encode(_numpy(frames), final=False)
        return Update(tuple(finals), self._utterance(self.search.partial(), False))

    def finish(self) -> Utterance:
        """The final utterance (the rest of the stream, without endpointing);
        the recognizer then starts a new stream (:meth:`reset`)."""
        if not self._started:
            self._start()
        try:
            frames = _numpy(self.features.end())
        except ValueError:
            # Too few samples for one feature frame (the STFT's reflection
            # needs half a window): nothing to recognize.
            frames = self._no_frames()
        self._encode(frames, final=True)
        last = self._utterance(self.search.end(), True)
        self.reset()
        return last

    # -- the loop -------------------------------------------------------------

    def _encode(self, frames: np.ndarray, final: bool) -> List[Utterance]:
        """Feed the encoder, the search and endpointing; the utterances cut."""
        self._pending = np.concatenate([self._pending, frames])
        finals: List[Utterance] = []
        log_probs, self._state = self.encoder.forward_chunk(frames, self._state, final)
        start = 0
        while start < len(log_probs):
            # Whole chunks one at a time, so that a cut can fall after any.
            chunk = log_probs[start : start + self.encoder.chunk_size]
            start += len(chunk)
            self._accept(chunk)
            if not final and self._endpoint():
                finals.append(self._utterance(self.search.end(), True))
                self._restart()
                # What the old state computed after the cut is void: the
                # new one encodes the same input from its own start.
                log_probs, self._state = self.encoder.forward_chunk(
                    self._pending, self._state, False
                )
                start = 0
        if final:
            self._pending = self._pending[:0]
        return finals

    def _no_frames(self) -> np.ndarray:
        return np.zeros((0, self.features.dim), dtype=np.float32)

    def _accept(self, chunk: np.ndarray) -> None:
        """One chunk of log posteriors (m, V): searched, and counted."""
        self.search.step(chunk)
        current = self._current
        current.frames += len(chunk)
        self._pending = self._pending[self.encoder.stride * len(chunk) :]
        speech = np.flatnonzero(chunk.argmax(axis=1) != self.search.text.blank)
        if len(speech):
            current.heard = True
            current.blank_run = len(chunk) - 1 - int(speech[-1])
        else:
            current.blank_run += len(chunk)

    def _endpoint(self) -> bool:
        current = self._current
        paused = (
            self._silence_frames > 0
            and current.heard
            and current.blank_run >= self._silence_frames
        )
        too_long = self._max_frames > 0 and current.frames >= self._max_frames
        return paused or too_long

    def _restart(self) -> None:
        """A new utterance at the next input frame (the features go on)."""
        current = self._current
        self._current = _Current(first_frame=current.first_frame + current.frames)
        self._state = self.encoder.init_state()
        self.search.begin()

    def _utterance(self, hypothesis: Any, final: bool) -> Utterance:
        """The current utterance with ``hypothesis``, in stream times."""
        current = self._current
        start = current.first_frame * self.frame_shift
        words = tuple(
            replace(w, start=w.start + start, end=w.end + start)
            for w in hypothesis.words
        )
        return Utterance(
            text=hypothesis.text,
            words=words,
            start=start,
            end=(current.first_frame + current.frames) * self.frame_shift,
            final=final,
            token_ids=tuple(hypothesis.token_ids),
            score=float(hypothesis.score),
        )


def _frames(seconds: float, frame_shift: float) -> int:
    """Output frames that span ``seconds`` (0 stays 0: a rule turned off)."""
    # A hair below, so that 0.8 s at 40 ms frames is 20 frames, not 21.
    return math.ceil(seconds / frame_shift - 1e-9) if seconds > 0 else 0


def _numpy(frames: Any) -> np.ndarray:
    """Frames (n, F), torch or numpy, as float32 numpy."""
    if hasattr(frames, "detach"):
        frames = frames.detach().cpu().numpy()
    return np.asarray(frames, dtype=np.float32)
