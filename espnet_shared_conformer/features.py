"""A model's input features, computed as audio arrives.

:class:`StreamingFeatures` takes mono samples in blocks of any size and gives
the frames the model's encoder reads, normalized, as soon as each is
complete: the first stage of a streaming recognizer, ``features ->
encoder.forward_chunk -> ctc.log_softmax -> search.step``
(:mod:`espnet_shared_conformer.ctc_search`)::

    features = StreamingFeatures(asr_model)
    features.begin()
    for block in audio_blocks:          # (T_block,) float32 at the model's rate
        frames = features.step(block)   # (n, D), n >= 0
    frames = features.end()             # the last frames

It computes what the model computes offline, with the model's own modules
where they work frame by frame, for the two inputs the recipe trains on:

- raw audio through ESPnet's default frontend: STFT (``n_fft``,
  ``win_length``, ``hop_length``, window of the model's config), power
  spectrum, the frontend's log-mel (its ``LogMel`` module), then the model's
  global MVN (its ``GlobalMVN`` module);
- Kaldi fbank features (a model trained on dumped ``fbank``, no frontend):
  :func:`espnet_shared_conformer.audio_io.kaldi_fbank` (25 ms windows every
  10 ms, ``snip_edges``), then the model's global MVN.

Edges. ESPnet's STFT is ``center=True``: the signal is padded with
``n_fft // 2`` samples on each side, reflected. Neither end needs to be
guessed: the reflection before the first sample is the ``n_fft // 2``
samples after it, which arrive before frame 0 can be computed anyway, and
:meth:`end` pads the end by reflecting the last samples, as the offline STFT
does. So every frame equals the offline one, the first and the last
included (the tests hold all of them to 1e-4); what the edges cost is
latency. A frame comes out once the samples up to its centre plus
``n_fft // 2`` are in (16 ms past its centre for n_fft 512 at 16 kHz; frame
0 waits for one sample more, the last its reflection needs), and
:meth:`end` gives the frames whose windows reach past the end: the last
``(n_fft // 2) / hop_length`` frames, rounded down or up with where the
audio ends (exactly 2 for n_fft 512, hop 128). Kaldi fbank frames hold only
their own 25 ms (``snip_edges``): each comes out when its window is
complete, :meth:`end` gives none, and samples after the last complete
window are dropped, as offline.

An utterance-level normalization (``utterance_mvn``) needs the whole
utterance and cannot stream: it is refused with a ``ValueError``, as are
frontends other than ESPnet's default.

Two ways to compute a frame, one framing. The edges and the cutting into
frames (:class:`_Framer`) work on numpy; what turns the samples of complete
frames into features is a function plugged in:

- the model's own modules (``StreamingFeatures(asr_model)``): torch's STFT,
  the frontend's ``LogMel``, the model's ``GlobalMVN``; torch is imported
  there only;
- :class:`LogMelFrontend` (``StreamingFeatures(frontend)``): ESPnet's default
  frontend written down as numbers (STFT sizes, the window's values, the
  ``LogMel``'s mel matrix, its log) and computed with numpy alone, for a
  runtime without torch. ``onnx_export --streaming`` writes one beside the
  graph (:mod:`~espnet_shared_conformer.onnx_runtime`); its frames equal the
  torch ones to 1e-4 (tested, every frame). The global MVN is then the
  graph's.

Importing this module imports numpy only.

:class:`FeatureFrames` has the same calls for features computed elsewhere
(the recipe's dumped fbank, which ESPnet's decoding reads): it normalizes
them as the model does, frame by frame.
"""

import math
from dataclasses import dataclass
from typing import Any, Callable, Dict, Mapping, NamedTuple, Optional

import numpy as np

__all__ = ["LOG_FLOOR", "FeatureFrames", "LogMelFrontend", "StreamingFeatures"]

# torchaudio's Kaldi fbank: 25 ms windows every 10 ms.
_FBANK_WINDOW_SECONDS = 0.025
_FBANK_HOP_SECONDS = 0.010
#: ESPnet's ``LogMel`` clamps the mel energies to this before the log (a
#: constant of its code, not an option).
LOG_FLOOR = 1e-10

