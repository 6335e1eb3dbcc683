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

:class:`FeatureFrames` has the same calls for features computed elsewhere
(the recipe's dumped fbank, which ESPnet's decoding reads): it normalizes
them as the model does, frame by frame.
"""

from typing import Any, Callable, Optional

import numpy as np
import torch

__all__ = ["FeatureFrames", "StreamingFeatures"]

# torchaudio's Kaldi fbank: 25 ms windows every 10 ms.
_FBANK_WINDOW_SECONDS = 0.025
_FBANK_HOP_SECONDS = 0.010


class _Framer:
    """Cuts a stream of samples into frames of ``length`` every ``hop``.

    Holds the samples not yet consumed; ``take`` returns the span that the
    complete frames cover (for a frame function to cut the same way) and
    drops the samples no later frame needs.
    """

    def __init__(self, length: int, hop: int) -> None:
        self.length = length
        self.hop = hop
        self.pending = torch.zeros(0)

    def push(self, samples: torch.Tensor) -> None:
        self.pending = torch.cat([self.pending, samples])

    def take(self) -> Optional[torch.Tensor]:
        """The samples of every complete frame, or None when there is none."""
        if len(self.pending) < self.length:
            return None
        frames = 1 + (len(self.pending) - self.length) // self.hop
        span = self.pending[: (frames - 1) * self.hop + self.length]
        self.pending = self.pending[frames * self.hop :]
        return span


class StreamingFeatures:
    """``asr_model``'s normalized input frames (n, D), from samples in blocks.

    ``asr_model`` is an ESPnet ASR model (``load_model(...).asr_model``);
    for one without a frontend (trained on Kaldi fbank), ``fs`` is the rate
    of the samples and the fbank has as many bins as its encoder's input
    (``n_mels``, required then: ``load_model(...).n_mels``).
    """

    def __init__(
        self, asr_model: Any, fs: int = 16000, n_mels: Optional[int] = None
    ) -> None:
        frontend = getattr(asr_model, "frontend", None)
        self._normalize = _normalizer(getattr(asr_model, "normalize", None))
        if frontend is None:
            if n_mels is None:
                raise ValueError(
                    "n_mels=None: the model has no frontend (it reads Kaldi "
                    "fbank features); give the number of fbank bins"
                )
            self._frames: Callable[[torch.Tensor], torch.Tensor] = lambda span: (
                _kaldi_fbank(span, fs, n_mels)
            )
            self._framer_args = (
                int(fs * _FBANK_WINDOW_SECONDS),
                int(fs * _FBANK_HOP_SECONDS),
            )
            self._pad = 0
            #: Features per frame.
            self.dim = int(n_mels)
        else:
            stft = _default_stft(frontend)
            self._frames = lambda span: _log_mel(frontend, stft, span)
            self._framer_args = (stft.n_fft, stft.hop_length)
            self._pad = stft.n_fft // 2 if stft.center else 0
            self.dim = int(frontend.output_size())
        #: Samples between frames: the frame shift is ``hop_length / fs`` s
        #: (times the encoder's subsampling, for the CTC searches' frames).
        self.hop_length: int = self._framer_args[1]
        self._begun = False

    def begin(self) -> None:
        """Start an utterance."""
        self._framer = _Framer(*self._framer_args)
        self._head = torch.zeros(0)  # samples held until the start can be padded
        self._tail = torch.zeros(0)  # the last pad + 1 samples, for the end
        self._started = self._pad == 0
        self._begun = True

    def step(self, samples: Any) -> torch.Tensor:
        """The frames (n, D) that ``samples`` (T,) complete; n may be 0."""
        if not self._begun:
            raise RuntimeError("step() before begin()")
        block = torch.as_tensor(np.asarray(samples, dtype=np.float32))
        if block.dim() != 1:
            raise ValueError(
                f"samples must be mono (T,), not an array of shape {tuple(block.shape)}"
            )
        if self._pad:
            self._tail = torch.cat([self._tail, block])[-(self._pad + 1) :]
        if not self._started:
            self._head = torch.cat([self._head, block])
            if len(self._head) <= self._pad:
                return self._empty()
            # What torch.stft's reflection puts before the first sample.
            block = torch.cat([self._head[1 : self._pad + 1].flip(0), self._head])
            self._started = True
        self._framer.push(block)
        return self._emit()

    def end(self) -> torch.Tensor:
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
        self._framer.push(self._tail[:-1].flip(0))
        return self._emit()

    def _emit(self) -> torch.Tensor:
        span = self._framer.take()
        if span is None:
            return self._empty()
        with torch.no_grad():
            return self._normalize(self._frames(span))

    def _empty(self) -> torch.Tensor:
        return torch.zeros(0, self.dim)


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

    def step(self, frames: Any) -> torch.Tensor:
        """``frames`` (n, D), normalized."""
        if not self._begun:
            raise RuntimeError("step() before begin()")
        x = torch.as_tensor(np.asarray(frames, dtype=np.float32))
        if x.dim() != 2 or x.size(1) != self.dim:
            raise ValueError(
                f"frames must be (n, {self.dim}) features, not an array of shape "
                f"{tuple(x.shape)}"
            )
        if len(x) == 0:
            return x
        with torch.no_grad():
            return self._normalize(x)

    def end(self) -> torch.Tensor:
        """No frames: each came out when it went in."""
        if not self._begun:
            raise RuntimeError("end() before begin()")
        self._begun = False
        return torch.zeros(0, self.dim)


def _default_stft(frontend: Any) -> Any:
    """The STFT module of ESPnet's default frontend; ValueError for others."""
    stft = getattr(frontend, "stft", None)
    if stft is None or not hasattr(frontend, "logmel"):
        raise ValueError(
            f"frontend {type(frontend).__name__}: streaming features know "
            "ESPnet's default frontend (STFT + log-mel) only"
        )
    return stft


def _log_mel(frontend: Any, stft: Any, span: torch.Tensor) -> torch.Tensor:
    """Log-mel frames (n, n_mels) of the padded samples ``span`` (center=False:
    the caller has padded): ESPnet's STFT arguments, its LogMel module."""
    window = None
    if stft.window is not None:
        window = getattr(torch, f"{stft.window}_window")(stft.win_length)
    spectrum = torch.stft(
        span,
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
    return feats[0]


def _kaldi_fbank(span: torch.Tensor, fs: int, n_mels: int) -> torch.Tensor:
    from espnet_shared_conformer.audio_io import kaldi_fbank

    return torch.from_numpy(kaldi_fbank(span.numpy(), fs, n_mels))


def _normalizer(normalize: Any) -> Callable[[torch.Tensor], torch.Tensor]:
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
    return lambda feats: normalize(feats[None], None)[0][0]
