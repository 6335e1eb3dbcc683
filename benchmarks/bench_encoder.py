"""Benchmark ``SharedConformerEncoder`` against ESPnet's ``ConformerEncoder`` on CPU.

Three comparisons, each measured side by side in one run, with the candidates
interleaved in a random order every round so that noise from other processes
hits all of them alike:

1. No sharing: our encoder with every new option at its default, loaded with
   the ESPnet encoder's weights, against that encoder. Forward (eval,
   ``torch.inference_mode``) and forward + backward (train, dropout on).
   Target: ours / ESPnet <= 1.03 for each.
2. Low rank: ``lowrank_rank`` on every module kind against full rank, same
   depth. Target: forward speedup full / low-rank >= 1.6, for the whole
   encoder and for the blocks alone (the layers low rank changes, fed the
   front end's output computed once). Prints the FLOP ratios
   (``FlopCounterMode`` and an analytic count of the blocks' matmuls).
3. ``num_blocks 16, num_unique_blocks 4, lowrank_rank 64,
   lowrank_shared_factor in`` against ESPnet's unshared 16-block Conformer:
   peak inference RSS (a fresh subprocess per measurement), parameter bytes,
   checkpoint bytes, unique parameters and forward time.

Times are reported as median and interquartile range over the rounds, with
the ratio of medians (which the verdicts use) and the median of per-round
ratios. Beside wall time the tables give this process's CPU time and how many
cores other processes kept busy meanwhile; ratios are also given over the
"quiet" rounds alone, if any. The script exits 0 whatever the figures, unless
``--check`` is given and a target fails. Figures and how to read them:
``docs/benchmarks.md``.

Usage::

    .venv/bin/python benchmarks/bench_encoder.py [--quick] [--json out.json]
"""

import argparse
import ctypes
import gc
import io
import json
import math
import os
import platform
import random
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, fields
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import checkout  # benchmarks/, beside this script
import espnet
import torch
from espnet2.asr.encoder.conformer_encoder import ConformerEncoder
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from espnet_shared_conformer.encoder import SharedConformerEncoder

# Targets (see the module docstring).
NO_SHARING_MAX_RATIO = 1.03
LOWRANK_MIN_SPEEDUP = 1.6
# Ours and ESPnet's outputs with the same weights must agree this closely.
OUTPUT_ATOL = 1e-4
# --quick: few rounds, one memory subprocess per candidate.
QUICK = {"warmup": 1, "repeats": 3, "memory_runs": 1}
ESPNET = "espnet"
OURS = "ours"


@dataclass(frozen=True)
class Setting:
    """The Conformer being measured and its input."""

    input_size: int
    output_size: int
    attention_heads: int
    linear_units: int
    num_blocks: int
    macaron_style: bool
    rel_pos_type: str
    cnn_module_kernel: int
    frames: int
    batch: int
    threads: int
    seed: int

    @classmethod
    def from_args(cls, args: argparse.Namespace, **fixed: Any) -> "Setting":
        """The setting named by command-line ``args``; ``fixed`` fields win."""
        named = (f.name for f in fields(cls) if f.name not in fixed)
        return cls(**{name: getattr(args, name) for name in named}, **fixed)

    def encoder_options(self, **overrides: Any) -> Dict[str, Any]:
        """Constructor arguments shared by both encoders, with ``overrides``."""
        options: Dict[str, Any] = dict(
            input_size=self.input_size,
            output_size=self.output_size,
            attention_heads=self.attention_heads,
            linear_units=self.linear_units,
            num_blocks=self.num_blocks,
            macaron_style=self.macaron_style,
            rel_pos_type=self.rel_pos_type,
            cnn_module_kernel=self.cnn_module_kernel,
        )
        options.update(overrides)
        return options


@dataclass(frozen=True)
class Summary:
    """Median and quartiles of a sample (seconds, bytes, or a ratio)."""

    median: float
    q1: float
    q3: float
    n: int

    @property
    def iqr(self) -> float:
        return self.q3 - self.q1


@dataclass(frozen=True)
class Timings:
    """Per call of each candidate: seconds, and how busy the machine was.

    Index ``i`` of every list comes from round ``i``. ``wall``: elapsed
    seconds. ``cpu``: CPU seconds of this process (all its threads).
    ``others``: cores that other processes kept busy during the call, on
    average (from ``/proc/stat``; NaN where unreadable). With 2 threads on 2
    cores, every parallel op waits for both threads, so a busy neighbour
    slows a call far more than its share of the machine.
    """

    wall: Dict[str, List[float]]
    cpu: Dict[str, List[float]]
    others: Dict[str, List[float]]