#: The padded samples of whole frames (T,) -> their features (n, D).
FrameFunction = Callable[[np.ndarray], np.ndarray]


class _Framer:
    """Cuts a stream of samples into frames of ``length`` every ``hop``.

    Holds the samples not yet consumed; ``take`` returns the span that the
    complete frames cover (for a frame function to cut the same way) and
    drops the samples no later frame needs.
    """

    def __init__(self, length: int, hop: int) -> None:
        self.length = length
        self.hop = hop
        self.pending = np.zeros(0, np.float32)

    def push(self, samples: np.ndarray) -> None:
        self.pending = np.concatenate([self.pending, samples])

    def take(self) -> Optional[np.ndarray]:
        """The samples of every complete frame, or None when there is none."""
        if len(self.pending) < self.length:
            return None
        frames = 1 + (len(self.pending) - self.length) // self.hop
        span = self.pending[: (frames - 1) * self.hop + self.length]
        self.pending = self.pending[frames * self.hop :]
        return span


@dataclass(frozen=True, eq=False)
class LogMelFrontend:
    """ESPnet's default frontend as numbers, its log-mel computed with numpy.

    STFT (``n_fft``, ``hop_length``, ``window``, ``center``: the signal
    padded by ``n_fft // 2`` reflected samples at each end, which
    :class:`StreamingFeatures` does), power spectrum, the ``LogMel``'s mel
    matrix, energies clamped to ``floor``, log (natural, or ``log_base``).
    :meth:`of_module` reads them from ESPnet's module (the mel matrix is
    the module's, not computed again); :meth:`arrays` and
    :meth:`description` are what an export stores, :meth:`from_saved` reads
    them back, checked.
    """

    fs: int
    n_fft: int
    win_length: int
    hop_length: int
    #: (n_fft,) float32: the window as the STFT applies it, ``win_length``
    #: values centred in ``n_fft`` (torch.stft's padding); ones for none.
    window: np.ndarray
    #: (n_fft // 2 + 1, n_mels) float32: power bins -> mel energies.
    mel: np.ndarray
    center: bool = True
    #: torch.stft's ``normalized``: the spectrum scaled by n_fft ** -0.5.
    normalized: bool = False
    #: None: natural log (ESPnet's default); else 2.0, 10.0, ...
    log_base: Optional[float] = None
    floor: float = LOG_FLOOR
    #: The window's name (``hann``), for people reading an export.
    window_name: Optional[str] = None

    def __post_init__(self) -> None:
        bins = self.n_fft // 2 + 1
        if self.window.shape != (self.n_fft,):
            raise ValueError(
                f"window {self.window.shape} must be (n_fft,) = ({self.n_fft},)"
            )
        if self.mel.ndim != 2 or self.mel.shape[0] != bins:
            raise ValueError(
                f"mel matrix {self.mel.shape} must be (n_fft // 2 + 1, n_mels) "
                f"= ({bins}, n_mels)"
            )
        if self.hop_length < 1 or not 1 <= self.win_length <= self.n_fft:
            raise ValueError(
                f"hop_length ({self.hop_length}) must be at least 1 and "
                f"win_length ({self.win_length}) in [1, n_fft ({self.n_fft})]"
            )

    @property
    def dim(self) -> int:
        """Features per frame (``n_mels``)."""
        return int(self.mel.shape[1])

    def frames(self, span: np.ndarray) -> np.ndarray:
        """Log-mel frames (n, n_mels) float32 of the padded samples ``span``
        (every frame whole: the caller has padded and cut)."""
        windows = np.lib.stride_tricks.sliding_window_view(span, self.n_fft)
        # float64: torch computes in float32, this stays within 1e-4 of it
        # where float32 would add its own rounding to torch's.
        windows = windows[:: self.hop_length].astype(np.float64) * self.window
        spectrum = np.fft.rfft(windows, axis=1)  # (n, F)
        if self.normalized:
            spectrum /= math.sqrt(self.n_fft)
        power = spectrum.real**2 + spectrum.imag**2
        energies = np.maximum(power @ self.mel, self.floor)
        if self.log_base is None:
            feats = np.log(energies)
        elif self.log_base == 2.0:
            feats = np.log2(energies)
        elif self.log_base == 10.0:
            feats = np.log10(energies)
        else:
            feats = np.log(energies) / math.log(self.log_base)
        return feats.astype(np.float32)

    def description(self) -> Dict[str, Any]:
        """The scalars, for a JSON file (the arrays: :meth:`arrays`)."""
        return {
            "kind": "default",
            "fs": self.fs,
            "n_fft": self.n_fft,
            "win_length": self.win_length,
            "hop_length": self.hop_length,
            "window": self.window_name,
            "center": self.center,
            "normalized": self.normalized,
            "n_mels": self.dim,
            "log_base": self.log_base,
            "floor": self.floor,
        }

    def arrays(self) -> Dict[str, np.ndarray]:
        """The window and the mel matrix, for an ``.npz`` file."""
        return {"window": self.window, "mel": self.mel}

    @classmethod
    def from_saved(
        cls, description: Mapping[str, Any], arrays: Mapping[str, np.ndarray]
    ) -> "LogMelFrontend":
        """What :meth:`description` and :meth:`arrays` wrote; ``ValueError``
        naming what is missing or inconsistent."""
        if description.get("kind") != "default":
            raise ValueError(
                f"frontend kind ({description.get('kind')!r}) is not 'default'"
            )
        missing = [k for k in ("window", "mel") if k not in arrays]
        missing += [
            k
            for k in ("fs", "n_fft", "win_length", "hop_length", "center", "n_mels")
            if k not in description
        ]
        if missing:
            raise ValueError(f"frontend data without {', '.join(missing)}")
        frontend = cls(
            fs=int(description["fs"]),
            n_fft=int(description["n_fft"]),
            win_length=int(description["win_length"]),
            hop_length=int(description["hop_length"]),
            window=np.asarray(arrays["window"], np.float32),
            mel=np.asarray(arrays["mel"], np.float32),
            center=bool(description["center"]),
            normalized=bool(description.get("normalized", False)),
            log_base=description.get("log_base"),
            floor=float(description.get("floor", LOG_FLOOR)),
            window_name=description.get("window"),
        )
        if frontend.dim != description["n_mels"]:
            raise ValueError(
                f"mel matrix {frontend.mel.shape}: n_mels is {description['n_mels']}"
            )
        return frontend

    @classmethod
    def of_module(cls, frontend: Any) -> "LogMelFrontend":
        """The numbers of ESPnet's ``DefaultFrontend`` module ``frontend``
        (imports torch); ``ValueError`` for another frontend."""
        import torch

        stft = _default_stft(frontend)
        if not stft.onesided:
            raise ValueError("frontend: a two-sided STFT has no log-mel (onesided)")
        if stft.window is None:
            values = torch.ones(stft.win_length)
        else:
            values = getattr(torch, f"{stft.window}_window")(stft.win_length)
        left = (stft.n_fft - stft.win_length) // 2
        window = np.zeros(stft.n_fft, np.float32)
        window[left : left + stft.win_length] = values.numpy()
        logmel = frontend.logmel
        return cls(
            fs=int(logmel.mel_options["sr"]),
            n_fft=int(stft.n_fft),
            win_length=int(stft.win_length),
            hop_length=int(stft.hop_length),
            window=window,
            mel=logmel.melmat.detach().cpu().float().numpy().copy(),
            center=bool(stft.center),
            normalized=bool(stft.normalized),
            log_base=None if logmel.log_base is None else float(logmel.log_base),
            window_name=stft.window,
        )


