"""Time to first output of the transcription command, for a packed model.

Runs ``python -m espnet_shared_conformer.bin.transcribe --model ZIP AUDIO``
in a fresh process ``--runs`` times and reports the median seconds from the
start of the process to its first line on stdout (the first transcript: what
a user waits for), to its exit, and how many lines it wrote on stderr (what
it prints besides the transcript). One run per command comes first and is
not counted: it unpacks the zip into a temporary ``--unpack_dir`` and fills
the file cache, as any earlier call would have.

``--baseline`` names another command line that takes the same arguments (an
older checkout's, say ``"/old/.venv/bin/python /old/pyscripts/utils/transcribe.py"``);
the two then run in alternation, so that a machine whose speed drifts (a
shared host) slows both alike, and the ratio of the medians is printed.

Usage::

    .venv/bin/python benchmarks/bench_startup.py --model exp/asr_x/packed.zip \\
        [--audio speech.flac] [--runs 5] [--baseline "COMMAND"] [--json out.json]

Figures: ``docs/benchmarks.md``.
"""

import argparse
import json
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np
import soundfile

#: The command measured by default: the package's, with this interpreter.
COMMAND = [sys.executable, "-m", "espnet_shared_conformer.bin.transcribe"]


@dataclass(frozen=True)
class Run:
    """One process: seconds to its first stdout line and to its exit."""

    first_output_s: float
    exit_s: float
    stderr_lines: int


def time_one(command: Sequence[str], args: Sequence[str]) -> Run:
    """Start ``command + args``; time its first stdout line and its exit.

    Raises ``RuntimeError`` when it exits with an error or prints nothing.
    """
    with tempfile.TemporaryFile() as stderr:
        start = time.perf_counter()
        process = subprocess.Popen(
            [*command, *args], stdout=subprocess.PIPE, stderr=stderr
        )
        first = process.stdout.readline()
        first_output = time.perf_counter() - start
        rest = process.stdout.read()
        code = process.wait()
        exit_s = time.perf_counter() - start
        stderr.seek(0)
        errors = stderr.read().decode(errors="replace")
    if code != 0 or not first:
        raise RuntimeError(
            f"{shlex.join(command)} exited with {code} "
            f"(stdout {first + rest!r}); stderr:\n{errors[-2000:]}"
        )
    return Run(first_output, exit_s, len(errors.splitlines()))


def _median(runs: List[Run], field: str) -> float:
    return statistics.median(getattr(run, field) for run in runs)


def _test_audio(directory: Path, seconds: float = 3.0, rate: int = 16000) -> Path:
    """A WAV of ``seconds`` of quiet noise (what it says does not matter here)."""
    rng = np.random.default_rng(0)
    path = directory / "noise.wav"
    soundfile.write(path, 0.01 * rng.standard_normal(int(seconds * rate)), rate)
    return path


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--model", type=Path, required=True, help="packed model zip (stage 14)"
    )
    parser.add_argument(
        "--audio", type=Path, help="audio file (default: 3 s of noise at 16 kHz)"
    )
    parser.add_argument("--runs", type=int, default=5, help="timed runs per command")
    parser.add_argument(
        "--command", default=shlex.join(COMMAND), help="the command line measured"
    )
    parser.add_argument(
        "--baseline", help="a command line to compare with, run in alternation"
    )
    parser.add_argument("--json", type=Path, help="write every run here")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error(f"--runs ({args.runs}) must be >= 1")
    if not args.model.is_file():
        parser.error(f"--model: no such file: {args.model}")
    return args


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    commands = {"command": shlex.split(args.command)}
    if args.baseline:
        commands = {"baseline": shlex.split(args.baseline), **commands}
    runs: Dict[str, List[Run]] = {name: [] for name in commands}
    with tempfile.TemporaryDirectory() as tmp:
        audio = str(args.audio or _test_audio(Path(tmp)))
        calls = {
            name: ["--model", str(args.model), "--unpack_dir", f"{tmp}/{name}", audio]
            for name in commands
        }
        for name, command in commands.items():
            time_one(command, calls[name])  # unpacks, fills the file cache
        for i in range(args.runs):
            for name, command in commands.items():
                runs[name].append(time_one(command, calls[name]))
                print(
                    f"run {i + 1}/{args.runs} {name}: first output "
                    f"{runs[name][-1].first_output_s:.2f} s",
                    file=sys.stderr,
                    flush=True,
                )

    print(f"time to first output, median of {args.runs} runs ({args.model.name})")
    print("| command | first output s (min-max) | exit s | stderr lines |")
    print("|---|---:|---:|---:|")
    for name, command in commands.items():
        first = [run.first_output_s for run in runs[name]]
        exit_s = _median(runs[name], "exit_s")
        print(
            f"| {name}: {shlex.join(command)} | {statistics.median(first):.2f} "
            f"({min(first):.2f}-{max(first):.2f}) | {exit_s:.2f} "
            f"| {_median(runs[name], 'stderr_lines'):g} |"
        )
    if args.baseline:
        ratio = _median(runs["baseline"], "first_output_s") / _median(
            runs["command"], "first_output_s"
        )
        print(f"baseline / command, time to first output: {ratio:.2f}x")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "model": str(args.model),
                    "commands": {k: shlex.join(v) for k, v in commands.items()},
                    "runs": {k: [asdict(r) for r in v] for k, v in runs.items()},
                },
                indent=2,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