@dataclass(frozen=True)
class Ratio:
    """``numerator`` / ``denominator`` from paired per-round wall times."""

    numerator: str
    denominator: str
    of_medians: float
    per_round: Summary
    cpu_of_medians: float
    rounds: int


@dataclass(frozen=True)
class Comparison:
    """A ratio over all rounds, and over the quiet rounds alone."""

    all_rounds: Ratio
    quiet_rounds: Optional[Ratio]


@dataclass(frozen=True)
class Verdict:
    """A ratio of median wall times against its target.

    Judged over all rounds; the quiet rounds' ratio is shown beside it.
    """

    target: str
    bound: float
    higher_is_better: bool
    comparison: Comparison

    @property
    def value(self) -> float:
        return self.comparison.all_rounds.of_medians

    @property
    def passed(self) -> bool:
        if self.higher_is_better:
            return self.value >= self.bound
        return self.value <= self.bound

    def line(self) -> str:
        sign = ">=" if self.higher_is_better else "<="
        status = "PASS" if self.passed else "FAIL"
        quiet = self.comparison.quiet_rounds
        aside = f"{quiet.of_medians:.3f} over {quiet.rounds}" if quiet else "none"
        return (
            f"{self.target}: {self.value:.3f} (target {sign} {self.bound}) {status}"
            f"  [quiet rounds: {aside}]"
        )


def build_encoder(impl: str, options: Mapping[str, Any], seed: int) -> nn.Module:
    """ESPnet's (``impl="espnet"``) or our (``"ours"``) encoder, seeded."""
    torch.manual_seed(seed)
    if impl == ESPNET:
        return ConformerEncoder(**options)
    if impl == OURS:
        return SharedConformerEncoder(**options)
    raise ValueError(f"impl ({impl!r}) must be {ESPNET!r} or {OURS!r}")


def make_input(setting: Setting) -> Tuple[torch.Tensor, torch.Tensor]:
    """Random features (B, frames, input_size) and their lengths (B,)."""
    generator = torch.Generator().manual_seed(setting.seed)
    xs = torch.randn(
        setting.batch, setting.frames, setting.input_size, generator=generator
    )
    ilens = torch.full((setting.batch,), setting.frames, dtype=torch.long)
    return xs, ilens


def forward_step(
    model: nn.Module, xs: torch.Tensor, ilens: torch.Tensor
) -> Callable[[], None]:
    """One inference forward pass; the model must be in eval mode."""

    def step() -> None:
        with torch.inference_mode():
            model(xs, ilens)

    return step


def train_step(
    model: nn.Module, xs: torch.Tensor, ilens: torch.Tensor
) -> Callable[[], None]:
    """One forward + backward pass; the model must be in train mode (dropout on)."""

    def step() -> None:
        out, _, _ = model(xs, ilens)
        out.pow(2).mean().backward()
        model.zero_grad(set_to_none=True)

    return step


def embed_step(
    model: nn.Module, xs: torch.Tensor, ilens: torch.Tensor
) -> Callable[[], None]:
    """The subsampling front end alone, the part low rank leaves untouched."""
    masks = (torch.arange(xs.size(1))[None, :] < ilens[:, None])[:, None, :]

    def step() -> None:
        with torch.inference_mode():
            model.embed(xs, masks)

    return step


def blocks_step(
    model: SharedConformerEncoder, xs: torch.Tensor, ilens: torch.Tensor
) -> Callable[[], None]:
    """Our encoder's virtual layers and final norm alone, inference mode.

    The front end runs once, here; each call feeds its output to the layers,
    so the timing covers exactly what ``lowrank_rank`` changes.
    """
    masks = (torch.arange(xs.size(1))[None, :] < ilens[:, None])[:, None, :]
    with torch.inference_mode():
        x, pos_emb, sub_masks = model.subsample(xs, masks)

    def step() -> None:
        with torch.inference_mode():
            model.encode_subsampled(x, pos_emb, sub_masks)

    return step


