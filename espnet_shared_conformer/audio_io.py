"""The one audio loader: it decides what is bad, and how good audio sounds.

The recipe's data preparation (``datadir.check_audio_file``), its dumping
(``dump_audio.py``) and a user's own files (``python -m
espnet_shared_conformer.bin.transcribe``) all read audio through
:func:`audio_blocks`, so they agree on what is bad, and a model hears its
test audio resampled exactly as it heard its training audio. It lives in the
package, not the recipe, so that the transcription command works for anyone
who installed the package and holds a packed model.

Good: any format and sample rate (>= ``MIN_INPUT_RATE``) libsndfile decodes
(WAV of any sample type, u-law included, FLAC, Ogg Vorbis, MP3, ...), any
number of channels (averaged to mono), silence. Bad, with the reason an
:class:`AudioError` gives: ``no such file``, ``empty file``, ``not an audio
file (<libsndfile's words>)`` (text, a header cut short), ``no samples``,
``sample rate ... below the ... minimum``, ``truncated: ...`` (a WAV header
promises more than the file holds), ``corrupt or truncated audio data ...``
(decoding fails part way) and ``NaN/inf samples ...`` (a float file with
non-numbers).

Audio is decoded, checked and resampled in blocks of ``BLOCK_SECONDS``, so
memory does not grow with the length of a file; :func:`split_at_pauses` cuts
the block stream into windows a model can decode one at a time.
:func:`raw_blocks` reads headerless PCM from a pipe (a microphone's
``arecord`` or ``sox``) the same way, block by block as it arrives.
"""

import io
import os
import re
import subprocess
from typing import BinaryIO, Iterable, Iterator, Optional, Tuple

import numpy as np
import soundfile

__all__ = [
    "AudioError",
    "BLOCK_SECONDS",
    "MIN_INPUT_RATE",
    "audio_blocks",
    "check_audio",
    "is_command",
    "kaldi_fbank",
    "RAW_FORMATS",
    "load_audio",
    "raw_blocks",
    "read_audio",
    "resample",
    "split_at_pauses",
]

#: Below this rate speech loses most consonant information; such a file is
#: far more likely a mislabelled header than real telephone audio.
MIN_INPUT_RATE = 8000

#: Decode this much audio at a time (at the file's own rate): 96 kHz stereo
#: is 7.7 MB of float32 per block, whatever the length of the file.
BLOCK_SECONDS = 10.0

# libsndfile's header log for a RIFF/WAVE file whose data chunk is cut short:
# "data : 32000 (should be 956)".
_WAV_DATA_SHORT = re.compile(r"^data : (\d+) \(should be (\d+)\)", re.MULTILINE)
_BYTES_PER_SECOND = re.compile(r"Bytes/sec\s*: (\d+)")
_BLOCK_ALIGN = re.compile(r"Block Align\s*: (\d+)")
# Writers that stream to a pipe do not know the length and write a huge
# placeholder size (sox: 0x7ffff000 and similar); that is not truncation.
_STREAMED_SIZE = 0x7FF00000


class AudioError(ValueError):
    """``source`` (a path or a ``wav.scp`` command) cannot be used as audio.

    ``reason`` says why in a few words ("empty file", "NaN/inf samples ...");
    the message is ``"<source>: <reason>"``. The recipe's ``datadir.exit_status``
    reports it as any other bad input.
    """

    def __init__(self, source: str, reason: str) -> None:
        super().__init__(f"{source}: {reason}")
        self.source = source
        self.reason = reason


def is_command(entry: str) -> bool:
    """Whether a ``wav.scp`` value is a shell command (``... |``), not a path."""
    return entry.rstrip().endswith("|")


def _libsndfile_words(error: Exception) -> str:
    """libsndfile's own explanation, without the "Error opening 'path': " prefix
    that repeats the path (already in the message) and its trailing dot."""
    text = str(getattr(error, "error_string", "") or error).strip()
    text = re.sub(r"^(Error opening .*?: |Error : )", "", text)
    return text.rstrip(".")


