#!/usr/bin/env python3
"""Keep what one ablation run measured: a small JSON record for the repository.

    ablation_record.py --exp exp/asr_ablation_conformer_6x96_seed1 \\
        --config conf/ablation/conformer_6x96.yaml --row conformer_6x96 --seed 1 \\
        --test_sets "dev test_sentences" --decodes "decode_acoustic decode_lexicon" \\
        --out ../../../docs/ablation/runs/conformer_6x96_seed1.json

The experiment directory is large and stays on the machine that trained it;
the record is what ``local/ablation_report.py`` reads, so a study can span
machines and sessions: runs whose records are committed are not run again
(``local/ablation.sh`` asks ``ablation_record.py --is_current RECORD
--config CONFIG``, which compares ``config_sha256``: the SHA-256 of the
config's content, parsed and dumped as sorted JSON, so that a comment or a
layout change of the config does not void its runs).

A record holds the row and seed; the config's path, SHA-256 and encoder
options; unique and virtual parameters (``espnet_shared_conformer.params``);
the encoder's forward FLOPs per second of audio (torch's FlopCounterMode on
10 s of features: matrix products and convolutions, no elementwise work);
per epoch the training wall time, the [train] means of loss, gradient norm,
clipping and learning rate and the [valid] loss and CTC CER, from ESPnet's
``train.log``; per decoding and test set sclite's word and character
summaries (percentages and counts) and stage 12's real-time factor; and where
it ran (commit, versions, threads, concurrent runs, CPU).

With ``--peer exp/peer_<system>`` instead, the record is a peer
recognizer's (``local/peers.py``): its ``system.json`` and the same per-set
summaries, from ``<peer>/decode/<set>``.

Fails, naming what is missing, unless training finished every epoch of the
config and every decoding scored every test set: a record means a finished run.
The record is written atomically (temporary file, then rename).
"""

import argparse
import datetime
import hashlib
import json
import os
import platform
import re
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import yaml
from score_sclite import parse_result

#: The record's format; ablation_report.py refuses others.
FORMAT = 1

_RESULTS = re.compile(r"(\d+)epoch results: \[train\] (.*?), \[valid\] (.*)$")
_PAIR = re.compile(r"(\w+)=([-+0-9.eE]+|nan|inf)(?=,|$)")
_TIMESPAN = re.compile(
    r"time=(?:(?P<h>\d+) hours?(?:, | and )?)?(?:(?P<m>\d+) minutes?(?: and )?)?"
    r"(?:(?P<s>[\d.]+) seconds)?, total_count"
)


class RecordError(Exception):
    """The experiment is not a finished, scored run."""


def config_sha256(config: Path) -> str:
    """SHA-256 of a config's content: its YAML parsed and dumped as sorted
    JSON (comments, order and layout do not count)."""
    content = yaml.safe_load(Path(config).read_text())
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()


def is_current(record: Path, config: Path) -> bool:
    """Whether ``record`` exists and was made from ``config`` as it is now."""
    if not record.is_file():
        return False
    return json.loads(record.read_text()).get("config_sha256") == config_sha256(config)


def training_logs(train_log: Path) -> List[Path]:
    """``train_log`` and the logs of the earlier attempts that the launcher
    moved aside when the training resumed (``train.1.log`` the last before
    it, ``train.2.log`` the one before that, ...), oldest first."""
    stem, suffix = train_log.stem, train_log.suffix
    older = []
    for path in train_log.parent.glob(f"{stem}.*{suffix}"):
        number = path.name[len(stem) + 1 : -len(suffix) or None]
        if number.isdigit():
            older.append((int(number), path))
    return [path for _, path in sorted(older, reverse=True)] + [train_log]