def time_interleaved(
    steps: Mapping[str, Callable[[], None]],
    warmup: int,
    repeats: int,
    rng: random.Random,
) -> Timings:
    """Time each step ``repeats`` times, the steps in a random order each round.

    Per-round ratios thus compare calls made within seconds of each other.
    """
    names = list(steps)
    ticks = os.sysconf("SC_CLK_TCK")
    for _ in range(warmup):
        for name in names:
            steps[name]()
    wall: Dict[str, List[float]] = {name: [] for name in names}
    cpu: Dict[str, List[float]] = {name: [] for name in names}
    others: Dict[str, List[float]] = {name: [] for name in names}
    for _ in range(repeats):
        order = names[:]
        rng.shuffle(order)
        # Collect outside the timed calls, and keep the collector out of them.
        gc.collect()
        gc.disable()
        try:
            for name in order:
                busy = _busy_ticks()
                start, start_cpu = time.perf_counter(), time.process_time()
                steps[name]()
                wall[name].append(time.perf_counter() - start)
                cpu[name].append(time.process_time() - start_cpu)
                others_seconds = (_busy_ticks() - busy) / ticks - cpu[name][-1]
                others[name].append(max(others_seconds, 0.0) / wall[name][-1])
        finally:
            gc.enable()
    return Timings(wall, cpu, others)


def _busy_ticks() -> float:
    """Clock ticks all CPUs have spent busy since boot; NaN without /proc/stat."""
    try:
        with open("/proc/stat") as stat:
            fields = [int(v) for v in stat.readline().split()[1:9]]
    except (OSError, ValueError):
        return math.nan
    # user nice system idle iowait irq softirq steal: all but idle and iowait.
    return sum(fields) - fields[3] - fields[4]


def compare(
    times: Timings, numerator: str, denominator: str, max_others: float
) -> Comparison:
    """``numerator`` / ``denominator`` over all rounds and over quiet ones."""
    quiet = quiet_rounds(times, max_others)
    return Comparison(
        all_rounds=ratio(times, numerator, denominator),
        quiet_rounds=ratio(times, numerator, denominator, quiet) if quiet else None,
    )


def quiet_rounds(times: Timings, max_others: float) -> List[int]:
    """Rounds in which other processes used < ``max_others`` cores in every call."""
    repeats = len(next(iter(times.others.values())))
    return [
        i
        for i in range(repeats)
        if all(others[i] < max_others for others in times.others.values())
    ]


def summarize(samples: Sequence[float]) -> Summary:
    """Median and quartiles (inclusive method: quartiles of n=1 are the value)."""
    if len(samples) == 1:
        return Summary(samples[0], samples[0], samples[0], 1)
    q1, median, q3 = statistics.quantiles(samples, n=4, method="inclusive")
    return Summary(median, q1, q3, len(samples))


def ratio(
    times: Timings,
    numerator: str,
    denominator: str,
    rounds: Optional[Sequence[int]] = None,
) -> Ratio:
    """Ratio of median wall times, the per-round ratios, and the CPU-time ratio.

    Over ``rounds`` (all when None), which must not be empty.
    """
    if rounds is None:
        rounds = range(len(times.wall[numerator]))
    assert rounds, "a ratio needs at least one round"

    def pick(samples: Mapping[str, Sequence[float]], name: str) -> List[float]:
        return [samples[name][i] for i in rounds]

    num, den = pick(times.wall, numerator), pick(times.wall, denominator)
    cpu_num, cpu_den = pick(times.cpu, numerator), pick(times.cpu, denominator)
    return Ratio(
        numerator=numerator,
        denominator=denominator,
        of_medians=statistics.median(num) / statistics.median(den),
        per_round=summarize([a / b for a, b in zip(num, den, strict=True)]),
        cpu_of_medians=statistics.median(cpu_num) / statistics.median(cpu_den),
        rounds=len(rounds),
    )


def count_flops(model: nn.Module, xs: torch.Tensor, ilens: torch.Tensor) -> Dict:
    """FLOPs of one forward pass, in total and in the subsampling front end."""
    model.eval()
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        model(xs, ilens)
    counts = counter.get_flop_counts()
    embed = sum(
        sum(ops.values())
        for name, ops in counts.items()
        if name.endswith(".embed") and name.count(".") == 1
    )
    total = counter.get_total_flops()
    return {"total": total, "embed": embed, "blocks": total - embed}


