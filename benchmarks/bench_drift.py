"""Watch the full / low-rank blocks speedup drift with the machine's speed.

``bench_encoder.py`` gives one ratio per run. On a shared host that ratio
depends on when the run happens: for minutes at a time every call gets
slower by roughly the same number of milliseconds, full rank and low rank
alike, and a fixed addition lowers the ratio of the faster candidate more.
This script shows it: it times our full-rank and rank-``r`` blocks (the
layers ``lowrank_rank`` changes, fed the front end's output computed once)
in alternation, in a random order each pair, for ``--seconds``, and reports
per window of ``--window`` seconds the median of each and their ratio.

Usage::

    .venv/bin/python benchmarks/bench_drift.py [--seconds 240] \\
        [--csv drift.csv] [--plot drift.png]

Figures and how to read them: ``docs/benchmarks.md``.
"""

import argparse
import csv
import random
import statistics
import sys
import time
from dataclasses import dataclass
from typing import List, Optional, Sequence

import torch
from bench_encoder import OURS, Setting, blocks_step, build_encoder, make_input

# A window counts as "at full speed" when full rank ran within this factor of
# its fastest window.
FULL_SPEED_SLACK = 1.10


@dataclass(frozen=True)
class Window:
    """Medians over one window of alternating calls."""

    start_s: float
    full_ms: float
    lowrank_ms: float
    pairs: int

    @property
    def ratio(self) -> float:
        return self.full_ms / self.lowrank_ms


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--seconds", type=float, default=240.0, help="how long")
    parser.add_argument("--window", type=float, default=6.0, help="seconds a row")
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument("--lowrank_rank", type=int, default=64, help="rank r")
    parser.add_argument("--output_size", type=int, default=256, help="d")
    parser.add_argument("--attention_heads", type=int, default=4, help="heads")
    parser.add_argument("--linear_units", type=int, default=1024, help="FFN f")
    parser.add_argument("--num_blocks", type=int, default=12, help="V")
    parser.add_argument("--cnn_module_kernel", type=int, default=31)
    parser.add_argument("--input_size", type=int, default=80, help="feature dim")
    parser.add_argument("--frames", type=int, default=1000, help="10 ms frames")
    parser.add_argument("--seed", type=int, default=0, help="weights, input, order")
    parser.add_argument("--csv", metavar="PATH", help="write the windows here")
    parser.add_argument("--plot", metavar="PATH", help="draw the windows here")
    args = parser.parse_args(argv)
    if not 0 < args.window <= args.seconds:
        parser.error(
            f"--window ({args.window}) must be > 0 and <= --seconds ({args.seconds})"
        )
    for name in ("threads", "lowrank_rank", "num_blocks", "frames"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} ({getattr(args, name)}) must be >= 1")
    return args


def watch(args: argparse.Namespace) -> List[Window]:
    """Alternate the two blocks candidates for ``args.seconds``, by window."""
    setting = Setting.from_args(
        args, macaron_style=True, rel_pos_type="latest", batch=1
    )
    xs, ilens = make_input(setting)
    steps = {}
    for name, rank in (("full", None), ("lowrank", args.lowrank_rank)):
        model = build_encoder(
            OURS, setting.encoder_options(lowrank_rank=rank), setting.seed
        ).eval()
        steps[name] = blocks_step(model, xs, ilens)
        steps[name]()  # warm-up
    rng = random.Random(args.seed)
    windows: List[Window] = []
    started = time.perf_counter()
    print(f"{'t (s)':>6}  {'full ms':>8}  {'rank ' + str(args.lowrank_rank):>8}  ratio")
    while time.perf_counter() - started < args.seconds:
        window_start = time.perf_counter()
        samples = {name: [] for name in steps}
        while time.perf_counter() - window_start < args.window:
            order = list(steps)
            rng.shuffle(order)
            for name in order:
                tick = time.perf_counter()
                steps[name]()
                samples[name].append(time.perf_counter() - tick)
        window = Window(
            start_s=window_start - started,
            full_ms=statistics.median(samples["full"]) * 1e3,
            lowrank_ms=statistics.median(samples["lowrank"]) * 1e3,
            pairs=len(samples["full"]),
        )
        windows.append(window)
        print(
            f"{window.start_s:6.0f}  {window.full_ms:8.1f}  "
            f"{window.lowrank_ms:8.1f}  {window.ratio:.3f}",
            flush=True,
        )
    return windows


def summarize(windows: Sequence[Window]) -> List[str]:
    """Lines comparing the windows at full speed with the others."""
    fastest = min(w.full_ms for w in windows)
    fast = [w for w in windows if w.full_ms <= FULL_SPEED_SLACK * fastest]
    slow = [w for w in windows if w.full_ms > FULL_SPEED_SLACK * fastest]
    lines = [
        f"all {len(windows)} windows: median ratio "
        f"{statistics.median(w.ratio for w in windows):.3f}"
    ]
    groups = (
        (f"at full speed (full rank within {FULL_SPEED_SLACK:.2f}x its fastest)", fast),
        (f"slower (full rank beyond {FULL_SPEED_SLACK:.2f}x its fastest)", slow),
    )
    for label, group in groups:
        if not group:
            lines.append(f"{label}: no window")
            continue
        lines.append(
            f"{label}, {len(group)} windows: full "
            f"{statistics.median(w.full_ms for w in group):.1f} ms, low rank "
            f"{statistics.median(w.lowrank_ms for w in group):.1f} ms, median ratio "
            f"{statistics.median(w.ratio for w in group):.3f}"
        )
    return lines


def write_csv(windows: Sequence[Window], path: str) -> None:
    with open(path, "w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["start_s", "full_ms", "lowrank_ms", "ratio", "pairs"])
        for w in windows:
            writer.writerow(
                [f"{w.start_s:.1f}", f"{w.full_ms:.2f}", f"{w.lowrank_ms:.2f}",
                 f"{w.ratio:.4f}", w.pairs]
            )  # fmt: skip


def plot(windows: Sequence[Window], path: str, rank: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = [w.start_s for w in windows]
    fig, (times, ratios) = plt.subplots(2, 1, sharex=True, figsize=(7, 5))
    times.plot(t, [w.full_ms for w in windows], "o-", label="full rank")
    times.plot(t, [w.lowrank_ms for w in windows], "s-", label=f"rank {rank}")
    times.set_ylabel("blocks, median ms")
    times.legend()
    ratios.plot(t, [w.ratio for w in windows], "o-", color="black")
    ratios.axhline(1.6, linestyle="--", color="grey", label="target 1.6")
    ratios.set_ylabel("full / low rank")
    ratios.set_xlabel("seconds since start")
    ratios.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    windows = watch(args)
    for line in summarize(windows):
        print(line)
    if args.csv:
        write_csv(windows, args.csv)
    if args.plot:
        plot(windows, args.plot, args.lowrank_rank)
    return 0


if __name__ == "__main__":
    sys.exit(main())
