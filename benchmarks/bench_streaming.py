"""Streaming figures of a trained model: WER, latency, compute per chunk, memory.

Decodes the recipe's test sets as streams, each utterance fed in blocks of
one chunk's audio as a microphone would deliver them, at full context and at
each chunk size of ``--chunks`` (output frames; the mini model's frames are
40 ms, so ``32 16 8 4`` are 1280, 640, 320 and 160 ms), on PyTorch and, where
the model can be exported with a bounded cache, on ONNX Runtime (without
torch: greedy and prefix beam searches only), with each search of
``--searches``. PocketSphinx
(the ``peers`` extra) decodes the same files live, in blocks of the same
duration, as a real streaming peer. For each it reports:

- WER and CER on each test set (the recipe's sclite scoring), and the WER's
  ratio to the same model at full context;
- the algorithmic latency: the chunk plus what the front end reads past it
  (the STFT's half window, the subsampling's window beyond its stride);
- the compute per block of one chunk's audio, at ``--threads`` threads:
  median and p95 over every block of every utterance, and the p95's ratio to
  the chunk's duration (the real-time budget);
- the time from the end of the audio to the final result (the last block
  and ``finish()``), median and p95;
- the peak resident memory of the process that decoded (each configuration
  runs in its own process, after a warm-up utterance that is not timed).

Full context is the same recognizer with one chunk as long as the
utterance: the offline forward of the model (its causal convolution
included), so that the searches are identical and only the chunking changes.
Each utterance is one stream (no endpointing), as ``asr_inference
--streaming true`` decodes it.

Usage (from the recipe's directory, whose configs name their files relative
to it, after the recipe or the ablation trained a streaming model; the
decoding YAML or directory gives the lexicon and word LM)::

    cd egs/librispeech/asr1
    ../../../.venv/bin/python ../../../benchmarks/bench_streaming.py \\
        --model exp/asr_ablation_streaming_3x2_144_seed1 \\
        --decoding exp/asr_ablation_streaming_3x2_144_seed1/decode_lexicon \\
        --data data --beam_size 16 --jobs 2 --out_dir exp/bench_streaming \\
        [--chunks "32 16 8 4"] [--num_left_chunks 4] \\
        [--searches "lexicon prefix_beam"] \\
        [--runtimes "torch onnx pocketsphinx"] \\
        [--json ../../../docs/streaming/bench.json \\
         --markdown ../../../docs/streaming/bench.md \\
         --plot ../../../docs/streaming/wer_by_chunk.png]

Run it on a machine without other load: the compute figures are wall-clock.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import checkout  # benchmarks/, beside this script
import numpy as np

ROOT = checkout.ROOT
# The recipe's data-directory library and scoring, and its peers' text
# normalization: the figures are scored exactly as stage 13 scores.
sys.path[:0] = [
    str(ROOT / "egs/TEMPLATE/asr1/pyscripts/utils"),
    str(ROOT / "egs/librispeech/asr1/local"),
]

#: Sample rate of the recipe's audio.
RATE = 16000
RUNTIMES = ("torch", "onnx", "pocketsphinx")
#: The searches the recognizer runs on ONNX Runtime (the lexicon search's
#: decoder runs on torchaudio).
ONNX_SEARCHES = ("greedy", "prefix_beam")
#: Output frames of the "chunk" that stands for full context: more than any
#: utterance has, so that the whole utterance is one chunk.
FULL_CONTEXT = 1_000_000


def peak_rss_kib() -> int:
    """This process's peak resident memory, KiB: Linux's VmHWM. Not
    ``getrusage``'s ru_maxrss, which keeps the parent's peak across fork and
    exec (a child of a parent that imported torch would report torch's)."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise RuntimeError("/proc/self/status has no VmHWM")


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (linear interpolation), NaN for no values."""
    return float(np.percentile(values, q)) if len(values) else float("nan")


# ----------------------------------------------------------------- children


def _read_set(data_dir: str) -> Dict[str, str]:
    from datadir import read_table

    return dict(sorted(read_table(Path(data_dir) / "wav.scp").items()))


def _stream(
    recognizer: Any, samples: np.ndarray, block: int
) -> "tuple[str, List[float], float]":
    """Feed ``samples`` in blocks; the text, each block's seconds, and the
    seconds from the last sample's arrival to the final result."""
    times = []
    starts = range(0, len(samples), block)
    for i, start in enumerate(starts):
        begin = time.perf_counter()
        recognizer.feed(samples[start : start + block])
        elapsed = time.perf_counter() - begin
        if i < len(starts) - 1:
            times.append(elapsed)
    begin = time.perf_counter()
    text = recognizer.finish().text
    # The last block arrives with the end of the audio: its time counts
    # towards the final result, not towards the per-chunk budget.
    return text, times, elapsed + time.perf_counter() - begin


def _recognizer(job: Dict[str, Any]) -> Any:
    """The job's recognizer (the import of its runtime included)."""
    from espnet_shared_conformer.recognizer import Endpointing, StreamingRecognizer

    if job["runtime"] == "onnx":
        return StreamingRecognizer.from_onnx(
            job["graph"],
            search=job["search"],
            beam_size=job["beam_size"],
            endpointing=Endpointing.off(),
            threads=job["threads"],
        )
    import torch

    from espnet_shared_conformer.inference import load_model

    torch.set_num_threads(job["threads"])
    transcriber = load_model(job["model"], decoding=job["decoding"])
    full = job["chunk"] == 0
    return StreamingRecognizer.from_model(
        transcriber,
        search=job["search"],
        chunk_size=FULL_CONTEXT if full else job["chunk"],
        num_left_chunks=-1 if full else job["num_left_chunks"],
        endpointing=Endpointing.off(),
        beam_size=job["beam_size"],
    )


def _pocketsphinx_live() -> Any:
    """PocketSphinx decoding live, ``finish`` giving the utterance as the
    recognizer's do, its text in the references' conventions."""
    from types import SimpleNamespace

    from peers import PocketSphinxUtterances, normalize

    class Live(PocketSphinxUtterances):
        def finish(self) -> Any:  # type: ignore[override]
            return SimpleNamespace(text=normalize(super().finish()))

    return Live()


def child(job: Dict[str, Any]) -> Dict[str, Any]:
    """Decode every set of ``job`` in this process; write each set's
    hypotheses to ``<out>/<set>/text``; return the timings."""
    from datadir import write_table

    from espnet_shared_conformer.audio_io import load_audio

    start = time.perf_counter()
    if job["runtime"] == "pocketsphinx":
        recognizer: Any = _pocketsphinx_live()
    else:
        recognizer = _recognizer(job)
    load_seconds = time.perf_counter() - start
    block = job["block_samples"]
    sets = {name: _read_set(path) for name, path in job["sets"].items()}
    first = next(iter(next(iter(sets.values())).values()))
    _stream(recognizer, load_audio(first, RATE), block)  # warm-up, not counted
    chunk_times: List[float] = []
    final_latencies: List[float] = []
    audio_seconds = compute_seconds = 0.0
    for name, wav_scp in sets.items():
        texts = {}
        for i, (utt, entry) in enumerate(wav_scp.items(), 1):
            samples = load_audio(entry, RATE)
            texts[utt], times, final = _stream(recognizer, samples, block)
            chunk_times += times
            final_latencies.append(final)
            audio_seconds += len(samples) / RATE
            compute_seconds += sum(times) + final
            if i % 50 == 0 or i == len(wav_scp):
                print(f"{job['tag']}: {name} {i}/{len(wav_scp)}", file=sys.stderr)
        out = Path(job["out"]) / name
        out.mkdir(parents=True, exist_ok=True)
        write_table(out / "text", texts.items())
    return dict(
        load_seconds=load_seconds,
        chunk_times=chunk_times,
        final_latencies=final_latencies,
        audio_seconds=audio_seconds,
        compute_seconds=compute_seconds,
        peak_rss_mib=peak_rss_kib() / 1024,
        torch_imported="torch" in sys.modules,
    )


# ------------------------------------------------------------------- parent


def front_end_lookahead(model: str) -> Dict[str, float]:
    """Seconds the front end reads past a chunk's audio, and per output frame."""
    import yaml

    from espnet_shared_conformer.subsampling import time_window

    with open(Path(model) / "config.yaml", encoding="utf-8") as f:
        config = yaml.safe_load(f)
    frontend = {"n_fft": 512, "hop_length": 128, **(config.get("frontend_conf") or {})}
    window, stride = time_window(config["encoder_conf"].get("input_layer", "conv2d"))
    hop = frontend["hop_length"] / RATE
    return dict(
        lookahead=(window - stride) * hop + frontend["n_fft"] // 2 / RATE,
        frame=stride * hop,
        stride=stride,
        hop_samples=frontend["hop_length"],
    )


def export_graph(args: argparse.Namespace, chunk: int, path: Path) -> None:
    """The chunk step of ``args.model`` at ``chunk`` frames, for ONNX Runtime."""
    if path.exists():
        return
    from espnet_shared_conformer.inference import resolve_model

    files = resolve_model(args.model, args.decoding)
    command = [
        sys.executable,
        "-m",
        "espnet_shared_conformer.onnx_export",
        "--config",
        str(files.asr_train_config),
        "--model",
        str(files.asr_model_file),
        "--out",
        str(path),
        "--streaming",
        "--chunk_size",
        str(chunk),
        "--num_left_chunks",
        str(args.num_left_chunks),
    ]
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)