def analytic_block_flops(setting: Setting, time_out: int, rank: Optional[int]) -> int:
    """FLOPs of the Conformer blocks' matmuls and convolutions (2 per MAC).

    Macaron and second FFN (``d -> f -> d``), q/k/v/out projections, the
    positional projection (applied once to the (1, 2T-1, d) embedding), the
    attention products q k^T, q p^T (2T-1 relative positions) and a v, the
    pointwise convolutions (``d -> 2d``, ``d -> d``) and the depthwise one.
    A rank-``r`` projection costs ``r (in + out)`` MACs instead of
    ``in * out``. Assumes relative-position attention ("latest").
    """
    d, f, k = setting.output_size, setting.linear_units, setting.cnn_module_kernel
    b, t = setting.batch, time_out
    positions = 2 * t - 1

    def projection(n_in: int, n_out: int, rows: int) -> int:
        macs = n_in * n_out if rank is None else rank * (n_in + n_out)
        return 2 * rows * macs

    ffn_count = 2 if setting.macaron_style else 1
    per_layer = ffn_count * (projection(d, f, b * t) + projection(f, d, b * t))
    per_layer += 4 * projection(d, d, b * t) + projection(d, d, positions)
    per_layer += 2 * b * t * d * (t + positions + t)  # q k^T, q p^T, a v
    per_layer += projection(d, 2 * d, b * t) + projection(d, d, b * t)
    per_layer += 2 * b * t * d * k  # depthwise convolution
    return setting.num_blocks * per_layer


def checkpoint_bytes(model: nn.Module) -> int:
    """Size of ``torch.save(model.state_dict())``."""
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.getbuffer().nbytes


def static_sizes(model: nn.Module) -> Dict[str, int]:
    """Unique parameters, their bytes, and the checkpoint's bytes."""
    params = list(model.parameters())  # each shared tensor once
    return {
        "unique_parameters": sum(p.numel() for p in params),
        "parameter_bytes": sum(p.numel() * p.element_size() for p in params),
        "checkpoint_bytes": checkpoint_bytes(model),
    }


def _proc_status_kib(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def _reset_peak_rss() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0); False where not allowed."""
    try:
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")
        return True
    except OSError:
        return False


def _release_free_memory() -> None:
    # Return freed heap pages to the OS, so that RSS shows what is live rather
    # than what glibc keeps cached (building ours frees the dense template's
    # weights it replaced with low-rank factors).
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def memory_child(spec: Mapping[str, Any]) -> Dict[str, Any]:
    """Build one encoder and run one forward pass, measuring RSS (in this process).

    Runs in a fresh interpreter started by :func:`measure_memory`: torch and
    ESPnet are already imported, so the baseline holds them and the deltas
    hold only the model, its forward pass's activations and workspace.
    """
    setting = Setting(**spec["setting"])
    torch.set_num_threads(setting.threads)
    xs, ilens = make_input(setting)
    _release_free_memory()
    base = _proc_status_kib("VmRSS")
    resettable = _reset_peak_rss()
    model = build_encoder(spec["impl"], spec["options"], setting.seed).eval()
    build_peak = _proc_status_kib("VmHWM")
    _release_free_memory()
    built = _proc_status_kib("VmRSS")
    _reset_peak_rss()
    with torch.inference_mode():
        model(xs, ilens)
    forward_peak = _proc_status_kib("VmHWM")
    return {
        "peak_resettable": resettable,
        "build_peak_delta": (build_peak - base) * 1024,
        "resident_after_build_delta": (built - base) * 1024,
        "inference_peak_delta": (forward_peak - base) * 1024,
        "forward_workspace": (forward_peak - built) * 1024,
    }


def measure_memory(
    specs: Mapping[str, Mapping[str, Any]], runs: int, rng: random.Random
) -> Dict[str, List[Dict[str, Any]]]:
    """Run :func:`memory_child` in a fresh subprocess per candidate and run."""
    results: Dict[str, List[Dict[str, Any]]] = {name: [] for name in specs}
    for _ in range(runs):
        order = list(specs)
        rng.shuffle(order)
        for name in order:
            command = [sys.executable, os.path.abspath(__file__), "--memory_child"]
            command.append(json.dumps(specs[name]))
            done = subprocess.run(command, capture_output=True, text=True)
            if done.returncode != 0:
                raise RuntimeError(
                    f"memory subprocess for {name} failed:\n{done.stderr[-2000:]}"
                )
            results[name].append(json.loads(done.stdout.strip().splitlines()[-1]))
    return results


def check_equivalence(
    espnet: nn.Module, ours: nn.Module, xs: torch.Tensor, ilens: torch.Tensor
) -> float:
    """Load ESPnet's weights into ours (strict) and compare outputs; max |diff|."""
    ours.load_state_dict(espnet.state_dict(), strict=True)
    espnet.eval()
    ours.eval()
    with torch.inference_mode():
        out_e, lens_e, _ = espnet(xs, ilens)
        out_o, lens_o, _ = ours(xs, ilens)
    if not torch.equal(lens_e, lens_o) or out_e.shape != out_o.shape:
        raise RuntimeError(
            f"output shapes/lengths differ: {tuple(out_e.shape)} {lens_e.tolist()} "
            f"vs {tuple(out_o.shape)} {lens_o.tolist()}"
        )
    diff = (out_e - out_o).abs().max().item()
    if diff > OUTPUT_ATOL:
        raise RuntimeError(f"outputs differ: max |diff| {diff:.3g} > {OUTPUT_ATOL}")
    return diff


