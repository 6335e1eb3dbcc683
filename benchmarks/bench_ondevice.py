"""On-device figures: file size, peak RSS and real-time factor of encoder + CTC.

For the encoder of an ASR config (default: the recipe's ``train_asr.yaml``)
and, beside it, the unshared full-rank ESPnet-equivalent Conformer of the same
virtual depth, each under PyTorch fp32, PyTorch dynamic int8, ONNX Runtime
fp32 and ONNX Runtime dynamic int8. Every measurement runs in its own
subprocess (so peak RSS is that runtime's alone) on ``--threads`` threads;
the table gives medians over ``--repeats`` subprocesses. Weights are random
(seeded): speed and memory do not depend on their values.

Usage::

    python benchmarks/bench_ondevice.py [--config conf.yaml]
        [--seconds 10] [--repeats 3] [--threads 2]
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
DEFAULT_CONFIG = os.path.join(ROOT, "egs/librispeech/asr1/conf/train_asr.yaml")
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


def measure(args) -> dict:
    """One measurement, in this process: size, RTF, peak RSS."""
    import torch

    torch.set_num_threads(args.threads)
    from espnet_shared_conformer.onnx_export import EncoderCTC, export_onnx

    encoder, ctc = _models(args.config, args.variant, args.vocab_size, args.input_size)
    frames = int(args.seconds * FRAMES_PER_SECOND)
    feats = torch.randn(1, frames, args.input_size)
    lengths = torch.tensor([frames])
    tmp = tempfile.mkdtemp()
    if args.runtime.startswith("torch"):
        model = EncoderCTC(encoder, ctc)
        if args.runtime == "torch-int8":
            model = torch.ao.quantization.quantize_dynamic(
                model, {torch.nn.Linear}, torch.qint8
            )
        path = os.path.join(tmp, "model.pth")
        torch.save(model.state_dict(), path)

        def run():
            with torch.inference_mode():
                model(feats, lengths)
    else:
        import onnxruntime as ort

        path = os.path.join(tmp, "model.onnx")
        export_onnx(encoder, path, ctc=ctc)
        del encoder, ctc
        if args.runtime == "onnx-int8":
            from onnxruntime.quantization import QuantType, quantize_dynamic

            quantized = os.path.join(tmp, "model.int8.onnx")
            quantize_dynamic(path, quantized, weight_type=QuantType.QInt8)
            path = quantized
        options = ort.SessionOptions()
        options.intra_op_num_threads = args.threads
        options.inter_op_num_threads = 1
        session = ort.InferenceSession(
            path, options, providers=["CPUExecutionProvider"]
        )
        inputs = {"feats": feats.numpy(), "feats_lengths": lengths.numpy()}

        def run():
            session.run(None, inputs)

    run()  # warm-up
    times = []
    for _ in range(3):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return dict(
        size=os.path.getsize(path),
        rtf=min(times) / args.seconds,
        # Linux reports kilobytes. Export / quantization happen in this process
        # too, so for ONNX this is an upper bound of the decoding peak.
        rss=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default=DEFAULT_CONFIG)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--vocab_size", type=int, default=5000)
    parser.add_argument("--input_size", type=int, default=80)
    parser.add_argument("--variant", choices=("shared", "unshared"))
    parser.add_argument("--runtime", choices=RUNTIMES)
    args = parser.parse_args()
    if args.variant:  # a child: one measurement
        print(json.dumps(measure(args)))
        return 0

    rows = []
    for variant in ("shared", "unshared"):
        for runtime in RUNTIMES:
            results = []
            for _ in range(args.repeats):
                child = subprocess.run(
                    [sys.executable, __file__]
                    + sys.argv[1:]
                    + ["--variant", variant, "--runtime", runtime],
                    capture_output=True,
                    text=True,
                    check=True,
                )
                results.append(json.loads(child.stdout.strip().splitlines()[-1]))
            rows.append(
                (
                    variant,
                    runtime,
                    statistics.median(r["size"] for r in results) / 2**20,
                    statistics.median(r["rss"] for r in results) / 2**20,
                    statistics.median(r["rtf"] for r in results),
                )
            )
    print(
        f"{os.path.relpath(args.config, ROOT)}: encoder + CTC (vocabulary "
        f"{args.vocab_size}), {args.seconds:g} s of input, {args.threads} threads, "
        f"median of {args.repeats} processes"
    )
    print("| encoder | runtime | file MiB | peak RSS MiB | RTF |")
    print("|---|---|---:|---:|---:|")
    for variant, runtime, size, rss, rtf in rows:
        print(f"| {variant} | {runtime} | {size:.2f} | {rss:.0f} | {rtf:.4f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
