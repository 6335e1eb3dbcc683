"""Load a model packed by stage 14 (``espnet2.bin.pack asr``) for decoding.

The zip holds the training config, the model, the normalization statistics,
the sentencepiece model, RESULTS.md and the decoding config the recipe used,
and with ``--use_word_lm true`` the lexicon and word n-gram LM of stage 9.
:func:`load_speech2text` unpacks it, registers ``encoder: shared_conformer``
with ESPnet and returns a ``Speech2Text`` set up with that decoding config,
wrapped with the lexicon decoder when the zip has one (decoding as stage 12
did).
"""

import hashlib
import inspect
import os
from pathlib import Path
from typing import Any, Dict, Optional

import numpy as np
import yaml
from audio_io import kaldi_fbank, load_audio

__all__ = ["PackedModel", "default_unpack_dir", "load_speech2text"]


def default_unpack_dir(zip_path: Path) -> Path:
    """A per-user cache directory for this zip (its path, size and time)."""
    zip_path = Path(zip_path).resolve()
    stat = zip_path.stat()
    key = hashlib.sha1(
        f"{zip_path}:{stat.st_size}:{stat.st_mtime_ns}".encode()
    ).hexdigest()
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return cache / "espnet_shared_conformer" / "unpacked" / key[:16]


def _decoding_config(unpack_dir: Path, files: Dict[str, str]) -> Dict[str, Any]:
    """The one YAML in the archive that is neither meta.yaml nor a training config."""
    training = {Path(p).resolve() for p in files.values()}
    candidates = [
        p
        for p in sorted(unpack_dir.rglob("*.yaml"))
        if p.name != "meta.yaml" and p.resolve() not in training
    ]
    if len(candidates) != 1:
        return {}
    with candidates[0].open(encoding="utf-8") as f:
        return yaml.safe_load(f) or {}


class PackedModel:
    """A ``Speech2Text`` plus what its input must look like."""

    def __init__(
        self, speech2text, fs: int, n_mels: Optional[int], lexicon_decoder=None
    ) -> None:
        self.speech2text = speech2text
        self.fs = fs
        #: Fbank bins when the model was trained on dumped fbank features
        #: (no frontend); None when it takes raw audio.
        self.n_mels = n_mels
        #: A ``CTCLexiconDecoder`` searching the CTC posteriors, or None:
        #: ``Speech2Text``'s beam search.
        self.lexicon_decoder = lexicon_decoder

    def features(self, samples: np.ndarray) -> np.ndarray:
        """Model input for mono samples at :attr:`fs`: the samples or their fbank."""
        if self.n_mels is None:
            return samples
        return kaldi_fbank(samples, self.fs, self.n_mels)

    def transcribe_file(self, path: str) -> str:
        samples = load_audio(str(path), self.fs)
        return self.transcribe(samples)

    def transcribe(self, samples: np.ndarray) -> str:
        return self.decode(self.features(samples))

    def decode(self, model_input: np.ndarray) -> str:
        """Text for one model input (samples, or fbank frames)."""
        import torch

        with torch.no_grad():
            if self.lexicon_decoder is None:
                results = self.speech2text(model_input)
                return results[0][0] if results else ""
            model = self.speech2text.asr_model
            speech = torch.as_tensor(model_input, dtype=torch.float32)[None]
            lengths = torch.tensor([speech.size(1)])
            encoded, encoded_lengths = model.encode(speech, lengths)
            if isinstance(encoded, tuple):  # intermediate CTC outputs ride along
                encoded = encoded[0]
            log_probs = model.ctc.log_softmax(encoded)[0, : int(encoded_lengths[0])]
            words = self.lexicon_decoder(log_probs)[0][0]
            return " ".join(words)


def _lexicon_decoder(unpack_dir: Path, token_list, options: Dict[str, Any]):
    """The packed lexicon + word LM decoder, or None when the zip has none."""
    lexicons = sorted(unpack_dir.rglob("lexicon.txt"))
    arpas = sorted(unpack_dir.rglob("word_lm.arpa"))
    if not lexicons:
        return None
    from espnet_shared_conformer.lexicon import CTCLexiconDecoder, LexiconDecoderConfig

    names = {
        "lexicon_beam_size": "beam_size",
        "lexicon_beam_threshold": "beam_threshold",
        "word_lm_weight": "lm_weight",
        "word_score": "word_score",
        "sil_score": "sil_score",
    }
    config = LexiconDecoderConfig(
        **{field: options[name] for name, field in names.items() if name in options}
    )
    return CTCLexiconDecoder(
        token_list, lexicons[0], arpas[0] if arpas else None, config
    )


def load_speech2text(
    zip_path: Path,
    unpack_dir: Optional[Path] = None,
    device: str = "cpu",
    fbank_fs: int = 16000,
    use_lexicon: bool = True,
    **overrides: Any,
) -> PackedModel:
    """Unpack ``zip_path`` (into ``unpack_dir``, default a per-user cache) and
    build its decoder; ``overrides`` (``beam_size=...``, ``word_lm_weight=...``)
    beat the packed decoding config. A zip with a lexicon decodes with it
    unless ``use_lexicon`` is false."""
    import humanfriendly
    from espnet2.bin.asr_inference import Speech2Text
    from espnet2.main_funcs.pack_funcs import unpack

    import espnet_shared_conformer

    espnet_shared_conformer.register()
    unpack_dir = Path(unpack_dir) if unpack_dir else default_unpack_dir(zip_path)
    files = unpack(zip_path, unpack_dir)
    options = _decoding_config(unpack_dir, files)
    options.update(overrides)
    accepted = inspect.signature(Speech2Text.__init__).parameters
    speech2text = Speech2Text(
        **files, device=device, **{k: v for k, v in options.items() if k in accepted}
    )
    lexicon_decoder = None
    if use_lexicon:
        lexicon_decoder = _lexicon_decoder(
            unpack_dir, speech2text.asr_model.token_list, options
        )
    args = speech2text.asr_train_args
    if getattr(speech2text.asr_model, "frontend", None) is None:
        return PackedModel(speech2text, fbank_fs, int(args.input_size), lexicon_decoder)
    fs = (args.frontend_conf or {}).get("fs", 16000)
    fs = int(humanfriendly.parse_size(fs)) if isinstance(fs, str) else int(fs)
    return PackedModel(speech2text, fs, None, lexicon_decoder)