def machine_info() -> Dict[str, Any]:
    """What the figures were measured on."""
    cpu = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "commit": checkout.commit(["espnet_shared_conformer"], mark="+dirty"),
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "espnet": espnet.__version__,
        "torch_threads": torch.get_num_threads(),
    }


def format_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A plain text table, first column left-aligned, the others right-aligned."""
    columns = zip(headers, *rows, strict=True)
    widths = [max(len(str(cell)) for cell in column) for column in columns]

    def line(cells: Sequence[str]) -> str:
        first = str(cells[0]).ljust(widths[0])
        rest = (str(c).rjust(w) for c, w in zip(cells[1:], widths[1:], strict=True))
        return "  ".join((first, *rest))

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(headers), rule, *(line(r) for r in rows)])


def time_rows(times: Timings) -> List[List[str]]:
    """Table rows (ms) for each candidate's timings."""
    rows = []
    for name, samples in times.wall.items():
        s = summarize(samples)
        rows.append(
            [
                name,
                f"{s.median * 1e3:.1f}",
                f"{s.q1 * 1e3:.1f}",
                f"{s.q3 * 1e3:.1f}",
                f"{s.iqr * 1e3:.1f}",
                f"{statistics.median(times.cpu[name]) * 1e3:.1f}",
                f"{statistics.median(times.others[name]):.2f}",
                str(s.n),
            ]
        )
    return rows


def ratio_row(label: str, comparison: Comparison) -> List[str]:
    """A ratio table row: all rounds, then the quiet rounds alone."""
    r, quiet = comparison.all_rounds, comparison.quiet_rounds
    p = r.per_round
    return [
        label,
        f"{r.of_medians:.3f}",
        f"{p.median:.3f}",
        f"{p.q1:.3f}-{p.q3:.3f}",
        f"{r.cpu_of_medians:.3f}",
        f"{quiet.of_medians:.3f}" if quiet else "-",
        f"{quiet.rounds if quiet else 0}/{r.rounds}",
    ]


def print_times(title: str, times: Timings) -> None:
    print(f"\n{title}")
    headers = ["candidate", "median ms", "q1 ms", "q3 ms", "IQR ms", "CPU ms"]
    headers += ["others' cores", "n"]
    print(format_table(headers, time_rows(times)))


def print_ratios(rows: Sequence[Sequence[str]]) -> None:
    print()
    headers = ["ratio (wall time)", "of medians", "median/round", "IQR/round"]
    headers += ["CPU", "quiet", "quiet n"]
    print(format_table(headers, rows))


def _mib(n: float) -> str:
    return f"{n / 2**20:.1f}"


def flop_rows(
    full: Mapping[str, int], low: Mapping[str, int], analytic: Tuple[int, int]
) -> List[List[str]]:
    """The FLOP table: counted whole / front end / blocks, and analytic blocks."""
    rows = []
    for label, f, lo in (
        ("whole encoder (FlopCounterMode)", full["total"], low["total"]),
        ("  subsampling front end", full["embed"], low["embed"]),
        ("  blocks (FlopCounterMode)", full["blocks"], low["blocks"]),
        ("  blocks (analytic)", *analytic),
    ):
        rows.append([label, f"{f / 1e9:.2f}", f"{lo / 1e9:.2f}", f"{f / lo:.2f}"])
    return rows


