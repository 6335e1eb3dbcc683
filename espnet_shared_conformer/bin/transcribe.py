"""Transcribe audio files with a trained model and its own decoding config.

    python -m espnet_shared_conformer.bin.transcribe \\
        --model exp/asr_.../packed.zip a.wav b.flac ...

``--model`` is a zip packed by the recipe (stage 14) or an experiment
directory decoded by stage 12; the model is loaded by
``espnet_shared_conformer.inference.load_model`` with the decoding
configuration it was scored with (lexicon and word LM included).

Prints one line per good file, ``<file><TAB><transcript>``, in the order
given. Audio is read by :mod:`espnet_shared_conformer.audio_io`, the loader of
the recipe's data preparation and dumping, so all three agree on what is bad:
any format and sample rate libsndfile decodes (8-bit u-law, 24-bit 96 kHz,
Ogg, FLAC, ...) and any number of channels are good, resampled to the model's
rate and mixed to mono; silence is good (an empty or near-empty transcript). A
bad file (an empty file, no samples, not audio, a header cut short, NaN/inf
samples, ...) is reported on stderr as ``transcribe: ERROR: <file>:
<reason>``, the other files are still transcribed, and the exit status is 1. A
clip shorter than the model's minimum input (the encoder's subsampling needs a
few frames: 60 ms for conv2d with a 10 ms hop) is padded with silence on both
sides to 200 ms, with a note on stderr.

Long recordings are decoded in windows of at most ``--window_seconds`` (20 s
by default, the longest training utterance of the recipe's default
filtering), each ending at the quietest 100 ms of its last
``--search_seconds``, so that a cut falls in a pause; the window transcripts
are joined with spaces. Audio is read and resampled block by block, so the
peak memory does not grow with the length of a file: it stays within about
60 MiB of what loading the model takes. Measured with ``/usr/bin/time -v``
(peak RSS) on CPU, for the architecture of the mini configuration
(conf/train_asr.yaml, random weights) with conf/decode_asr.yaml's lexicon
search and a word 3-gram: 1021 MiB for 1 s of speech (torch, ESPnet and the
model), 1031 / 1078 / 1075 / 1071 MiB for 10 s / 60 s / 180 s / 600 s; with
ESPnet's beam search instead, 1032 / 1056 / 1062 MiB for 10 / 60 / 180 s.
Decoded whole (``--window_seconds 1e6``), 60 s took 1182 MiB and 180 s
3159 MiB. (Those figures predate the faster start below, which imports less:
the mini model then took 85 MiB less.) ``--verbose`` logs each file's
duration, windows, time and peak RSS.

``--streaming`` recognizes as a stream instead
(:class:`espnet_shared_conformer.recognizer.StreamingRecognizer`: the
model's chunked encoder, fed audio block by block, and an incremental CTC
search, by default the model's own: its lexicon and word LM, else the CTC
prefix beam search; ``--search greedy`` is the fastest). It needs a model
trained for it (``causal_conv`` and ``chunk_size`` or
``dynamic_chunk_training``); ``--chunk_size`` and ``--num_left_chunks``
default to the model's. An audio argument ``-`` reads headerless PCM from
standard input, for a microphone::

    arecord -f S16_LE -r 16000 | python -m espnet_shared_conformer.bin.transcribe \
        --model packed.zip --streaming -
    sox -d -t raw -r 16000 -e signed -b 16 -c 1 - | python -m ... --streaming -

(``--rate``, ``--format`` and ``--channels`` describe other PCM).

``--onnx model.onnx --streaming`` (instead of ``--model``) recognizes on ONNX
Runtime the chunk step that ``python -m espnet_shared_conformer.onnx_export
--streaming`` wrote, with its sidecar and frontend data beside it
(``StreamingRecognizer.from_onnx``): neither torch nor ESPnet is imported,
as on an always-on device. Its chunks are the graph's; its searches are
``prefix_beam`` (the default, ``--beam_size``, default 10) and ``greedy``. Each
utterance gives one line, ``<file or ->\t<start>\t<end>\t<transcript>``,
times in seconds from the start of the file or stream (``--word_times``
adds a field of ``word:start-end`` items); a file in which nothing was
recognized still gets one line. The stream is cut into utterances by
endpointing (the rule: :mod:`espnet_shared_conformer.recognizer`): after
``--endpoint_silence`` seconds of blank frames once speech was heard, or
after ``--max_utterance`` seconds; 0 turns a rule off. Memory is then
bounded however long the stream runs. On a terminal the utterance under way
is shown in place, rewritten as it grows (carriage return and clear-line);
a pipe or file gets the final lines only. Ctrl-C ends the utterance under
way, prints it, and exits with status 130.

Nothing but the transcripts goes to stdout, and nothing but the command's
own errors and notes to stderr: what ESPnet and KenLM print while the model
loads (notices, warnings, KenLM's progress bar over the ARPA file) is held
back, and shown only with ``--verbose``, or when loading fails unexpectedly.
The recipe's models are built without importing ESPnet's ASR task and
inference binary (which import every model ESPnet has): the first
transcript of the mini model came 1.8x sooner than before
(``benchmarks/bench_startup.py``; figures in ``docs/benchmarks.md``).
"""

