"""Load audio for the recipe: any sample rate in, mono float32 at the model's rate out.

Training data (``dump_audio.py``) and a user's own files (``transcribe.py``)
go through the same :func:`load_audio`, so a model hears its test audio
resampled exactly as it heard its training audio.
"""

import io
import subprocess
from typing import Tuple

import numpy as np
import soundfile

__all__ = [
    "AudioError",
    "MIN_INPUT_RATE",
    "kaldi_fbank",
    "load_audio",
    "read_audio",
    "resample",
]

#: Below this rate speech loses most consonant information; such a file is
#: far more likely a mislabelled header than real telephone audio.
MIN_INPUT_RATE = 8000


class AudioError(Exception):
    """An audio file or command could not be turned into samples."""


def read_audio(entry: str) -> Tuple[np.ndarray, int]:
    """Read a ``wav.scp`` value: a file path or a shell command ending in ``|``.

    Returns mono float32 samples in [-1, 1] (channels averaged) and the rate.
    """
    entry = entry.strip()
    try:
        if entry.endswith("|"):
            command = entry[:-1].strip()
            proc = subprocess.run(
                ["bash", "-c", f"set -o pipefail; {command}"],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                check=False,
            )
            if proc.returncode != 0:
                message = proc.stderr.decode(errors="replace").strip().splitlines()
                raise AudioError(
                    f"command failed (exit {proc.returncode}): {command}: "
                    + (message[-1] if message else "no message")
                )
            samples, rate = soundfile.read(
                io.BytesIO(proc.stdout), dtype="float32", always_2d=True
            )
        else:
            samples, rate = soundfile.read(entry, dtype="float32", always_2d=True)
    except AudioError:
        raise
    except (soundfile.LibsndfileError, RuntimeError, OSError, ValueError) as e:
        raise AudioError(f"cannot read '{entry}': {e}") from None
    if samples.shape[0] == 0:
        raise AudioError(f"'{entry}' has no samples")
    return samples.mean(axis=1).astype(np.float32), int(rate)


def resample(samples: np.ndarray, rate: int, target_rate: int) -> np.ndarray:
    """Resample mono ``samples`` (T,) from ``rate`` to ``target_rate`` Hz.

    Uses libsoxr (SoX's resampler, high-quality setting): the same filter
    ``sox ... rate`` applies, and fast to import, unlike torch.
    """
    if rate == target_rate:
        return samples
    import soxr

    return soxr.resample(samples, rate, target_rate, quality="HQ").astype(np.float32)


def load_audio(
    entry: str, target_rate: int, min_rate: int = MIN_INPUT_RATE
) -> np.ndarray:
    """Read ``entry`` and return mono float32 samples (T,) at ``target_rate``."""
    samples, rate = read_audio(entry)
    if rate < min_rate:
        raise AudioError(
            f"'{entry}' has sample rate {rate} Hz, below the {min_rate} Hz minimum"
        )
    return resample(samples, rate, target_rate)


def kaldi_fbank(samples: np.ndarray, rate: int, n_mels: int) -> np.ndarray:
    """Kaldi-compatible log mel filterbank features (frames, n_mels), float32.

    25 ms windows every 10 ms, no dither (so features are reproducible).
    """
    import torch
    import torchaudio.compliance.kaldi

    # Kaldi's fbank expects 16-bit sample values.
    wave = torch.from_numpy(np.ascontiguousarray(samples)).unsqueeze(0) * 32768.0
    feats = torchaudio.compliance.kaldi.fbank(
        wave,
        num_mel_bins=n_mels,
        sample_frequency=float(rate),
        dither=0.0,
        energy_floor=0.0,
    )
    return feats.numpy().astype(np.float32)