class _Extractor(NamedTuple):
    """How to cut and compute a model's frames."""

    frames: FrameFunction  # the padded samples of whole frames -> (n, D)
    length: int  # samples per frame
    hop: int  # samples between frames
    pad: int  # reflected samples at each end (center=True), else 0
    dim: int  # features per frame


class StreamingFeatures:
    """A model's normalized input frames (n, D), from samples in blocks.

    ``source`` is either an ESPnet ASR model (``load_model(...).asr_model``),
    whose modules compute the frames (torch), or a :class:`LogMelFrontend`,
    computed with numpy (its frames the graph's input: not normalized here).
    For a model without a frontend (trained on Kaldi fbank), ``fs`` is the
    rate of the samples and the fbank has as many bins as its encoder's
    input (``n_mels``, required then: ``load_model(...).n_mels``).
    """

    def __init__(
        self, source: Any, fs: int = 16000, n_mels: Optional[int] = None
    ) -> None:
        if isinstance(source, LogMelFrontend):
            extractor = _Extractor(
                source.frames,
                source.n_fft,
                source.hop_length,
                source.n_fft // 2 if source.center else 0,
                source.dim,
            )
        else:
            extractor = _model_extractor(source, fs, n_mels)
        self._extractor = extractor
        #: The samples' rate.
        self.fs: int = source.fs if isinstance(source, LogMelFrontend) else int(fs)
        #: Features per frame.
        self.dim: int = extractor.dim
        #: Samples between frames: the frame shift is ``hop_length / fs`` s
        #: (times the encoder's subsampling, for the CTC searches' frames).
        self.hop_length: int = extractor.hop
        self._pad = extractor.pad
        self._begun = False

    def begin(self) -> None:
        """Start an utterance."""
        self._framer = _Framer(self._extractor.length, self._extractor.hop)
        self._head = np.zeros(0, np.float32)  # held until the start can be padded
        self._tail = np.zeros(0, np.float32)  # the last pad + 1 samples, for the end
        self._started = self._pad == 0
        self._begun = True

    def step(self, samples: Any) -> np.ndarray:
        """The frames (n, D) float32 that ``samples`` (T,) complete; n may be 0."""
        if not self._begun:
            raise RuntimeError("step() before begin()")
        block = np.asarray(samples, dtype=np.float32)
        if block.ndim != 1:
            raise ValueError(
                f"samples must be mono (T,), not an array of shape {block.shape}"
            )
        if self._pad:
            self._tail = np.concatenate([self._tail, block])[-(self._pad + 1) :]
        if not self._started:
            self._head = np.concatenate([self._head, block])
            if len(self._head) <= self._pad:
                return self._empty()
            # What torch.stft's reflection puts before the first sample.
            reflected = self._head[1 : self._pad + 1][::-1]
            block = np.concatenate([reflected, self._head])
            self._started = True
        self._framer.push(block)
        return self._emit()

    def end(self) -> np.ndarray:
        """The last frames (n, D); :meth:`begin` starts the next utterance."""
        if not self._begun:
            raise RuntimeError("end() before begin()")
        self._begun = False
        if not self._pad:
            return self._emit()
        if not self._started:
            raise ValueError(
                f"{len(self._head)} samples: the model's STFT pads "
                f"{self._pad} samples by reflection and needs more than that"
            )
        # What torch.stft's reflection puts after the last sample.
        self._framer.push(self._tail[:-1][::-1])
        return self._emit()

    def _emit(self) -> np.ndarray:
        span = self._framer.take()
        if span is None:
            return self._empty()
        return self._extractor.frames(span)

    def _empty(self) -> np.ndarray:
        return np.zeros((0, self.dim), np.float32)


