"""Load a model packed by stage 14 (``espnet2.bin.pack asr``) for decoding.

The zip holds the training config, the model, the normalization statistics,
the sentencepiece model, RESULTS.md and the decoding config the recipe used,
and with ``--use_word_lm true`` the lexicon and word n-gram LM of stage 9.
:func:`load_speech2text` loads it with
``espnet_shared_conformer.inference.load_model`` (which registers
``encoder: shared_conformer`` and decodes as stage 12 did: its decoding
config, and the lexicon search when the zip has a lexicon) and adds what a
recipe script feeds it: audio files, or samples turned into the model's input.
"""

from pathlib import Path
from typing import Any, Optional, Union

import numpy as np

from espnet_shared_conformer.audio_io import kaldi_fbank, load_audio

__all__ = ["PackedModel", "load_speech2text"]


class PackedModel:
    """A loaded model (``load_model``'s ``Transcriber``) fed audio or features."""

    def __init__(self, transcriber: Any) -> None:
        #: ``espnet_shared_conformer.inference.Transcriber``.
        self.transcriber = transcriber
        #: ESPnet's ``Speech2Text``, or None when the lexicon search decodes.
        self.speech2text = transcriber.speech2text
        #: The ``CTCLexiconDecoder`` searching the CTC posteriors, or None.
        self.lexicon_decoder = transcriber.lexicon_decoder
        #: The sample rate of the model's input.
        self.fs: int = int(transcriber.fs)
        #: Fbank bins when the model was trained on dumped fbank features
        #: (no frontend); None when it takes raw audio.
        self.n_mels: Optional[int] = transcriber.n_mels

    def features(self, samples: np.ndarray) -> np.ndarray:
        """Model input for mono samples (T,) at :attr:`fs`: the samples, or
        their fbank (T', n_mels)."""
        if self.n_mels is None:
            return samples
        return kaldi_fbank(samples, self.fs, self.n_mels)

    def transcribe_file(self, path: Union[str, Path]) -> str:
        """Text of an audio file (any rate and channels ``audio_io`` reads)."""
        return self.transcribe(load_audio(str(path), self.fs))

    def transcribe(self, samples: np.ndarray) -> str:
        """Text of mono samples (T,) at :attr:`fs`."""
        return self.decode(self.features(samples))

    def decode(self, model_input: np.ndarray) -> str:
        """Text for one model input: samples (T,), or fbank frames (T', n_mels)."""
        return self.transcriber(model_input)


def load_speech2text(
    zip_path: Union[str, Path],
    unpack_dir: Union[str, Path, None] = None,
    device: str = "cpu",
    fbank_fs: int = 16000,
    use_lexicon: bool = True,
    **overrides: Any,
) -> PackedModel:
    """Unpack ``zip_path`` (into ``unpack_dir``, default a per-user cache) and
    load it as stage 12 decoded; ``overrides`` (``beam_size=...``,
    ``word_lm_weight=...``) beat the packed decoding config. A zip with a
    lexicon decodes with it unless ``use_lexicon`` is false. Raises what
    ``load_model`` raises (``ValueError`` for options that cannot apply)."""
    from espnet_shared_conformer.inference import load_model

    return PackedModel(
        load_model(
            zip_path,
            device=device,
            unpack_dir=unpack_dir,
            use_lexicon=use_lexicon,
            fbank_fs=fbank_fs,
            **overrides,
        )
    )