def _open(entry: str, allow_command: bool) -> soundfile.SoundFile:
    """Open ``entry`` for decoding; raise :class:`AudioError` for what is bad
    before a sample is read (missing, empty, not audio, no samples)."""
    if allow_command and is_command(entry):
        command = entry.rstrip()[:-1].strip()
        proc = subprocess.run(
            ["bash", "-c", f"set -o pipefail; {command}"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            check=False,
        )
        if proc.returncode != 0:
            message = proc.stderr.decode(errors="replace").strip().splitlines()
            raise AudioError(
                entry,
                f"command failed (exit {proc.returncode}): "
                + (message[-1] if message else "no message"),
            )
        if not proc.stdout:
            raise AudioError(entry, "empty output from the command")
        source = io.BytesIO(proc.stdout)
    else:
        if not os.path.exists(entry):
            raise AudioError(entry, "no such file")
        if os.path.isdir(entry):
            raise AudioError(entry, "a directory, not an audio file")
        if os.path.getsize(entry) == 0:
            raise AudioError(entry, "empty file")
        source = entry
    try:
        sound = soundfile.SoundFile(source)
    except (soundfile.LibsndfileError, RuntimeError, TypeError, ValueError) as e:
        raise AudioError(entry, f"not an audio file ({_libsndfile_words(e)})") from None
    except OSError as e:
        raise AudioError(entry, f"cannot open ({e.strerror or e})") from None
    if sound.frames == 0:
        sound.close()
        raise AudioError(entry, "no samples")
    short = _WAV_DATA_SHORT.search(sound.extra_info or "")
    if short:
        promised, held = int(short.group(1)), int(short.group(2))
        per_second = _BYTES_PER_SECOND.search(sound.extra_info)
        # A missing odd pad byte is not truncation: allow one sample frame.
        frame = _BLOCK_ALIGN.search(sound.extra_info)
        slack = int(frame.group(1)) if frame else 1
        if promised < _STREAMED_SIZE and promised - held > slack:
            sound.close()
            if per_second and int(per_second.group(1)) > 0:
                bps = int(per_second.group(1))
                amounts = f"{promised / bps:.2f} s", f"{held / bps:.2f} s"
            else:
                amounts = f"{promised} bytes", f"{held} bytes"
            raise AudioError(
                entry,
                f"truncated: the header promises {amounts[0]} of samples, "
                f"the file holds {amounts[1]}",
            )
    return sound


def audio_blocks(
    entry: str,
    target_rate: Optional[int] = None,
    min_rate: int = MIN_INPUT_RATE,
    block_seconds: float = BLOCK_SECONDS,
    allow_command: bool = True,
) -> Iterator[np.ndarray]:
    """Decode ``entry`` block by block: mono float32 arrays (T_block,) in [-1, 1].

    ``entry`` is a file path or, with ``allow_command``, a ``wav.scp`` shell
    command ending in ``|``. Channels are averaged; with ``target_rate`` the
    blocks are resampled to it (libsoxr's HQ filter, streamed: the result is
    the same as resampling the whole signal at once). Raises
    :class:`AudioError` for bad audio, possibly after some blocks were
    yielded (data that turns out corrupt or non-finite part way).
    """
    with _open(entry, allow_command) as sound:
        yield from _decode(sound, entry, target_rate, min_rate, block_seconds)


def _decode(
    sound: soundfile.SoundFile,
    entry: str,
    target_rate: Optional[int],
    min_rate: int,
    block_seconds: float,
) -> Iterator[np.ndarray]:
    """The blocks of :func:`audio_blocks` from an opened ``sound``."""
    rate = int(sound.samplerate)
    if rate < min_rate:
        raise AudioError(
            entry, f"sample rate {rate} Hz is below the {min_rate} Hz minimum"
        )
    stream = None
    if target_rate is not None and target_rate != rate:
        import soxr

        stream = soxr.ResampleStream(
            rate, target_rate, 1, dtype="float32", quality="HQ"
        )
    block_frames = max(1, int(block_seconds * rate))
    decoded = 0
    try:
        for block in sound.blocks(block_frames, dtype="float32", always_2d=True):
            mono = (
                block.mean(axis=1, dtype=np.float32)
                if block.shape[1] > 1
                else block[:, 0]
            )
            finite = np.isfinite(mono)
            if not finite.all():
                first = decoded + int(np.argmin(finite))
                raise AudioError(
                    entry, f"NaN/inf samples (first at {first / rate:.3f} s)"
                )
            decoded += len(mono)
            if stream is not None:
                mono = stream.resample_chunk(mono, last=False)
            if len(mono):
                yield mono
    except soundfile.LibsndfileError as e:
        end = min(decoded + block_frames, sound.frames)
        raise AudioError(
            entry,
            f"corrupt or truncated audio data between {decoded / rate:.2f} s and "
            f"{end / rate:.2f} s ({_libsndfile_words(e)})",
        ) from None
    if stream is not None:
        tail = stream.resample_chunk(np.zeros(0, dtype=np.float32), last=True)
        if len(tail):
            yield tail


#: Headerless PCM that :func:`raw_blocks` reads: numpy type, full scale.
RAW_FORMATS = {
    "s16le": ("<i2", 2.0**15),
    "s32le": ("<i4", 2.0**31),
    "f32le": ("<f4", 1.0),
}


def raw_blocks(
    stream: BinaryIO,
    rate: int,
    sample_format: str = "s16le",
    channels: int = 1,
    target_rate: Optional[int] = None,
    block_seconds: float = 0.1,
    source: str = "-",
) -> Iterator[np.ndarray]:
    """Headerless PCM from ``stream`` (a pipe: ``arecord -f S16_LE -r 16000``,
    ``sox -d -t raw -r 16000 -e signed -b 16 -c 1 -``) as mono float32 blocks.

    ``sample_format`` is one of :data:`RAW_FORMATS` (little-endian signed 16
    or 32 bit, or float), interleaved over ``channels``, which are averaged.
    Each block is what one read returned, at most ``block_seconds`` (a read
    returns as soon as the pipe holds something, so blocks follow the audio
    as it comes); with ``target_rate`` it is resampled as
    :func:`audio_blocks` does. Ends at end of file; a last incomplete sample
    frame is dropped. :class:`AudioError` (naming ``source``) for NaN/inf
    float samples.
    """
    if sample_format not in RAW_FORMATS:
        raise ValueError(
            f"sample_format ({sample_format!r}) must be one of {', '.join(RAW_FORMATS)}"
        )
    if rate < 1 or channels < 1:
        raise ValueError(f"rate ({rate}) and channels ({channels}) must be positive")
    dtype, scale = RAW_FORMATS[sample_format]
    frame_bytes = np.dtype(dtype).itemsize * channels
    read = getattr(stream, "read1", stream.read)
    size = max(1, int(block_seconds * rate)) * frame_bytes
    resampler = None
    if target_rate is not None and target_rate != rate:
        import soxr

        resampler = soxr.ResampleStream(
            rate, target_rate, 1, dtype="float32", quality="HQ"
        )
    held = b""  # the bytes of an incomplete sample frame
    decoded = 0
    while True:
        data = read(size)
        if not data:
            break
        data = held + data
        whole = len(data) - len(data) % frame_bytes
        held = data[whole:]
        samples = np.frombuffer(data[:whole], dtype=dtype).reshape(-1, channels)
        mono = (samples.mean(axis=1) / scale).astype(np.float32)
        finite = np.isfinite(mono)
        if not finite.all():
            first = decoded + int(np.argmin(finite))
            raise AudioError(source, f"NaN/inf samples (first at {first / rate:.3f} s)")
        decoded += len(mono)
        if resampler is not None:
            mono = resampler.resample_chunk(mono, last=False)
        if len(mono):
            yield mono
    if resampler is not None:
        tail = resampler.resample_chunk(np.zeros(0, dtype=np.float32), last=True)
        if len(tail):
            yield tail


def check_audio(
    entry: str, min_rate: int = MIN_INPUT_RATE, allow_command: bool = True
) -> Optional[str]:
    """Decode all of ``entry``: ``None`` when it is good audio, else the reason.

    Memory stays at one block whatever the length; no resampling is done
    (it cannot make good audio bad).
    """
    try:
        for _ in audio_blocks(entry, None, min_rate, allow_command=allow_command):
            pass
    except AudioError as e:
        return e.reason
    return None


def read_audio(
    entry: str, min_rate: int = MIN_INPUT_RATE, allow_command: bool = True
) -> Tuple[np.ndarray, int]:
    """All of ``entry`` at its own rate: mono float32 samples (T,) and the rate."""
    with _open(entry, allow_command) as sound:
        blocks = list(_decode(sound, entry, None, min_rate, BLOCK_SECONDS))
        return np.concatenate(blocks), int(sound.samplerate)


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
    entry: str,
    target_rate: int,
    min_rate: int = MIN_INPUT_RATE,
    allow_command: bool = True,
) -> np.ndarray:
    """All of ``entry`` as mono float32 samples (T,) at ``target_rate``."""
    return np.concatenate(
        list(audio_blocks(entry, target_rate, min_rate, allow_command=allow_command))
    )