class FeatureFrames:
    """Feature frames computed elsewhere (n, D), normalized as ``asr_model``
    normalizes them: :class:`StreamingFeatures`' calls for a model without a
    frontend fed its dumped features (Kaldi fbank at ``fs``)."""

    def __init__(self, asr_model: Any, fs: int = 16000) -> None:
        self._normalize = _normalizer(getattr(asr_model, "normalize", None))
        #: Features per frame: what the encoder reads.
        self.dim = int(asr_model.encoder.build_options["input_size"])
        #: Samples between frames at ``fs`` (Kaldi's 10 ms).
        self.hop_length = int(fs * _FBANK_HOP_SECONDS)
        self._begun = False

    def begin(self) -> None:
        """Start an utterance."""
        self._begun = True

    def step(self, frames: Any) -> np.ndarray:
        """``frames`` (n, D), normalized."""
        if not self._begun:
            raise RuntimeError("step() before begin()")
        x = np.asarray(frames, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(
                f"frames must be (n, {self.dim}) features, not an array of shape "
                f"{x.shape}"
            )
        if len(x) == 0:
            return x
        return self._normalize(x)

    def end(self) -> np.ndarray:
        """No frames: each came out when it went in."""
        if not self._begun:
            raise RuntimeError("end() before begin()")
        self._begun = False
        return np.zeros((0, self.dim), np.float32)


def _model_extractor(asr_model: Any, fs: int, n_mels: Optional[int]) -> _Extractor:
    """The frames of ``asr_model``'s own modules: its frontend (or Kaldi
    fbank without one), then its normalization."""
    frontend = getattr(asr_model, "frontend", None)
    normalize = _normalizer(getattr(asr_model, "normalize", None))
    if frontend is None:
        if n_mels is None:
            raise ValueError(
                "n_mels=None: the model has no frontend (it reads Kaldi "
                "fbank features); give the number of fbank bins"
            )
        return _Extractor(
            lambda span: normalize(_kaldi_fbank(span, fs, n_mels)),
            int(fs * _FBANK_WINDOW_SECONDS),
            int(fs * _FBANK_HOP_SECONDS),
            0,
            int(n_mels),
        )
    stft = _default_stft(frontend)
    return _Extractor(
        lambda span: normalize(_log_mel(frontend, stft, span)),
        stft.n_fft,
        stft.hop_length,
        stft.n_fft // 2 if stft.center else 0,
        int(frontend.output_size()),
    )


def _default_stft(frontend: Any) -> Any:
    """The STFT module of ESPnet's default frontend; ValueError for others."""
    stft = getattr(frontend, "stft", None)
    if stft is None or not hasattr(frontend, "logmel"):
        raise ValueError(
            f"frontend {type(frontend).__name__}: streaming features know "
            "ESPnet's default frontend (STFT + log-mel) only"
        )
    return stft


def _log_mel(frontend: Any, stft: Any, span: np.ndarray) -> np.ndarray:
    """Log-mel frames (n, n_mels) of the padded samples ``span`` (center=False:
    the caller has padded): ESPnet's STFT arguments, its LogMel module."""
    import torch

    window = None
    if stft.window is not None:
        window = getattr(torch, f"{stft.window}_window")(stft.win_length)
    with torch.no_grad():
        spectrum = torch.stft(
            torch.from_numpy(span),
            n_fft=stft.n_fft,
            hop_length=stft.hop_length,
            win_length=stft.win_length,
            window=window,
            center=False,
            normalized=stft.normalized,
            onesided=stft.onesided,
            return_complex=True,
        ).T  # (n, F)
        power = spectrum.real**2 + spectrum.imag**2
        # A mono signal passes ESPnet's enhancement stage (WPE, beamforming:
        # multi-channel only) unchanged; the log-mel is the frontend's own.
        feats, _ = frontend.logmel(power[None], None)
    return feats[0].numpy()


def _kaldi_fbank(span: np.ndarray, fs: int, n_mels: int) -> np.ndarray:
    from espnet_shared_conformer.audio_io import kaldi_fbank

    return kaldi_fbank(span, fs, n_mels)


def _normalizer(normalize: Any) -> Callable[[np.ndarray], np.ndarray]:
    """Frames (n, D) -> normalized by the model's layer, which must work frame
    by frame (global statistics); ValueError naming the one that does not."""
    if normalize is None:
        return lambda feats: feats
    name = type(normalize).__name__
    if name != "GlobalMVN":
        raise ValueError(
            f"normalize={name}: streaming features need statistics fixed in "
            "advance (global_mvn); an utterance's own need all of it first"
        )

    def apply(feats: np.ndarray) -> np.ndarray:
        import torch

        with torch.no_grad():
            # GlobalMVN works in place: on a copy of the caller's frames.
            x = torch.tensor(feats, dtype=torch.float32)[None]
            return normalize(x, None)[0][0].numpy()

    return apply
