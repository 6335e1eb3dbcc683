#!/usr/bin/env python3
"""Report on a trained model: parameters, size, decoding speed: stage 15.

    report.py --asr_exp exp/asr_x --model_file valid.acc.ave.pth \\
        --packed exp/asr_x/packed.zip --decode_dir exp/asr_x/decode_... \\
        --rtf_data dump/raw/test_clean --rtf_utts 20 --out exp/asr_x/report.md

Parameters are counted on the model built from the experiment's config and
model file (unique tensors, per part). When the package has
``espnet_shared_conformer.params`` its report (virtual-equivalent encoder,
compression) is included. The real-time factor is given twice: from stage
12 (wall time of the parallel jobs, model loading included, over the seconds
of audio) and measured here: the packed model, loaded as a user would load
it, decodes ``--rtf_utts`` utterances on one CPU thread (after one untimed
warm-up), decode time over audio time. Writes Markdown to ``--out`` and the
same numbers as JSON next to it.
"""

import argparse
import contextlib
import io
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

from datadir import DataDirError, read_table
from score_sclite import parse_result


def count_parameters(config: Path, model_file: Path) -> Dict[str, int]:
    """Unique parameters per top-level part of the ESPnet model, and the total."""
    from espnet2.tasks.asr import ASRTask

    import espnet_shared_conformer
    from espnet_shared_conformer import params

    espnet_shared_conformer.register()
    model, _ = ASRTask.build_model_from_file(config, model_file, device="cpu")
    counts = {k: n for k, n in params.parameters_by_part(model).items() if n}
    counts["total"] = params.count_parameters(model)
    return counts


def package_parameter_report(config: Path, token_list: Path) -> Optional[str]:
    """The package's parameter report (virtual-equivalent encoder, compression)
    of the experiment's ``config`` when ``espnet_shared_conformer.params``
    exists (it reads ESPnet's config dump itself)."""
    try:
        from espnet_shared_conformer.params import ParameterReport
    except ImportError:
        return None
    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr):
            report = ParameterReport.from_config(
                str(config), token_list=str(token_list)
            )
        return report.format()
    except (SystemExit, ValueError, OSError) as e:
        message = stderr.getvalue().strip().splitlines()
        problem = message[-1] if message else e
        return f"(espnet_shared_conformer.params could not read {config}: {problem})"


def stage12_speed(decode_dir: Path) -> Optional[Dict[str, Any]]:
    """Wall time of the last stage-12 run over the seconds of audio it decoded."""
    timing = decode_dir / "decode_time"
    if not timing.exists():
        return None
    values = dict(
        line.split(maxsplit=1)
        for line in timing.read_text().splitlines()
        if line.strip()
    )
    wall, jobs = float(values["wall_seconds"]), int(values["jobs"])
    audio = float(values["audio_seconds"])
    sets = values.get("sets", "").split()
    return dict(
        test_sets=sets,
        utterances=sum(
            len((decode_dir / s / "text").read_text().splitlines()) for s in sets
        ),
        audio_seconds=round(audio, 1),
        jobs=jobs,
        wall_seconds=wall,
        rtf_wall=round(wall / audio, 4),
        rtf_per_job=round(wall * jobs / audio, 4),
    )


def measure_rtf(packed: Path, data: Path, num_utts: int) -> Dict[str, Any]:
    """Single-thread decoding speed of the packed model on ``data``'s first
    utterances."""
    import torch
    from packed_model import load_speech2text

    torch.set_num_threads(1)
    fs = int((data / "fs").read_text()) if (data / "fs").exists() else 16000
    num_samples = read_table(data / "utt2num_samples")
    utts = sorted(num_samples)[: max(1, num_utts)]
    with tempfile.TemporaryDirectory() as unpack_dir:
        load_start = time.monotonic()
        model = load_speech2text(packed, Path(unpack_dir))
        load_seconds = time.monotonic() - load_start
        if (data / "wav.scp").exists():
            from espnet_shared_conformer.audio_io import load_audio

            wav = read_table(data / "wav.scp")
            inputs = [load_audio(wav[u], model.fs) for u in utts]
        else:
            import kaldiio

            feats = read_table(data / "feats.scp")
            inputs = [kaldiio.load_mat(feats[u]) for u in utts]
        # Fbank inputs are features already; audio goes through the frontend.
        decode = model.decode if model.n_mels is not None else model.transcribe
        with torch.no_grad():
            decode(inputs[0])  # warm-up: first-call allocations are not decoding speed
            start = time.monotonic()
            for x in inputs:
                decode(x)
            seconds = time.monotonic() - start
    audio = sum(int(num_samples[u]) for u in utts) / fs
    return dict(
        data=str(data),
        utterances=len(utts),
        audio_seconds=round(audio, 2),
        decode_seconds=round(seconds, 2),
        rtf=round(seconds / audio, 4),
        load_seconds=round(load_seconds, 2),
        threads=1,
    )