import argparse
import contextlib
import logging
import resource
import shutil
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Iterator, List, Optional, TextIO, Tuple

import numpy as np

from espnet_shared_conformer._cli import captured_output, command_parser
from espnet_shared_conformer.audio_io import (
    RAW_FORMATS,
    AudioError,
    audio_blocks,
    kaldi_fbank,
    raw_blocks,
    split_at_pauses,
)
from espnet_shared_conformer.recognizer import SEARCHES, Endpointing

#: Modules whose warnings only --verbose shows (a regular expression on the
#: warning's module, as ``warnings.filterwarnings`` takes it).
_THIRD_PARTY_WARNINGS = r"(espnet|espnet2|torch|torchaudio|kenlm)(\.|$)"

#: Shortest window tried when searching for the model's minimum input; longer
#: is always accepted by the encoders ESPnet builds (15 frames at most).
_MIN_SEARCH_SECONDS = 1.0
#: A clip shorter than this is padded to it (or to the model's minimum, if
#: longer). At the bare minimum the encoder gives one frame, ESPnet's beam
#: search has one step, and its last step appends a second <eos> to a
#: hypothesis that chose <eos>, which then reads "<sos/eos>" as text.
_PAD_SECONDS = 0.2


def get_parser() -> argparse.ArgumentParser:
    parser = command_parser("bin.transcribe", __doc__.split("\n\n")[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--model",
        type=Path,
        help="packed model zip (stage 14) or experiment directory (stage 12)",
    )
    source.add_argument(
        "--onnx",
        type=Path,
        help="a streaming chunk step written by onnx_export --streaming (its .json "
        "and .frontend.npz beside it): recognize on ONNX Runtime, without torch; "
        "needs --streaming",
    )
    parser.add_argument(
        "audio",
        nargs="+",
        help="audio files to transcribe; with --streaming, - reads raw PCM from "
        "standard input",
    )
    parser.add_argument(
        "--decoding",
        type=Path,
        help="decoding YAML (or decode directory) when the model has several",
    )
    parser.add_argument(
        "--beam_size", type=int, help="override the model's decoding config"
    )
    parser.add_argument(
        "--ctc_weight", type=float, help="override the model's decoding config"
    )
    parser.add_argument(
        "--no_lexicon",
        action="store_true",
        help="decode with ESPnet's beam search even if the model has a lexicon "
        "and word LM (--use_word_lm true)",
    )
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument(
        "--unpack_dir",
        type=Path,
        help="where to unpack a zip (default: a per-user cache directory)",
    )
    parser.add_argument(
        "--window_seconds",
        type=float,
        default=20.0,
        help="longest stretch of audio decoded at once",
    )
    parser.add_argument(
        "--search_seconds",
        type=float,
        default=5.0,
        help="a window ends at the quietest point of its last this many seconds",
    )
    streaming = parser.add_argument_group(
        "streaming recognition (--streaming; a model trained with causal_conv and "
        "chunks)"
    )
    streaming.add_argument(
        "--streaming",
        action="store_true",
        help="recognize as a stream: partial results as audio arrives, one line "
        "per utterance",
    )
    streaming.add_argument(
        "--chunk_size",
        type=int,
        help="output frames per chunk (default: the model's chunk_size)",
    )
    streaming.add_argument(
        "--num_left_chunks",
        type=int,
        help="chunks each chunk attends to on its left, -1: all (default: the model's)",
    )
    streaming.add_argument(
        "--search",
        choices=SEARCHES,
        help="CTC search (default: lexicon if the model has one, else prefix_beam)",
    )
    streaming.add_argument(
        "--endpoint_silence",
        type=float,
        default=Endpointing.silence,
        help="end an utterance after this many seconds of blank frames once "
        "speech was heard (0: never)",
    )
    streaming.add_argument(
        "--max_utterance",
        type=float,
        default=Endpointing.max_utterance,
        help="end an utterance when it lasts this many seconds (0: never)",
    )
    streaming.add_argument(
        "--rate", type=int, default=16000, help="sample rate of raw PCM on stdin"
    )
    streaming.add_argument(
        "--format",
        choices=list(RAW_FORMATS),
        default="s16le",
        help="sample format of raw PCM on stdin (little-endian)",
    )
    streaming.add_argument(
        "--channels", type=int, default=1, help="channels of raw PCM on stdin"
    )
    streaming.add_argument(
        "--word_times",
        action="store_true",
        help="add each word's start and end (s) to the lines",
    )
    parser.add_argument(
        "--verbose",
        action="store_true",
        help="log each file's duration, windows, time and peak memory, and "
        "what ESPnet and KenLM print while the model loads",
    )
    return parser


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MiB (Linux: KiB units)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


class WindowDecoder:
    """A loaded model (``load_model``'s ``Transcriber``) fed window by window.

    Knows the model's input (samples, or fbank frames for a model trained on
    dumped features) and its minimum length, found once when first needed.
    """

    def __init__(self, transcriber: Any) -> None:
        self.transcriber = transcriber
        self.fs: int = int(transcriber.fs)
        self._min_samples: Optional[int] = None

    def model_input(self, samples: np.ndarray) -> np.ndarray:
        """Samples (T,) as the model takes them: as they are, or fbank (T', n_mels)."""
        if self.transcriber.n_mels is None:
            return samples
        return kaldi_fbank(samples, self.fs, self.transcriber.n_mels)

    def _accepts(self, num_samples: int) -> bool:
        """Whether the encoder takes silence of ``num_samples`` samples."""
        import torch

        from espnet_shared_conformer.inference import TooShortUttError

        x = self.model_input(np.zeros(num_samples, dtype=np.float32))
        if len(x) == 0:  # not one fbank frame
            return False
        model = self.transcriber.asr_model
        try:
            with torch.inference_mode():
                model.encode(torch.from_numpy(x)[None], torch.tensor([len(x)]))
        except TooShortUttError:
            return False
        except RuntimeError:
            # The STFT's reflection padding needs more than half a window of
            # input; below that the frontend itself refuses.
            return False
        return True

    @property
    def min_samples(self) -> int:
        """Fewest samples the model decodes (binary search over silence)."""
        if self._min_samples is None:
            high = int(_MIN_SEARCH_SECONDS * self.fs)
            if not self._accepts(high):
                raise RuntimeError(
                    f"the model's encoder refuses {_MIN_SEARCH_SECONDS} s of input"
                )
            low = 0  # refused (or empty); high: accepted
            while high - low > 1:
                middle = (low + high) // 2
                if self._accepts(middle):
                    high = middle
                else:
                    low = middle
            self._min_samples = high
        return self._min_samples

    @property
    def pad_samples(self) -> int:
        """Length short clips are padded to: ``_PAD_SECONDS``, or the minimum."""
        return max(self.min_samples, int(_PAD_SECONDS * self.fs))

    def pad(self, samples: np.ndarray) -> np.ndarray:
        """``samples`` (T,) with silence on both sides up to :attr:`pad_samples`."""
        missing = self.pad_samples - len(samples)
        if missing <= 0:
            return samples
        return np.pad(samples, (missing // 2, missing - missing // 2))

    def decode(self, samples: np.ndarray) -> str:
        """Text of one window of mono samples (T,) at :attr:`fs`."""
        return self.transcriber(self.model_input(samples))


def transcribe_file(
    decoder: WindowDecoder,
    path: str,
    window_seconds: float,
    search_seconds: float,
) -> Tuple[str, float, int]:
    """Transcript of one file, its duration (s) and number of windows.

    Raises ``AudioError`` for bad audio (possibly after decoding some
    windows: a file can turn out bad part way).
    """
    fs = decoder.fs
    blocks = audio_blocks(path, fs, allow_command=False)
    texts: List[str] = []
    total = windows = 0
    for window in split_at_pauses(blocks, fs, window_seconds, search_seconds):
        total += len(window)
        windows += 1
        # Only a last window can be this short: cuts leave at least
        # window_seconds - search_seconds. (The test comes first to search
        # for the minimum only when needed.)
        if len(window) < fs * _MIN_SEARCH_SECONDS and len(window) < decoder.pad_samples:
            if windows == 1 and len(window) < decoder.min_samples:
                _note_padding(path, len(window), decoder)  # the whole file
            window = decoder.pad(window)
        text = decoder.decode(window).strip()
        if text:
            texts.append(text)
    return " ".join(texts), total / fs, windows


def _note_padding(path: str, length: int, decoder: WindowDecoder) -> None:
    # Said for a file this short in all; a short last window of a long file
    # is padded silently.
    ms = 1000.0 / decoder.fs
    print(
        f"transcribe: note: {path}: {length * ms:.0f} ms is shorter than the "
        f"model's minimum of {decoder.min_samples * ms:.0f} ms; padded with "
        f"silence to {decoder.pad_samples * ms:.0f} ms",
        file=sys.stderr,
    )


def _load(args: argparse.Namespace) -> Any:
    from espnet_shared_conformer.inference import load_model

    overrides = {
        k: v
        for k, v in (("beam_size", args.beam_size), ("ctc_weight", args.ctc_weight))
        if v is not None
    }
    return load_model(
        args.model,
        decoding=args.decoding,
        device=args.device,
        unpack_dir=args.unpack_dir,
        use_lexicon=not args.no_lexicon,
        **overrides,
    )


#: Blocks a file is read in by ``--streaming``: partials as often, on a terminal.
_STREAM_BLOCK_SECONDS = 0.2
#: Options of the streaming group, which mean nothing without ``--streaming``.
_STREAMING_ONLY = (
    "chunk_size",
    "num_left_chunks",
    "search",
    "endpoint_silence",
    "max_utterance",
    "rate",
    "format",
    "channels",
    "word_times",
)
_CLEAR_LINE = "\r\x1b[K"  # carriage return, erase to the end of the line
#: Options of a model that ``--onnx`` has not (its chunks are the graph's).
_MODEL_ONLY = (
    "decoding",
    "ctc_weight",
    "no_lexicon",
    "device",
    "unpack_dir",
    "chunk_size",
    "num_left_chunks",
)
#: The searches that run without torch.
_ONNX_SEARCHES = ("greedy", "prefix_beam")


def _usage_error(args: argparse.Namespace, parser: argparse.ArgumentParser) -> str:
    """What is wrong with the options, or "" (exit status 2)."""
    if args.onnx is not None:
        if not args.streaming:
            return "--onnx needs --streaming: the graph is a streaming chunk step"
        given = [n for n in _MODEL_ONLY if getattr(args, n) != parser.get_default(n)]
        if given:
            return f"--{given[0]} applies to --model only, not to --onnx"
        if args.search not in (None, *_ONNX_SEARCHES):
            return (
                f"--search {args.search} needs --model (it runs on torch); --onnx "
                f"searches with {' or '.join(_ONNX_SEARCHES)}"
            )
    if not args.streaming:
        given = [
            n for n in _STREAMING_ONLY if getattr(args, n) != parser.get_default(n)
        ]
        if given:
            return f"--{given[0]} needs --streaming"
        if "-" in args.audio:
            return "reading standard input (-) needs --streaming"
        return ""
    if args.audio.count("-") > 1:
        return "standard input (-) can be read once"
    if args.rate < 1 or args.channels < 1:
        return f"--rate ({args.rate}) and --channels ({args.channels}) must be positive"
    try:
        Endpointing(args.endpoint_silence, args.max_utterance)
    except ValueError as e:
        return f"--{e}"
    return ""


class _Lines:
    """Writes one source's utterances to ``out``: each final on a line of its
    own; on a terminal, the one under way in place until it is final."""

    def __init__(self, out: TextIO, name: str, word_times: bool) -> None:
        self.out = out
        self.name = name
        self.word_times = word_times
        self.live = out.isatty()
        self.printed = 0  # final lines

    def partial(self, text: str) -> None:
        if self.live:
            # The end of a long partial: a wrapped line cannot be rewritten.
            width = max(1, shutil.get_terminal_size().columns - 1)
            self.out.write(_CLEAR_LINE + text[-width:])
            self.out.flush()

    def final(self, utterance: Any, always: bool = False) -> None:
        """Print ``utterance``'s line, unless nothing was recognized (and not
        ``always``)."""
        if self.live:
            self.out.write(_CLEAR_LINE)
        if utterance.text or always:
            fields = [
                self.name,
                f"{utterance.start:.2f}",
                f"{utterance.end:.2f}",
                utterance.text,
            ]
            if self.word_times:
                fields.append(
                    " ".join(
                        f"{w.word}:{w.start:.2f}-{w.end:.2f}" for w in utterance.words
                    )
                )
            self.out.write("\t".join(fields) + "\n")
            self.printed += 1
        self.out.flush()


def _source_blocks(
    path: str, fs: int, args: argparse.Namespace
) -> Iterator[np.ndarray]:
    """Mono float32 blocks at ``fs`` of a file, or of raw PCM on stdin (``-``)."""
    if path == "-":
        return raw_blocks(
            sys.stdin.buffer,
            args.rate,
            args.format,
            args.channels,
            target_rate=fs,
            source="standard input",
        )
    return audio_blocks(
        path, fs, allow_command=False, block_seconds=_STREAM_BLOCK_SECONDS
    )


def stream_file(
    recognizer: Any, path: str, fs: int, args: argparse.Namespace, out: TextIO
) -> float:
    """Recognize one file (or ``-``) as a stream, writing its lines to
    ``out``; its duration in seconds. Raises ``AudioError`` for bad audio, and
    ``KeyboardInterrupt`` after printing the utterance it ended."""
    lines = _Lines(out, path, args.word_times)
    samples = 0
    try:
        for block in _source_blocks(path, fs, args):
            samples += len(block)
            update = recognizer.feed(block)
            for utterance in update.finals:
                lines.final(utterance)
            lines.partial(update.partial.text)
    except KeyboardInterrupt:
        lines.final(recognizer.finish())
        raise
    except BaseException:
        recognizer.reset()  # the next file starts a new stream
        raise
    lines.final(recognizer.finish(), always=lines.printed == 0)
    return samples / fs


def _model_recognizer(args: argparse.Namespace, transcriber: Any) -> Any:
    """``--model --streaming``'s recognizer, or None after saying why not."""
    from espnet_shared_conformer.recognizer import StreamingRecognizer

    try:
        return StreamingRecognizer.from_model(
            transcriber,
            search=args.search,
            chunk_size=args.chunk_size,
            num_left_chunks=args.num_left_chunks,
            endpointing=Endpointing(args.endpoint_silence, args.max_utterance),
        )
    except ValueError as e:
        print(f"transcribe: ERROR: {args.model}: {e}", file=sys.stderr)
        return None


def _onnx_recognizer(args: argparse.Namespace) -> Any:
    """``--onnx``'s recognizer (no torch), or None after saying why not."""
    from espnet_shared_conformer.recognizer import StreamingRecognizer

    try:
        return StreamingRecognizer.from_onnx(
            str(args.onnx),
            search=args.search or "prefix_beam",
            beam_size=10 if args.beam_size is None else args.beam_size,
            endpointing=Endpointing(args.endpoint_silence, args.max_utterance),
        )
    except (ValueError, OSError, RuntimeError) as e:
        # RuntimeError: ONNX Runtime's own errors (a file that is no graph).
        print(f"transcribe: ERROR: cannot load {args.onnx}: {e}", file=sys.stderr)
        return None


def _stream_all(args: argparse.Namespace, recognizer: Any) -> int:
    """``--streaming``: every source through one recognizer; the exit status."""
    if recognizer is None:
        return 1
    fs = recognizer.features.fs
    failed = 0
    for path in args.audio:
        start = time.monotonic()
        try:
            seconds = stream_file(recognizer, path, fs, args, sys.stdout)
        except KeyboardInterrupt:
            return 130
        except AudioError as e:
            print(f"transcribe: ERROR: {e}", file=sys.stderr)
            failed += 1
            continue
        logging.info(
            "%s: %.2f s of audio streamed in %.2f s, peak RSS %.0f MiB",
            path,
            seconds,
            time.monotonic() - start,
            peak_rss_mb(),
        )
    if failed:
        print(
            f"transcribe: {failed} of {len(args.audio)} source(s) not transcribed",
            file=sys.stderr,
        )
    return 1 if failed else 0


def main(argv: Optional[List[str]] = None) -> int:
    parser = get_parser()
    args = parser.parse_args(argv)
    usage = _usage_error(args, parser)
    if usage:
        print(f"transcribe: ERROR: {usage}", file=sys.stderr)
        return 2
    model = args.model if args.onnx is None else args.onnx
    if not model.exists():
        print(
            f"transcribe: ERROR: no such model file or directory: {model}",
            file=sys.stderr,
        )
        return 1
    if not 0 < args.search_seconds <= args.window_seconds:
        print(
            f"transcribe: ERROR: --search_seconds ({args.search_seconds}) must be "
            f"in (0, --window_seconds ({args.window_seconds})]",
            file=sys.stderr,
        )
        return 2
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s (%(module)s:%(lineno)d) %(levelname)s: %(message)s",
    )
    if not args.verbose:
        # ESPnet and torch also warn while decoding (202511's model forward
        # warns of torch's deprecated autocast on the first utterance): a
        # user's terminal gets them with --verbose only.
        warnings.filterwarnings("ignore", module=_THIRD_PARTY_WARNINGS)
    if args.onnx is not None:
        return _stream_all(args, _onnx_recognizer(args))
    expected = (ValueError, FileNotFoundError)
    try:
        # Stdout carries the transcripts only; some ESPnet releases print
        # notices there while being imported (Flash Attention's absence), and
        # KenLM draws a progress bar on stderr while it reads an ARPA file.
        # Only --verbose shows them (on stderr).
        with (
            contextlib.redirect_stdout(sys.stderr),
            captured_output(enabled=not args.verbose, expected=expected),
        ):
            decoder = WindowDecoder(_load(args))
    except expected as e:
        print(f"transcribe: ERROR: cannot load {args.model}: {e}", file=sys.stderr)
        return 1
    if args.streaming:
        return _stream_all(args, _model_recognizer(args, decoder.transcriber))
    failed = 0
    for path in args.audio:
        start = time.monotonic()
        try:
            text, seconds, windows = transcribe_file(
                decoder, path, args.window_seconds, args.search_seconds
            )
        except AudioError as e:
            print(f"transcribe: ERROR: {e}", file=sys.stderr)
            failed += 1
            continue
        except Exception as e:  # noqa: BLE001 - one file's failure must not stop the rest
            logging.info("decoding %s failed", path, exc_info=True)
            print(
                f"transcribe: ERROR: {path}: decoding failed ({type(e).__name__}: {e})",
                file=sys.stderr,
            )
            failed += 1
            continue
        print(f"{path}\t{text}", flush=True)
        logging.info(
            "%s: %.2f s of audio in %d window(s), decoded in %.2f s, peak RSS %.0f MiB",
            path,
            seconds,
            windows,
            time.monotonic() - start,
            peak_rss_mb(),
        )
    if failed:
        print(
            f"transcribe: {failed} of {len(args.audio)} file(s) not transcribed",
            file=sys.stderr,
        )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
