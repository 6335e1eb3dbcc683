"""Start-up of streaming recognition on ONNX Runtime: process start to the
first chunk recognized.

Exports the chunk step (``onnx_streaming``) of an ASR config's encoder
(default: the tiny 960 h ``train_asr_960h.yaml``, made streaming with
``causal_conv``, ``--chunk_size`` and ``--num_left_chunks``) with a CTC head
of ``--vocab_size`` tokens, and the config's default frontend (its
``frontend_conf``, ``--input_size`` mel bins) as the numbers a recognizer
without torch computes features from; weights are random (seeded), which
start-up does not depend on. Then starts ``--repeats`` fresh Python
processes, one after the other, each of which builds the whole recognizer
from the export (``StreamingRecognizer.from_onnx``: numpy features, the
graph, the CTC prefix beam search) and feeds it the audio samples of one
chunk; the time runs from just before the process is spawned to that
chunk's partial result, and includes the interpreter's own start. Prints
the median, min and max, whether any child loaded torch or ESPnet, and the
verdict against the 2 s target of an always-on device.

Usage::

    python benchmarks/bench_onnx_startup.py [--config conf.yaml] [--repeats 5]
        [--threads 1] [--chunk_size 16] [--num_left_chunks 4] [--json out.json]
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_CONFIG = os.path.join(ROOT, "egs/librispeech/asr1/conf/train_asr_960h.yaml")
TARGET_SECONDS = 2.0
# Modules an always-on device does not carry.
HEAVY = ("torch", "torchaudio", "espnet", "espnet2")


def export(args: argparse.Namespace, path: str) -> dict:
    """Write the chunk step of ``args.config``'s encoder to ``path``."""
    import torch
    import yaml
    from espnet2.asr.frontend.default import DefaultFrontend

    from espnet_shared_conformer.encoder import SharedConformerEncoder
    from espnet_shared_conformer.features import LogMelFrontend
    from espnet_shared_conformer.onnx_streaming import export_streaming_onnx

    with open(args.config, encoding="utf-8") as f:
        config = yaml.safe_load(f)
    conf = config["encoder_conf"]
    frontend_conf = {**(config.get("frontend_conf") or {}), "n_mels": args.input_size}
    frontend = LogMelFrontend.of_module(DefaultFrontend(**frontend_conf))
    conf.update(
        causal_conv=True,
        chunk_size=args.chunk_size,
        num_left_chunks=args.num_left_chunks,
    )
    torch.manual_seed(0)
    encoder = SharedConformerEncoder(input_size=args.input_size, **conf).eval()
    ctc = torch.nn.Module()
    ctc.ctc_lo = torch.nn.Linear(encoder.output_size(), args.vocab_size)
    tokens = ["<blank>"] + [f"t{i}" for i in range(1, args.vocab_size)]
    metadata = dict(token_list=tokens, frame_shift=frontend.hop_length / frontend.fs)
    return export_streaming_onnx(
        encoder, path, ctc=ctc, metadata=metadata, frontend=frontend
    )


def child(path: str, threads: int) -> dict:
    """What a device does at start-up: build the recognizer from the export,
    recognize one chunk of audio. Returns the wall-clock time of its partial
    result, the output frames searched and the heavy modules loaded."""
    import numpy as np

    from espnet_shared_conformer.recognizer import StreamingRecognizer

    recognizer = StreamingRecognizer.from_onnx(path, threads=threads)
    spec, features = recognizer.encoder.spec, recognizer.features
    # The samples that complete the chunk's input frames: frame m is centred
    # on sample m * hop and needs n_fft / 2 more (frame 0 one more yet).
    n_fft = spec["frontend"]["n_fft"]
    samples = (spec["input_frames"] - 1) * features.hop_length + n_fft // 2 + 1
    audio = 0.1 * np.random.default_rng(0).standard_normal(samples)
    update = recognizer.feed(audio.astype(np.float32))
    done = time.time()
    loaded = sorted(m for m in sys.modules if m.split(".")[0] in HEAVY)
    frames = recognizer.search.frames
    return dict(done=done, frames=frames, partial=update.partial.text, loaded=loaded)


def _run_child(path: str, threads: int) -> dict:
    start = time.time()
    run = subprocess.run(
        [sys.executable, __file__, "--child", path, "--threads", str(threads)],
        capture_output=True,
        text=True,
    )
    if run.returncode != 0:
        raise RuntimeError(f"the child failed:\n{run.stderr[-2000:]}")
    report = json.loads(run.stdout.strip().splitlines()[-1])
    report["seconds"] = report.pop("done") - start
    return report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default=DEFAULT_CONFIG)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--chunk_size", type=int, default=16)
    parser.add_argument("--num_left_chunks", type=int, default=4)
    parser.add_argument("--vocab_size", type=int, default=256)
    parser.add_argument("--input_size", type=int, default=80)
    parser.add_argument("--json", help="also write the figures here")
    # Internal: what a child process does.
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.threads)))
        return 0
    if args.repeats < 1:
        parser.error(f"--repeats ({args.repeats}) must be >= 1")

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "step.onnx")
        spec = export(args, path)
        size = os.path.getsize(path)
        runs = [_run_child(path, args.threads) for _ in range(args.repeats)]
    seconds = [run["seconds"] for run in runs]
    loaded = sorted({m for run in runs for m in run["loaded"]})
    median = statistics.median(seconds)
    figures = dict(
        config=args.config,
        chunk_size=spec["chunk_size"],
        num_left_chunks=spec["num_left_chunks"],
        file_bytes=size,
        threads=args.threads,
        seconds=seconds,
        median_seconds=median,
        first_chunk_frames=runs[0]["frames"],
        heavy_modules_loaded=loaded,
    )
    print(
        f"chunk step of {os.path.basename(args.config)} (chunk {spec['chunk_size']}, "
        f"{spec['num_left_chunks']} left chunks): {size:,} bytes"
    )
    print(
        f"process start to first chunk recognized ({runs[0]['frames']} frames), "
        f"{args.repeats} runs: median {median:.3f} s (min {min(seconds):.3f}, "
        f"max {max(seconds):.3f})"
    )
    print(f"torch or ESPnet loaded: {', '.join(loaded) if loaded else 'no'}")
    verdict = "met" if median < TARGET_SECONDS else "MISSED"
    print(f"target < {TARGET_SECONDS:g} s: {verdict}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(figures, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
