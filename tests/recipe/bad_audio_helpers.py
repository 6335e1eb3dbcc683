"""Real audio files, good and bad, and a real (randomly initialized) packed
model, for tests/recipe/test_bad_audio.py."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Callable, Dict, Sequence

import numpy as np
import soundfile
import yaml

RATE = 16000

#: A small CTC-only model of the recipe's kind (the encoder of
#: conf/train_asr_debug.yaml: every sharing level), characters as tokens.
TINY_TRAIN_CONFIG = {
    "frontend": "default",
    "frontend_conf": {"n_fft": 512, "win_length": 400, "hop_length": 160},
    "encoder": "shared_conformer",
    "encoder_conf": {
        "output_size": 64,
        "attention_heads": 2,
        "linear_units": 128,
        "num_blocks": 4,
        "num_unique_blocks": 2,
        "tie_macaron_ffn": True,
        "share_across_layers": ["conv"],
        "lowrank_rank": 16,
        "lowrank_shared_factor": "in",
        "input_layer": "conv2d",
        "macaron_style": True,
        "use_cnn_module": True,
        "pos_enc_layer_type": "rel_pos",
        "selfattention_layer_type": "rel_selfattn",
        "rel_pos_type": "latest",
        "cnn_module_kernel": 7,
    },
    "decoder": "none",
    "model_conf": {"ctc_weight": 1.0},
}
TOKENS = ["<blank>", "<unk>", "<space>", *"ETAOINSHRDLUCMWFGYPBVKXJQZ'", "<sos/eos>"]
DECODING = {"beam_size": 2, "ctc_weight": 1.0, "maxlenratio": 0.0, "nbest": 1}


def build_packed_model(
    workdir: Path,
    train_config: Dict = TINY_TRAIN_CONFIG,
    decoding: Dict = DECODING,
    blank_bias: float = 0.0,
    seed: int = 0,
    extra_files: Sequence[Path] = (),
) -> Path:
    """A model as stage 14 packs it: ``config.yaml`` as ESPnet's training writes
    it (its own argument parser), random weights, the decoding YAML, zipped by
    ``espnet2.main_funcs.pack_funcs.pack``. Returns the zip's path.

    ``extra_files`` are packed too (stage 14's lexicon.txt and word_lm.arpa,
    found by name when the model is loaded). ``blank_bias`` is added to the CTC output bias of the blank token: a
    trained CTC model emits blank on most frames, a random one on few, and
    then ESPnet's beam search runs for as many steps as there are frames.
    """
    import torch
    from espnet2.main_funcs.pack_funcs import pack
    from espnet2.tasks.asr import ASRTask

    import espnet_shared_conformer

    espnet_shared_conformer.register()
    workdir.mkdir(parents=True, exist_ok=True)
    # Packed under their own names: pack() stores paths relative to the cwd.
    extra = [shutil.copy(f, workdir / Path(f).name) for f in extra_files]
    extra = [Path(f).name for f in extra]
    with contextlib.chdir(workdir):
        Path("tokens.txt").write_text("\n".join(TOKENS) + "\n")
        Path("train.yaml").write_text(yaml.safe_dump(train_config))
        Path("decode.yaml").write_text(yaml.safe_dump(decoding))
        args = ASRTask.get_parser().parse_args(
            [
                "--config",
                "train.yaml",
                "--token_list",
                "tokens.txt",
                "--token_type",
                "char",
                "--output_dir",
                "exp",
                "--normalize",
                "utterance_mvn",
            ]
        )
        torch.manual_seed(seed)
        model = ASRTask.build_model(args)  # reads the token list into args
        with torch.no_grad():
            model.ctc.ctc_lo.bias[0] += blank_bias
        Path("exp").mkdir(exist_ok=True)
        with open("exp/config.yaml", "w", encoding="utf-8") as f:
            yaml.safe_dump(vars(args), f)
        torch.save(model.state_dict(), "exp/model.pth")
        pack(
            files={"asr_model_file": "exp/model.pth"},
            yaml_files={"asr_train_config": "exp/config.yaml"},
            option=["decode.yaml", *extra],
            outpath="packed.zip",
        )
    return workdir / "packed.zip"


# ---------------------------------------------------------------- good audio


def speech(seconds: float = 2.0, rate: int = RATE, text: str = "") -> np.ndarray:
    """Mono float64 speech-like audio of ``seconds`` at ``rate``: espeak-ng's
    voice saying ``text`` (repeated with short pauses) when installed, else
    tone bursts of a few syllable lengths with gaps between them."""
    text = text or "the quick brown fox jumps over the lazy dog"
    if shutil.which("espeak-ng"):
        with tempfile.TemporaryDirectory() as tmp:
            wav = Path(tmp) / "voice.wav"
            subprocess.run(
                ["espeak-ng", "-w", str(wav), text], check=True, capture_output=True
            )
            voice, voice_rate = soundfile.read(str(wav))
        import soxr

        voice = soxr.resample(voice, voice_rate, rate)
    else:
        t = np.arange(int(0.25 * rate)) / rate
        bursts = [0.4 * np.sin(2 * np.pi * f * t) for f in (220, 330, 180, 260)]
        gaps = [np.zeros(int(0.08 * rate))] * len(bursts)
        voice = np.concatenate(
            [x for pair in zip(bursts, gaps, strict=True) for x in pair]
        )
    pause = np.zeros(int(0.4 * rate))
    unit = np.concatenate([voice, pause])
    needed = int(seconds * rate)
    return np.tile(unit, needed // len(unit) + 1)[:needed]


def write(path: Path, samples: np.ndarray, rate: int = RATE, **kwargs) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(str(path), samples, rate, **kwargs)
    return path


# ---------------------------------------------------------------- every kind

#: kind -> (writer(directory) -> path, expected: a reason for bad files, None
#: for good ones).
Kind = Callable[[Path], Path]


def _empty(d: Path) -> Path:
    path = d / "empty.wav"
    path.write_bytes(b"")
    return path


def _zero_samples(d: Path) -> Path:
    return write(d / "zero_samples.wav", np.zeros(0))


def _text(d: Path) -> Path:
    path = d / "notes.wav"
    path.write_text("These are my notes, not a recording.\n" * 20)
    return path


def _truncated_header(d: Path) -> Path:
    whole = write(d / "whole.wav", speech(1.0), subtype="PCM_16").read_bytes()
    (d / "whole.wav").unlink()
    path = d / "truncated_header.wav"
    path.write_bytes(whole[:30])  # inside the 44-byte header
    return path


def _nan(d: Path) -> Path:
    x = speech(1.0).astype(np.float32)
    x[8000] = np.nan
    return write(d / "nan.wav", x, subtype="FLOAT")


def _inf(d: Path) -> Path:
    x = speech(1.0)
    x[4000] = np.inf
    return write(d / "inf.wav", x, subtype="DOUBLE")


def _ulaw(d: Path) -> Path:
    return write(d / "ulaw_8k.wav", speech(2.0, 8000), 8000, subtype="ULAW")


def _hires(d: Path) -> Path:
    return write(d / "hires_96k.wav", speech(2.0, 96000), 96000, subtype="PCM_24")


def _stereo(d: Path) -> Path:
    x = speech(2.0)
    return write(d / "stereo.wav", np.stack([x, 0.5 * x], axis=1), subtype="PCM_16")


def _ogg(d: Path) -> Path:
    return write(d / "clip.ogg", speech(2.0), format="OGG", subtype="VORBIS")


def _flac(d: Path) -> Path:
    return write(d / "clip.flac", speech(2.0), format="FLAC", subtype="PCM_16")


def _odd_path(d: Path) -> Path:
    return write(d / "my recordings" / "Café à Zürich.wav", speech(2.0))


def _silence(d: Path) -> Path:
    return write(d / "silence.wav", np.zeros(3 * RATE), subtype="PCM_16")


def _short(d: Path) -> Path:
    return write(d / "short_50ms.wav", speech(0.05), subtype="PCM_16")


BAD: Dict[str, tuple] = {
    "empty file": (_empty, "empty file"),
    "zero samples": (_zero_samples, "no samples"),
    "text named .wav": (_text, "not an audio file (Format not recognised)"),
    "truncated header": (_truncated_header, "not an audio file ("),
    "NaN samples": (_nan, "NaN/inf samples (first at 0.500 s)"),
    "inf samples": (_inf, "NaN/inf samples (first at 0.250 s)"),
}
GOOD: Dict[str, Kind] = {
    "8-bit u-law": _ulaw,
    "24-bit 96 kHz": _hires,
    "stereo": _stereo,
    "Ogg Vorbis": _ogg,
    "FLAC": _flac,
    "spaces and non-ASCII in the path": _odd_path,
    "3 s of silence": _silence,
    "50 ms clip": _short,
}