def parse_epochs(train_log: Path) -> List[Dict[str, float]]:
    """Per epoch, from ESPnet's "Nepoch results" lines in ``train_log`` and
    the logs of earlier attempts (:func:`training_logs`): an interrupted
    training resumed from its last checkpoint has its first epochs in those.
    The last line of an epoch wins (a resumed run repeats an epoch that was
    cut short)."""
    if not train_log.is_file():
        raise RecordError(f"{train_log}: no training log")
    epochs: Dict[int, Dict[str, float]] = {}
    lines = [
        line
        for log in training_logs(train_log)
        for line in log.read_text(errors="replace").splitlines()
    ]
    for line in lines:
        match = _RESULTS.search(line)
        if not match:
            continue
        train = dict(_PAIR.findall(match.group(2)))
        valid = dict(_PAIR.findall(match.group(3)))
        span = _TIMESPAN.search(match.group(2))
        h, m, s = (
            (float(span.group(k) or 0) for k in ("h", "m", "s")) if span else (0, 0, 0)
        )
        epochs[int(match.group(1))] = {
            "epoch": int(match.group(1)),
            "train_seconds": 3600 * h + 60 * m + s,
            "train_loss": float(train["loss"]),
            "grad_norm": float(train.get("grad_norm", "nan")),
            "clip_percent": float(train.get("clip", "nan")),
            "lr": float(train.get("optim0_lr0", "nan")),
            "valid_loss": float(valid["loss"]),
            "valid_cer_ctc": float(valid.get("cer_ctc", "nan")),
        }
    return [epochs[k] for k in sorted(epochs)]


def decode_record(decode_dir: Path, test_sets: Sequence[str]) -> Dict[str, Any]:
    """sclite's word and character summaries per set, and stage 12's speed."""
    sets = {}
    for dset in test_sets:
        scores = {}
        for unit in ("wer", "cer"):
            result = decode_dir / dset / f"score_{unit}" / "result.txt"
            if not result.is_file():
                raise RecordError(f"{result}: not scored")
            scores[unit] = parse_result(result)
        sets[dset] = scores
    timing = decode_dir / "decode_time"
    speed: Dict[str, Any] = {}
    if timing.is_file():
        values = dict(
            line.split(maxsplit=1) for line in timing.read_text().splitlines() if line
        )
        wall, jobs = float(values["wall_seconds"]), int(values["jobs"])
        audio = float(values["audio_seconds"])
        speed = {
            "wall_seconds": wall,
            "jobs": jobs,
            "audio_seconds": audio,
            "rtf_per_job": wall * jobs / audio,
        }
    return {"sets": sets, "speed": speed}


def forward_gflops_per_second(config: Dict[str, Any], input_size: int) -> float:
    """Encoder forward GFLOPs for one second of audio (on 10 s of features)."""
    import torch
    from espnet2.tasks.asr import encoder_choices
    from torch.utils.flop_counter import FlopCounterMode

    from espnet_shared_conformer import register

    register()
    encoder = encoder_choices.get_class(config["encoder"])(
        input_size, **config.get("encoder_conf", {})
    ).eval()
    hop = config.get("frontend_conf", {}).get("hop_length", 160)
    frames = 10 * 16000 // hop
    feats = torch.zeros(1, frames, input_size)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        encoder(feats, torch.tensor([frames]))
    return counter.get_total_flops() / 10 / 1e9