def bench_no_sharing_and_lowrank(
    setting: Setting, args: argparse.Namespace, rng: random.Random
) -> Tuple[Dict[str, Any], List[Verdict]]:
    """Targets 1 and 2 at depth ``setting.num_blocks``."""
    xs, ilens = make_input(setting)
    espnet = build_encoder(ESPNET, setting.encoder_options(), setting.seed)
    ours = build_encoder(OURS, setting.encoder_options(), setting.seed)
    rank = args.lowrank_rank
    lowrank = build_encoder(
        OURS, setting.encoder_options(lowrank_rank=rank), setting.seed
    )
    diff = check_equivalence(espnet, ours, xs, ilens)
    print(
        f"\n[1] sanity: ESPnet's state_dict loads into ours (strict); outputs "
        f"match, max |diff| {diff:.2e} <= {OUTPUT_ATOL}"
    )

    full_name, lowrank_name, embed_name = OURS, f"ours rank {rank}", "embed only"
    full_blocks, lowrank_blocks = f"{full_name}, blocks", f"{lowrank_name}, blocks"
    for model in (espnet, ours, lowrank):
        model.eval()
    forward = time_interleaved(
        {
            ESPNET: forward_step(espnet, xs, ilens),
            full_name: forward_step(ours, xs, ilens),
            lowrank_name: forward_step(lowrank, xs, ilens),
            embed_name: embed_step(espnet, xs, ilens),
            full_blocks: blocks_step(ours, xs, ilens),
            lowrank_blocks: blocks_step(lowrank, xs, ilens),
        },
        args.warmup,
        args.repeats,
        rng,
    )
    for model in (espnet, ours):
        model.train()
    backward = time_interleaved(
        {ESPNET: train_step(espnet, xs, ilens), OURS: train_step(ours, xs, ilens)},
        args.warmup,
        args.repeats,
        rng,
    )
    quiet = args.quiet_cores
    forward_ratio = compare(forward, full_name, ESPNET, quiet)
    backward_ratio = compare(backward, OURS, ESPNET, quiet)
    speedup = compare(forward, full_name, lowrank_name, quiet)
    blocks_speedup = compare(forward, full_blocks, lowrank_blocks, quiet)

    depth = f"V={setting.num_blocks}"
    print_times(f"[1,2] forward, eval + inference_mode, {depth}", forward)
    print_times(f"[1] forward + backward, train (dropout), {depth}", backward)
    print_ratios(
        [
            ratio_row("[1] forward ours / ESPnet", forward_ratio),
            ratio_row("[1] fwd+bwd ours / ESPnet", backward_ratio),
            ratio_row(f"[2] forward full / rank {rank}", speedup),
            ratio_row(f"[2] blocks only, full / rank {rank}", blocks_speedup),
        ]
    )

    flops_full = count_flops(ours, xs, ilens)
    flops_low = count_flops(lowrank, xs, ilens)
    with torch.inference_mode():
        time_out = ours(xs, ilens)[0].size(1)
    analytic = (
        analytic_block_flops(setting, time_out, None),
        analytic_block_flops(setting, time_out, rank),
    )
    print()
    headers = ["GFLOP per forward", "full", f"rank {rank}", "full / low"]
    print(format_table(headers, flop_rows(flops_full, flops_low, analytic)))
    front_end_share = statistics.median(forward.wall[embed_name]) / statistics.median(
        forward.wall[full_name]
    )
    print(
        f"the subsampling front end, which low rank leaves alone, takes "
        f"{front_end_share:.0%} of the full-rank forward: the whole encoder's "
        f"speedup is bounded by its FLOP ratio, "
        f"{flops_full['total'] / flops_low['total']:.2f}x"
    )

    verdicts = [
        Verdict("[1] forward ours/ESPnet", NO_SHARING_MAX_RATIO, False, forward_ratio),
        Verdict("[1] fwd+bwd ours/ESPnet", NO_SHARING_MAX_RATIO, False, backward_ratio),
        Verdict(f"[2] forward full/rank {rank}", LOWRANK_MIN_SPEEDUP, True, speedup),
        Verdict(
            f"[2] blocks full/rank {rank}", LOWRANK_MIN_SPEEDUP, True, blocks_speedup
        ),
    ]
    result = {
        "max_abs_output_diff": diff,
        "forward_seconds": asdict(forward),
        "forward_backward_seconds": asdict(backward),
        "forward_ratio_ours_espnet": asdict(forward_ratio),
        "forward_backward_ratio_ours_espnet": asdict(backward_ratio),
        "lowrank_forward_speedup": asdict(speedup),
        "lowrank_blocks_only_speedup": asdict(blocks_speedup),
        "flops_full": flops_full,
        "flops_lowrank": flops_low,
        "analytic_block_flops": {"full": analytic[0], "lowrank": analytic[1]},
    }
    return result, verdicts


