"""On-device figures: file size, peak RSS and real-time factor of encoder + CTC.

For the encoder of an ASR config (default: the tiny 960 h ``train_asr_960h.yaml``)
and, beside it, the unshared full-rank ESPnet-equivalent Conformer of the same
virtual depth, each under PyTorch fp32, PyTorch dynamic int8, ONNX Runtime
fp32 and ONNX Runtime dynamic int8. Every measurement runs in its own
subprocess (so peak RSS is that runtime's alone) on ``--threads`` threads;
the table gives medians over ``--repeats`` subprocesses. Weights are random
(seeded): speed and memory do not depend on their values.

Usage::

    python benchmarks/bench_ondevice.py [--config conf.yaml]
        [--seconds 10] [--repeats 3] [--threads 2] [--vocab_size 256]
"""

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The tiny LibriSpeech model (<= 5M parameters, V = 16, d = 256, 256 pieces).
DEFAULT_CONFIG = os.path.join(ROOT, "egs/librispeech/asr1/conf/train_asr_960h.yaml")
RUNTIMES = ("torch-fp32", "torch-int8", "onnx-fp32", "onnx-int8")
FRAMES_PER_SECOND = 100  # 10 ms hop


def _models(config: str, variant: str, vocab: int, input_size: int):
    import torch

    from espnet_shared_conformer.encoder import SharedConformerEncoder
    from espnet_shared_conformer.params import virtual_equivalent_options

    with open(config, encoding="utf-8") as f:
        conf = yaml.safe_load(f)["encoder_conf"]
    if variant == "unshared":
        conf = virtual_equivalent_options(conf)
    torch.manual_seed(0)
    encoder = SharedConformerEncoder(input_size=input_size, **conf).eval()
    ctc = torch.nn.Module()
    ctc.ctc_lo = torch.nn.Linear(encoder.output_size(), vocab)
    return encoder, ctc


def export(args) -> dict:
    """Write ``args.out_dir/model.onnx`` and its dynamic-int8 quantization."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from espnet_shared_conformer.onnx_export import export_onnx

    encoder, ctc = _models(args.config, args.variant, args.vocab_size, args.input_size)
    fp32 = os.path.join(args.out_dir, "model.onnx")
    int8 = os.path.join(args.out_dir, "model.int8.onnx")
    export_onnx(encoder, fp32, ctc=ctc)
    quantize_dynamic(fp32, int8, weight_type=QuantType.QInt8)
    return {"onnx-fp32": fp32, "onnx-int8": int8}


def measure(args) -> dict:
    """One measurement, in this process: file size, real-time factor, peak RSS.

    An ONNX Runtime child imports onnxruntime and numpy only (the model was
    exported by another process), so its peak RSS is what decoding with ONNX
    Runtime costs; a PyTorch child holds torch, ESPnet's modules and the model.
    """
    if args.runtime.startswith("onnx"):
        import numpy as np
        import onnxruntime as ort

        path = args.onnx_file
        options = ort.SessionOptions()
        options.intra_op_num_threads = args.threads
        options.inter_op_num_threads = 1
        session = ort.InferenceSession(
            path, options, providers=["CPUExecutionProvider"]
        )
        frames = int(args.seconds * FRAMES_PER_SECOND)
        rng = np.random.default_rng(0)
        inputs = {
            "feats": rng.standard_normal((1, frames, args.input_size), np.float32),
            "feats_lengths": np.array([frames], dtype=np.int64),
        }

        def run():
            session.run(None, inputs)

    else:
        import torch

        torch.set_num_threads(args.threads)
        from espnet_shared_conformer.onnx_export import EncoderCTC

        encoder, ctc = _models(
            args.config, args.variant, args.vocab_size, args.input_size
        )
        model = EncoderCTC(encoder, ctc)
        if args.runtime == "torch-int8":
            model = torch.ao.quantization.quantize_dynamic(
                model, {torch.nn.Linear}, torch.qint8
            )
        path = os.path.join(tempfile.mkdtemp(), "model.pth")
        torch.save(model.state_dict(), path)
        frames = int(args.seconds * FRAMES_PER_SECOND)
        feats = torch.randn(1, frames, args.input_size)
        lengths = torch.tensor([frames])

        def run():
            with torch.inference_mode():
                model(feats, lengths)

    run()  # warm-up
    times = []
    for _ in range(3):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return dict(
        size=os.path.getsize(path),
        rtf=min(times) / args.seconds,
        rss=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,  # Linux: KiB
    )


def _child(argv: list) -> dict:
    out = subprocess.run(
        [sys.executable, __file__] + argv, capture_output=True, text=True
    )
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default=DEFAULT_CONFIG)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--vocab_size", type=int, default=256)
    parser.add_argument("--input_size", type=int, default=80)
    # Internal: what a child process does.
    parser.add_argument("--variant", choices=("shared", "unshared"))
    parser.add_argument("--runtime", choices=RUNTIMES)
    parser.add_argument("--onnx_file")
    parser.add_argument("--out_dir")
    args = parser.parse_args()
    if args.variant and args.out_dir:
        print(json.dumps(export(args)))
        return 0
    if args.variant:
        print(json.dumps(measure(args)))
        return 0

    common = [
        "--config", args.config, "--seconds", str(args.seconds),
        "--threads", str(args.threads), "--vocab_size", str(args.vocab_size),
        "--input_size", str(args.input_size),
    ]  # fmt: skip
    rows = []
    for variant in ("shared", "unshared"):
        out_dir = tempfile.mkdtemp(prefix=f"bench_ondevice_{variant}_")
        onnx_files = _child(common + ["--variant", variant, "--out_dir", out_dir])
        for runtime in RUNTIMES:
            extra = (
                ["--onnx_file", onnx_files[runtime]] if runtime in onnx_files else []
            )
            results = [
                _child(common + ["--variant", variant, "--runtime", runtime] + extra)
                for _ in range(args.repeats)
            ]
            rows.append(
                (
                    variant,
                    runtime,
                    statistics.median(r["size"] for r in results) / 2**20,
                    statistics.median(r["rss"] for r in results) / 2**20,
                    statistics.median(r["rtf"] for r in results),
                )
            )
            print(f"{variant} {runtime}: done", file=sys.stderr, flush=True)
    print(
        f"{os.path.relpath(args.config, ROOT)}: encoder + CTC (vocabulary "
        f"{args.vocab_size}), {args.seconds:g} s of input, {args.threads} threads, "
        f"median of {args.repeats} processes"
    )
    print("| encoder | runtime | file MiB | peak RSS MiB | RTF |")
    print("|---|---|---:|---:|---:|")
    base = {r[1]: r for r in rows if r[0] == "unshared"}
    for variant, runtime, size, rss, rtf in rows:
        print(f"| {variant} | {runtime} | {size:.2f} | {rss:.0f} | {rtf:.4f} |")
    print()
    print("| runtime | file, shared/unshared | peak RSS | RTF |")
    print("|---|---:|---:|---:|")
    for variant, runtime, size, rss, rtf in rows:
        if variant == "shared":
            b = base[runtime]
            ratios = f"{size / b[2]:.3f} | {rss / b[3]:.3f} | {rtf / b[4]:.3f}"
            print(f"| {runtime} | {ratios} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