def accuracy(decode_dir: Path) -> List[Dict[str, Any]]:
    rows = []
    for test_dir in sorted(p for p in decode_dir.iterdir() if p.is_dir()):
        row: Dict[str, Any] = {"test_set": test_dir.name}
        for metric in ("wer", "cer", "ter"):
            result = test_dir / f"score_{metric}" / "result.txt"
            if result.exists():
                row[metric] = parse_result(result)["Err"]
        if len(row) > 1:
            rows.append(row)
    return rows


def _mb(n_bytes: int) -> str:
    return f"{n_bytes / 1e6:.2f} MB"


def render(report: Dict[str, Any]) -> str:
    p = report["parameters"]
    out = [
        f"# Report: {report['asr_exp']}",
        "",
        "## Model",
        "",
        "|part|parameters|",
        "|---|---|",
    ]
    out += [f"|{k}|{v:,}|" for k, v in p.items()]
    s = report["sizes"]
    out += [
        "",
        f"- model file `{s['model_file']}`: {_mb(s['model_file_bytes'])}",
        f"- packed model `{s['packed']}`: {_mb(s['packed_bytes'])}",
        f"- weights at fp32: {_mb(4 * p['total'])}; at int8: {_mb(p['total'])}",
    ]
    if report.get("package_report"):
        out += [
            "",
            "## python -m espnet_shared_conformer.params",
            "",
            "```",
            report["package_report"],
            "```",
        ]
    out += [
        "",
        "## Accuracy (sclite, %)",
        "",
        "|test set|WER|CER|TER|",
        "|---|---|---|---|",
    ]
    for row in report["accuracy"]:
        cells = [f"{row[m]:.1f}" if m in row else "-" for m in ("wer", "cer", "ter")]
        out.append(f"|{row['test_set']}|" + "|".join(cells) + "|")
    out += [
        "",
        "## Decoding speed",
        "",
    ]
    r = report["stage12"]
    if r:
        out += [
            f"Stage 12 decoded {r['utterances']} utterances ({r['audio_seconds']} s "
            f"of {', '.join(r['test_sets'])}) with {r['jobs']} parallel jobs in "
            f"{r['wall_seconds']:.0f} s wall time, loading ESPnet and the model "
            f"included: real-time factor {r['rtf_wall']:.3f} (wall), "
            f"{r['rtf_per_job']:.3f} per job.",
        ]
    m = report["measured"]
    out += [
        "",
        f"Measured on one CPU thread, packed model, {m['utterances']} utterances of "
        f"`{m['data']}` ({m['audio_seconds']} s of audio): decoding took "
        f"{m['decode_seconds']} s, **real-time factor {m['rtf']:.3f}** "
        f"(loading the zip: {m['load_seconds']} s).",
    ]
    return "\n".join(out) + "\n"


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--asr_exp", type=Path, required=True)
    parser.add_argument("--model_file", default="valid.acc.ave.pth")
    # Unused since the package reads the experiment's config.yaml itself;
    # accepted while asr.sh's stage 15 still passes it.
    parser.add_argument("--asr_config", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--token_list", type=Path, required=True)
    parser.add_argument("--packed", type=Path, required=True)
    parser.add_argument("--decode_dir", type=Path, required=True)
    parser.add_argument(
        "--rtf_data", type=Path, required=True, help="dump dir to time decoding on"
    )
    parser.add_argument("--rtf_utts", type=int, default=20)
    parser.add_argument(
        "--out", type=Path, required=True, help="Markdown report to write"
    )
    args = parser.parse_args(argv)

    model_file = args.asr_exp / args.model_file
    for path in (
        args.asr_exp / "config.yaml",
        model_file,
        args.packed,
        args.decode_dir,
    ):
        if not path.exists():
            print(f"report: ERROR: {path} does not exist", file=sys.stderr)
            return 1
    try:
        report = dict(
            asr_exp=str(args.asr_exp),
            parameters=count_parameters(args.asr_exp / "config.yaml", model_file),
            package_report=package_parameter_report(
                args.asr_exp / "config.yaml", args.token_list
            ),
            sizes=dict(
                model_file=str(model_file),
                model_file_bytes=model_file.resolve().stat().st_size,
                packed=str(args.packed),
                packed_bytes=args.packed.stat().st_size,
            ),
            accuracy=accuracy(args.decode_dir),
            stage12=stage12_speed(args.decode_dir),
            measured=measure_rtf(args.packed, args.rtf_data, args.rtf_utts),
        )
    except (DataDirError, OSError, ValueError) as e:
        print(f"report: ERROR: {e}", file=sys.stderr)
        return 1
    tmp = args.out.with_name(args.out.name + ".tmp")
    tmp.write_text(render(report), encoding="utf-8")
    tmp.replace(args.out)
    json_path = args.out.with_suffix(".json")
    json_path.with_name(json_path.name + ".tmp").write_text(
        json.dumps(report, indent=2) + "\n"
    )
    json_path.with_name(json_path.name + ".tmp").replace(json_path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