def run_child(job: Dict[str, Any]) -> Dict[str, Any]:
    """``job`` in a fresh process (its peak memory its own), which writes its
    timings to ``<out>/timings.json`` (not to stdout: libraries print there)."""
    result = Path(job["out"]) / "timings.json"
    result.unlink(missing_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": str(job["threads"])}
    proc = subprocess.run(
        [sys.executable, __file__, "--child", json.dumps(job)], env=env, check=False
    )
    if proc.returncode != 0 or not result.is_file():
        raise RuntimeError(f"{job['tag']} failed (exit {proc.returncode})")
    return json.loads(result.read_text())


def score_job(job: Dict[str, Any]) -> Dict[str, Dict[str, float]]:
    """sclite's WER and CER of each set of ``job``."""
    from score_sclite import score

    scores = {}
    for name, data in job["sets"].items():
        out = Path(job["out"]) / name
        summary = score(
            Path(data) / "text",
            out / "text",
            out,
            utt2spk_path=Path(data) / "utt2spk",
        )
        scores[name] = {metric: summary[metric]["Err"] for metric in ("wer", "cer")}
    return scores


def make_jobs(args: argparse.Namespace, geometry: Dict[str, float]) -> List[Dict]:
    """One job per runtime, search and chunk (0: full context)."""
    sets = {name: str(Path(args.data) / name) for name in args.test_sets.split()}
    chunks = [int(c) for c in args.chunks.split()]
    jobs = []
    for runtime in args.runtimes.split():
        if runtime not in RUNTIMES:
            raise SystemExit(f"--runtimes: {runtime!r} is not one of {RUNTIMES}")
        searches: List[Optional[str]] = list(args.searches.split())
        options: List[Optional[int]]
        if runtime == "torch":
            options = [0, *chunks]
        elif runtime == "onnx":
            options = chunks  # a bounded cache: no full context
            searches = [s for s in searches if s in ONNX_SEARCHES]
        else:
            options, searches = [None], [None]
        for search in searches:
            for chunk in options:
                block_frames = chunk or args.block_chunk
                label = "live" if chunk is None else ("full" if chunk == 0 else chunk)
                tag = "_".join(str(x) for x in (runtime, search, label) if x)
                job = dict(
                    tag=tag,
                    out=str(Path(args.out_dir) / tag),
                    runtime=runtime,
                    search=search,
                    beam_size=args.beam_size,
                    chunk=chunk,
                    num_left_chunks=args.num_left_chunks,
                    model=args.model,
                    decoding=args.decoding,
                    threads=args.threads,
                    sets=sets,
                    block_samples=int(block_frames * geometry["stride"])
                    * int(geometry["hop_samples"]),
                )
                if runtime == "onnx":
                    job["graph"] = str(
                        Path(args.out_dir) / "onnx" / f"chunk{chunk}.onnx"
                    )
                jobs.append(job)
    return jobs


def summarize(
    job: Dict[str, Any],
    timings: Dict[str, Any],
    scores: Dict[str, Dict[str, float]],
    geometry: Dict[str, float],
) -> Dict[str, Any]:
    """One row of the table."""
    chunk = job["chunk"]
    block_seconds = job["block_samples"] / RATE
    row = dict(
        runtime=job["runtime"],
        search=job["search"],
        chunk=chunk,
        chunk_ms=None if not chunk else round(1000 * chunk * geometry["frame"]),
        algorithmic_latency_ms=(
            None
            if not chunk
            else round(1000 * (chunk * geometry["frame"] + geometry["lookahead"]))
        ),
        scores=scores,
        peak_rss_mib=round(timings["peak_rss_mib"], 1),
        rtf=timings["compute_seconds"] / timings["audio_seconds"],
        torch_imported=timings["torch_imported"],
        load_seconds=round(timings["load_seconds"], 2),
    )
    times = timings["chunk_times"]
    if chunk != 0:  # full context computes nothing until the end
        row.update(
            chunk_median_ms=1000 * statistics.median(times),
            chunk_p95_ms=1000 * percentile(times, 95),
            chunk_p95_ratio=percentile(times, 95) / block_seconds,
        )
    finals = timings["final_latencies"]
    row.update(
        final_median_ms=1000 * statistics.median(finals),
        final_p95_ms=1000 * percentile(finals, 95),
    )
    return row


def markdown(report: Dict[str, Any]) -> str:
    """The report as the table of docs/streaming.md."""
    sets = report["test_sets"]
    full = {
        (row["search"], name): row["scores"][name]["wer"]
        for row in report["rows"]
        if row["runtime"] == "torch" and row["chunk"] == 0
        for name in sets
    }
    lines = [
        f"Measured by `benchmarks/bench_streaming.py` at commit {report['commit']} "
        f"on {report['machine']}; model `{report['model']}`, "
        f"{report['num_left_chunks']} left chunks, beam {report['beam_size']}, "
        f"{report['threads']} thread(s), blocks of one chunk's audio "
        f"({report['block_chunk']} frames at full context and for PocketSphinx). "
        "WER in % (its ratio to the same search at full context); per chunk: "
        "the compute per block of one chunk's audio (p95 as a share of the "
        "chunk's duration).",
        "",
        "| runtime | search | chunk | algorithmic latency | "
        + " | ".join(f"WER {s}" for s in sets)
        + " | per chunk median / p95 | end of audio to final, median / p95 "
        "| peak RSS | RTF |",
        "|---" * (8 + len(sets)) + "|",
    ]
    for row in report["rows"]:
        chunk = {None: "live", 0: "full"}.get(row["chunk"], f"{row['chunk_ms']} ms")
        wers = []
        for s in sets:
            wer = row["scores"][s]["wer"]
            base = full.get((row["search"], s))
            ratio = f" ({wer / base:.2f}x)" if base and row["chunk"] != 0 else ""
            wers.append(f"{wer:.1f}{ratio}")
        per_chunk = (
            f"{row['chunk_median_ms']:.1f} / {row['chunk_p95_ms']:.1f} ms "
            f"({100 * row['chunk_p95_ratio']:.1f}%)"
            if "chunk_median_ms" in row
            else "-"
        )
        latency = row["algorithmic_latency_ms"]
        lines.append(
            f"| {row['runtime']} | {row['search'] or '-'} | {chunk} | "
            + (f"{latency} ms" if latency else "-")
            + " | "
            + " | ".join(wers)
            + f" | {per_chunk} | {row['final_median_ms']:.0f} / "
            f"{row['final_p95_ms']:.0f} ms | {row['peak_rss_mib']:.0f} MiB | "
            f"{row['rtf']:.3f} |"
        )
    return "\n".join(lines) + "\n"


def plot(report: Dict[str, Any], path: Path) -> None:
    """WER against chunk duration: a panel per search, a line per test set
    and runtime, PocketSphinx live as a dotted level."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in report["rows"] if r["runtime"] in ("torch", "onnx")]
    searches = list(dict.fromkeys(r["search"] for r in rows))
    fig, axes = plt.subplots(
        1, len(searches), figsize=(5.2 * len(searches), 4.0), squeeze=False
    )
    longest = max(r["chunk_ms"] or 0 for r in rows)
    full_x = 2 * longest  # full context drawn right of the longest chunk
    ticks = sorted({r["chunk_ms"] for r in rows if r["chunk_ms"]}) + [full_x]
    live = [r for r in report["rows"] if r["runtime"] == "pocketsphinx"]
    colors = ("C0", "C1", "C2", "C3")
    for ax, search in zip(axes[0], searches, strict=True):
        for s, color in zip(report["test_sets"], colors, strict=False):
            for runtime, style in (("torch", "-o"), ("onnx", "--x")):
                points = sorted(
                    (r["chunk_ms"] or full_x, r["scores"][s]["wer"])
                    for r in rows
                    if r["runtime"] == runtime and r["search"] == search
                )
                if points:
                    xs, ys = zip(*points, strict=True)
                    ax.plot(xs, ys, style, color=color, label=f"{s} ({runtime})")
            for r in live:
                ax.axhline(r["scores"][s]["wer"], color=color, linestyle=":")
        ax.set_xscale("log", base=2)
        ax.set_xticks(ticks, [str(t) for t in ticks[:-1]] + ["full"])
        ax.set_xlabel("chunk (ms)")
        ax.set_ylabel("WER (%)")
        title = f"{search} search"
        ax.set_title(title + (" (dotted: PocketSphinx live)" if live else ""))
        ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        allow_abbrev=False,
    )
    parser.add_argument("--model", help="experiment directory of a streaming model")
    parser.add_argument("--decoding", help="its decoding directory or YAML")
    parser.add_argument("--data", help="the recipe's data directory (sets below it)")
    parser.add_argument(
        "--test_sets", default="test_sentences test_voices test_librivox"
    )
    parser.add_argument("--chunks", default="32 16 8 4", help="output frames")
    parser.add_argument("--num_left_chunks", type=int, default=4)
    parser.add_argument(
        "--block_chunk",
        type=int,
        default=16,
        help="frames of audio per block where no chunk sets it (full, live)",
    )
    parser.add_argument(
        "--searches",
        default="lexicon prefix_beam",
        help="the recognizer's searches (greedy, prefix_beam, lexicon); ONNX "
        "Runtime runs greedy and prefix_beam",
    )
    parser.add_argument("--beam_size", type=int, default=10, help="prefix beam")
    parser.add_argument("--runtimes", default="torch onnx pocketsphinx")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--jobs", type=int, default=1, help="decoding processes")
    parser.add_argument("--out_dir", default="exp/bench_streaming")
    parser.add_argument("--json", help="write the report here")
    parser.add_argument("--markdown", help="write the table here")
    parser.add_argument("--plot", help="write the WER plot here (PNG)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    args = get_parser().parse_args(argv)
    if args.child:
        job = json.loads(args.child)
        timings = child(job)
        result = Path(job["out"]) / "timings.json"
        result.parent.mkdir(parents=True, exist_ok=True)
        result.with_suffix(".tmp").write_text(json.dumps(timings))
        result.with_suffix(".tmp").replace(result)
        return 0
    for name in ("model", "decoding", "data"):
        if not getattr(args, name):
            get_parser().error(f"--{name} is required")
    for name in args.test_sets.split():
        if not (Path(args.data) / name / "wav.scp").is_file():
            get_parser().error(f"--data: no {Path(args.data) / name / 'wav.scp'}")
    geometry = front_end_lookahead(args.model)
    jobs = make_jobs(args, geometry)
    for job in jobs:
        if job["runtime"] == "onnx":
            Path(job["graph"]).parent.mkdir(parents=True, exist_ok=True)
            export_graph(args, job["chunk"], Path(job["graph"]))

    def one(job: Dict[str, Any]) -> Dict[str, Any]:
        timings = run_child(job)
        return summarize(job, timings, score_job(job), geometry)

    with ThreadPoolExecutor(args.jobs) as pool:
        rows = list(pool.map(one, jobs))
    report = dict(
        commit=checkout.commit(),
        machine=f"{os.cpu_count()} cores",
        model=args.model,
        beam_size=args.beam_size,
        num_left_chunks=args.num_left_chunks,
        threads=args.threads,
        block_chunk=args.block_chunk,
        test_sets=args.test_sets.split(),
        rows=rows,
    )
    table = markdown(report)
    print(table)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=1) + "\n")
    if args.markdown:
        Path(args.markdown).parent.mkdir(parents=True, exist_ok=True)
        Path(args.markdown).write_text(table)
    if args.plot:
        plot(report, Path(args.plot))
    return 0


if __name__ == "__main__":
    sys.exit(main())