def _git(*args: str) -> Optional[str]:
    try:
        return subprocess.run(
            ["git", *args], check=True, capture_output=True, text=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def _cpu_model() -> str:
    try:
        names = re.findall(
            r"^model name\s*:\s*(.+)$", Path("/proc/cpuinfo").read_text(), re.M
        )
    except OSError:
        names = []
    return names[0] if names else platform.machine()


def environment(jobs: int, commit: Optional[str] = None) -> Dict[str, Any]:
    import espnet
    import torch

    status = _git("status", "--porcelain", "--untracked-files=no")
    return {
        "commit_at_start": commit,
        "commit": _git("rev-parse", "--short", "HEAD"),
        "dirty": bool(status) if status is not None else None,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "espnet": espnet.__version__,
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "threads": int(os.environ.get("OMP_NUM_THREADS", "0"))
        or torch.get_num_threads(),
        "concurrent_runs": jobs,
    }


def build_record(args: argparse.Namespace) -> Dict[str, Any]:
    from espnet_shared_conformer.params import ParameterReport

    config = yaml.safe_load(args.config.read_text())
    trained = yaml.safe_load((args.exp / "config.yaml").read_text())
    if trained.get("encoder_conf") != config.get("encoder_conf"):
        raise RecordError(f"{args.exp}/config.yaml: another encoder than {args.config}")
    epochs = parse_epochs(args.exp / "train.log")
    if len(epochs) < config["max_epoch"]:
        raise RecordError(
            f"{args.exp}: {len(epochs)} of {config['max_epoch']} epochs trained"
        )
    report = ParameterReport.from_config(str(args.exp / "config.yaml"))
    decodes = {
        tag: decode_record(args.exp / tag, args.test_sets) for tag in args.decodes
    }
    input_size = trained.get("frontend_conf", {}).get("n_mels", 80)
    return {
        "format": FORMAT,
        "row": args.row,
        "seed": args.seed,
        "config": str(args.config),
        "config_sha256": config_sha256(args.config),
        "encoder": config["encoder"],
        "encoder_conf": config.get("encoder_conf", {}),
        "scheduler_conf": config.get("scheduler_conf", {}),
        "max_epoch": config["max_epoch"],
        "unique_params": report.total,
        "virtual_params": report.total_virtual,
        "encoder_gflops_per_audio_second": round(
            forward_gflops_per_second(config, input_size), 4
        ),
        "epochs": epochs,
        "decodes": decodes,
        "environment": environment(args.jobs, args.commit),
        "finished": datetime.datetime.now(datetime.timezone.utc).isoformat(
            timespec="seconds"
        ),
    }


def build_peer_record(peer: Path, test_sets: Sequence[str]) -> Dict[str, Any]:
    system_file = peer / "system.json"
    if not system_file.is_file():
        raise RecordError(f"{system_file}: the peer was not decoded")
    system = json.loads(system_file.read_text())
    decode = decode_record(peer / "decode", test_sets)
    return {
        "format": FORMAT,
        "system": system,
        "decodes": {"decode": decode},
        "environment": environment(1),
        "finished": datetime.datetime.now(datetime.timezone.utc).isoformat(
            timespec="seconds"
        ),
    }


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--exp", type=Path, help="experiment directory")
    parser.add_argument("--config", type=Path, help="the row's config")
    parser.add_argument("--row", help="row name")
    parser.add_argument("--seed", type=int, help="training seed")
    parser.add_argument(
        "--decodes",
        type=str.split,
        help="inference tags (decoding directories) to keep",
    )
    parser.add_argument("--jobs", type=int, default=1, help="runs trained concurrently")
    parser.add_argument("--commit", help="the code's commit when the run started")
    parser.add_argument(
        "--peer", type=Path, help="a peer's output directory (local/peers.py) instead"
    )
    parser.add_argument(
        "--is_current",
        type=Path,
        metavar="RECORD",
        help="only say (exit 0 or 1) whether RECORD was made from --config as it is",
    )
    parser.add_argument("--test_sets", type=str.split, help="scored sets")
    parser.add_argument("--out", type=Path, help="record to write")
    args = parser.parse_args(argv)
    if args.is_current is not None:
        if args.config is None:
            parser.error("--is_current needs --config")
        return 0 if is_current(args.is_current, args.config) else 1
    if args.test_sets is None or args.out is None:
        parser.error("--test_sets and --out are required")
    if args.peer is None:
        missing = [
            f"--{k}"
            for k in ("exp", "config", "row", "seed", "decodes")
            if getattr(args, k) is None
        ]
        if missing:
            parser.error(f"{', '.join(missing)} required (or --peer)")
    try:
        if args.peer is not None:
            record = build_peer_record(args.peer, args.test_sets)
        else:
            record = build_record(args)
    except (RecordError, OSError, KeyError, ValueError) as e:
        print(f"ablation_record.py: ERROR: {e}", file=sys.stderr)
        return 1
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_name(args.out.name + ".tmp")
    tmp.write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, args.out)
    print(f"ablation_record.py: {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