def split_at_pauses(
    blocks: Iterable[np.ndarray],
    rate: int,
    max_seconds: float,
    search_seconds: float,
    pause_seconds: float = 0.1,
) -> Iterator[np.ndarray]:
    """Cut a stream of mono blocks into windows (T_window,) of at most
    ``max_seconds``, each cut at the quietest point of its last
    ``search_seconds``, so that long audio can be decoded a window at a time.

    "Quietest" is the lowest mean energy over ``pause_seconds`` (a pause
    between words is 0.1-0.5 s; a gap inside a word is shorter), and the cut
    falls in its middle. The windows do not overlap: together they are the
    input, sample for sample. Memory is one window plus one block.
    """
    if not 0 < search_seconds <= max_seconds:
        raise ValueError(
            f"search_seconds ({search_seconds}) must be in (0, max_seconds "
            f"({max_seconds})]"
        )
    max_len = int(max_seconds * rate)
    search_len = int(search_seconds * rate)
    pause_len = max(1, min(int(pause_seconds * rate), search_len))
    pending: list = []
    pending_len = 0
    for block in blocks:
        pending.append(block)
        pending_len += len(block)
        while pending_len > max_len:
            buffer = np.concatenate(pending)
            region = buffer[max_len - search_len : max_len].astype(np.float64)
            # Mean energy of every pause_len span in the region (a running
            # sum), the cut in the middle of the quietest.
            energy = np.concatenate(([0.0], np.cumsum(region * region)))
            span = energy[pause_len:] - energy[:-pause_len]
            cut = max_len - search_len + int(np.argmin(span)) + pause_len // 2
            yield buffer[:cut]
            rest = buffer[cut:]
            pending, pending_len = [rest], len(rest)
    if pending_len:
        yield np.concatenate(pending)


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