def memory_rows(
    memory: Mapping[str, Mapping[str, Mapping[str, float]]],
    sizes: Mapping[str, Mapping[str, int]],
) -> List[List[str]]:
    """Target 3's size table: RSS medians, then the static sizes."""
    rows = []
    for key, label in (
        ("inference_peak_delta", "peak RSS delta, inference (model + forward)"),
        ("resident_after_build_delta", "  RSS delta of the built model"),
        ("forward_workspace", "  peak RSS added by the forward"),
        ("build_peak_delta", "peak RSS delta while building"),
    ):
        e, o = memory[ESPNET][key], memory[OURS][key]
        rows.append(
            [
                f"{label} (MiB, median of {e['n']})",
                _mib(e["median"]),
                _mib(o["median"]),
                f"{o['median'] / e['median']:.3f}",
            ]
        )
    for key, label, fmt in (
        ("parameter_bytes", "parameter bytes (MiB)", _mib),
        ("checkpoint_bytes", "checkpoint bytes (MiB)", _mib),
        ("unique_parameters", "unique parameters", str),
    ):
        e, o = sizes[ESPNET][key], sizes[OURS][key]
        rows.append([label, fmt(e), fmt(o), f"{o / e:.3f}"])
    return rows


def bench_shared_deep(
    setting: Setting, args: argparse.Namespace, rng: random.Random
) -> Dict[str, Any]:
    """Target 3: V=16 / U=4 shared low-rank against ESPnet's unshared V=16."""
    deep = Setting(**{**asdict(setting), "num_blocks": args.deep_num_blocks})
    ours_options = deep.encoder_options(
        num_unique_blocks=args.deep_unique_blocks,
        lowrank_rank=args.lowrank_rank,
        lowrank_shared_factor="in",
    )
    options = {ESPNET: deep.encoder_options(), OURS: ours_options}
    models = {name: build_encoder(name, options[name], deep.seed) for name in options}
    sizes = {name: static_sizes(model) for name, model in models.items()}

    xs, ilens = make_input(deep)
    for model in models.values():
        model.eval()
    forward = time_interleaved(
        {name: forward_step(model, xs, ilens) for name, model in models.items()},
        args.warmup,
        args.repeats,
        rng,
    )
    del models
    gc.collect()
    specs = {
        name: {"impl": name, "options": options[name], "setting": asdict(deep)}
        for name in options
    }
    memory_runs = measure_memory(specs, args.memory_runs, rng)
    memory = {
        name: {
            key: asdict(summarize([run[key] for run in runs]))
            for key in (
                "build_peak_delta",
                "resident_after_build_delta",
                "inference_peak_delta",
                "forward_workspace",
            )
        }
        for name, runs in memory_runs.items()
    }
    forward_ratio = compare(forward, OURS, ESPNET, args.quiet_cores)

    print_times(
        f"[3] V={deep.num_blocks}: ours (U={args.deep_unique_blocks}, rank "
        f"{args.lowrank_rank}, shared 'in' factors) vs ESPnet (unshared)\n"
        f"forward, eval + inference_mode",
        forward,
    )
    print_ratios([ratio_row("[3] forward ours / ESPnet", forward_ratio)])
    print()
    rows = memory_rows(memory, sizes)
    print(format_table(["figure", ESPNET, OURS, "ours / ESPnet"], rows))
    if not all(run["peak_resettable"] for runs in memory_runs.values() for run in runs):
        print("note: /proc/self/clear_refs not writable; peaks include imports")
    return {
        "options": options,
        "sizes": sizes,
        "memory_runs": memory_runs,
        "memory": memory,
        "forward_seconds": asdict(forward),
        "forward_ratio_ours_espnet": asdict(forward_ratio),
    }


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """Command-line options; ``--quick`` overrides the rounds."""
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    model = parser.add_argument_group("the Conformer (ESPnet's option names)")
    model.add_argument("--input_size", type=int, default=80, help="feature dim")
    model.add_argument("--output_size", type=int, default=256, help="d")
    model.add_argument("--attention_heads", type=int, default=4, help="heads")
    model.add_argument("--linear_units", type=int, default=1024, help="FFN f")
    model.add_argument("--num_blocks", type=int, default=12, help="V, targets 1-2")
    model.add_argument(
        "--macaron_style",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="macaron FFN",
    )
    model.add_argument(
        "--rel_pos_type",
        default="latest",
        choices=("legacy", "latest"),
        help="positions",
    )
    model.add_argument("--cnn_module_kernel", type=int, default=31, help="depthwise")
    model.add_argument(
        "--lowrank_rank", type=int, default=64, help="rank of targets 2 and 3"
    )
    model.add_argument("--deep_num_blocks", type=int, default=16, help="target 3's V")
    model.add_argument("--deep_unique_blocks", type=int, default=4, help="target 3's U")
    run = parser.add_argument_group("the run")
    run.add_argument("--frames", type=int, default=1000, help="10 ms feature frames")
    run.add_argument("--batch", type=int, default=1, help="utterances per call")
    run.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    run.add_argument("--warmup", type=int, default=2, help="untimed rounds")
    run.add_argument("--repeats", type=int, default=11, help="timed rounds")
    run.add_argument(
        "--memory_runs", type=int, default=3, help="subprocesses per candidate"
    )
    run.add_argument(
        "--quiet_cores",
        type=float,
        default=0.25,
        help="a round is quiet when other processes kept fewer cores than this "
        "busy during each of its calls",
    )
    run.add_argument("--seed", type=int, default=0, help="weights, input, order")
    run.add_argument("--quick", action="store_true", help=f"sets {QUICK}")
    run.add_argument("--json", metavar="PATH", help="write every figure here")
    run.add_argument("--check", action="store_true", help="exit 1 if a target fails")
    run.add_argument("--memory_child", metavar="SPEC", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        for name, value in QUICK.items():
            setattr(args, name, value)
    for name in ("repeats", "memory_runs", "frames", "batch", "threads"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} ({getattr(args, name)}) must be >= 1")
    return args


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the three comparisons; 1 if ``--check`` and a target fails, else 0."""
    args = parse_args(argv)
    if args.memory_child:
        print(json.dumps(memory_child(json.loads(args.memory_child))))
        return 0

    setting = Setting.from_args(args)
    torch.set_num_threads(setting.threads)
    rng = random.Random(setting.seed)
    machine = machine_info()
    started = time.perf_counter()
    load_before = os.getloadavg()
    print(f"machine: {machine}")
    print(f"setting: {asdict(setting)}")
    print(
        f"rounds: {args.warmup} warm-up + {args.repeats} timed, order shuffled "
        f"per round; memory: {args.memory_runs} subprocess(es) per candidate; "
        f"quiet round: others < {args.quiet_cores} cores; load average "
        f"{load_before[0]:.2f}"
    )

    results, verdicts = bench_no_sharing_and_lowrank(setting, args, rng)
    shared = bench_shared_deep(setting, args, rng)
    load_after = os.getloadavg()
    elapsed = time.perf_counter() - started

    print("\nverdicts (ratio of median wall times, all rounds):")
    for verdict in verdicts:
        print("  " + verdict.line())
    print(
        f"\nload average (1 min) {load_before[0]:.2f} before, {load_after[0]:.2f} "
        f"after, on {machine['nproc']} CPUs; {elapsed:.0f} s"
    )
    timings = (
        results["forward_seconds"],
        results["forward_backward_seconds"],
        shared["forward_seconds"],
    )
    others = statistics.median(
        v for t in timings for samples in t["others"].values() for v in samples
    )
    if not others < args.quiet_cores:
        print(
            f"WARNING: other processes kept a median {others:.2f} cores busy during "
            f"the timed calls: wall times are inflated and the ratios noisy"
            + (
                " (worst with several threads: each parallel op waits for all "
                "of them; --threads 1 is steadier)"
                if setting.threads > 1
                else ""
            )
        )
    if args.json:
        report = {
            "machine": machine,
            "setting": asdict(setting),
            "args": vars(args),
            "load_average_before": load_before,
            "load_average_after": load_after,
            "elapsed_seconds": elapsed,
            "no_sharing_and_lowrank": results,
            "shared_deep": shared,
            "verdicts": [
                {
                    "target": v.target,
                    "value": v.value,
                    "bound": v.bound,
                    "higher_is_better": v.higher_is_better,
                    "passed": v.passed,
                }
                for v in verdicts
            ],
        }
        with open(args.json, "w") as out:
            json.dump(report, out, indent=2)
    if args.check and not all(v.passed for v in verdicts):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
