"""Load a model packed by stage 14 (``espnet2.bin.pack asr``) for decoding.

The zip holds the training config, the model, the normalization statistics,
the sentencepiece model, RESULTS.md and the decoding config the recipe used.
:func:`load_speech2text` unpacks it, registers ``encoder: shared_conformer``
with ESPnet and returns a ``Speech2Text`` set up with that decoding config.
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

    def __init__(self, speech2text, fs: int, n_mels: Optional[int]) -> None:
        self.speech2text = speech2text
        self.fs = fs
        #: Fbank bins when the model was trained on dumped fbank features
        #: (no frontend); None when it takes raw audio.
        self.n_mels = n_mels

    def features(self, samples: np.ndarray) -> np.ndarray:
        """Model input for mono samples at :attr:`fs`: the samples or their fbank."""
        if self.n_mels is None:
            return samples
        return kaldi_fbank(samples, self.fs, self.n_mels)

    def transcribe_file(self, path: str) -> str:
        samples = load_audio(str(path), self.fs)
        return self.transcribe(samples)

    def transcribe(self, samples: np.ndarray) -> str:
        import torch

        with torch.no_grad():
            results = self.speech2text(self.features(samples))
        return results[0][0] if results else ""


def load_speech2text(
    zip_path: Path,
    unpack_dir: Optional[Path] = None,
    device: str = "cpu",
    fbank_fs: int = 16000,
    **overrides: Any,
) -> PackedModel:
    """Unpack ``zip_path`` (into ``unpack_dir``, default a per-user cache) and
    build its decoder; ``overrides`` (``beam_size=...``) beat the packed
    decoding config."""
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
    options = {k: v for k, v in options.items() if k in accepted}
    speech2text = Speech2Text(**files, device=device, **options)
    args = speech2text.asr_train_args
    if getattr(speech2text.asr_model, "frontend", None) is None:
        return PackedModel(speech2text, fbank_fs, int(args.input_size))
    fs = (args.frontend_conf or {}).get("fs", 16000)
    fs = int(humanfriendly.parse_size(fs)) if isinstance(fs, str) else int(fs)
    return PackedModel(speech2text, fs, None)
