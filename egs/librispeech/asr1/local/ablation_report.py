#!/usr/bin/env python3
"""Tabulate and plot the sharing ablation from its experiment directories.

    ablation_report.py --exps exp/asr_ablation_* --peers exp/peer_* \\
        --doc ../../../docs/ablation.md --plot ../../../docs/ablation_wer.png

Reads, for each ASR experiment, its ``config.yaml`` (unique and virtual
parameters, counted by ``espnet_shared_conformer.params``), ``train.log``
(median wall time of an epoch), ``<decode dir>/<set>/score_wer/result.txt``
(sclite) and ``<decode dir>/decode_time`` (stage 12's wall time, so the
real-time factor includes loading ESPnet and the model); for each peer
``system.json`` and its ``decode/<set>`` scores. Also counts the LibriSpeech
960 h configs of ``conf/tuning/``.

Rewrites the part of ``--doc`` between the ``<!-- ablation:begin -->`` and
``<!-- ablation:end -->`` markers (creating the file if needed), so the prose
around the tables survives a re-run, and writes the plot.
"""

import argparse
import json
import re
import statistics
import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from score_sclite import parse_result

BEGIN, END = "<!-- ablation:begin -->", "<!-- ablation:end -->"

SET_TITLES = {
    "test_sentences": "unseen sentences",
    "test_voices": "unseen voices",
    "test_librivox": "LibriVox (real)",
    "test_asterisk": "Asterisk (real, 8 kHz)",
}

#: LibriSpeech-scale configs: (config under conf/tuning, vocabulary, what it is).
PAPER_SCALE = (
    ("train_asr_conformer_960h.yaml", 5000, "ESPnet Conformer baseline, 12 x 512"),
    ("train_asr_shared_conformer_l1_repeat_960h.yaml", 256, "(i) repeated blocks"),
    (
        "train_asr_shared_conformer_l2_share_modules_960h.yaml",
        256,
        "(ii) modules shared across layers",
    ),
    ("train_asr_shared_conformer_l3_tie_960h.yaml", 256, "(iii) tied sub-components"),
    (
        "train_asr_shared_conformer_l4_lowrank_960h.yaml",
        256,
        "(iv) low rank, shared factor",
    ),
    ("train_asr_shared_conformer_combined_960h.yaml", 256, "all four levels"),
)

_TIMESPAN = re.compile(
    r"time=(?:(?P<h>\d+) hours?(?:, | and )?)?(?:(?P<m>\d+) minutes?(?: and )?)?"
    r"(?:(?P<s>[\d.]+) seconds)?, total_count"
)


def epoch_seconds(train_log: Path) -> List[float]:
    """Wall time of each training epoch (the [train] part of "results" lines)."""
    times = []
    for line in train_log.read_text(errors="replace").splitlines():
        if "epoch results: [train]" not in line:
            continue
        match = _TIMESPAN.search(line.split("[valid]")[0])
        if match:
            h, m, s = (float(match.group(k) or 0) for k in ("h", "m", "s"))
            times.append(3600 * h + 60 * m + s)
    return times


def wer_by_set(root: Path, test_sets: Sequence[str]) -> Dict[str, Dict[str, float]]:
    """Test set -> sclite word summary, from ``root/*/<set>/score_wer``."""
    found = {}
    for dset in test_sets:
        # The acoustic-only decoding (local/ablation.sh) is the primary score.
        results = sorted(
            root.glob(f"decode_acoustic/{dset}/score_wer/result.txt")
        ) or sorted(root.glob(f"*/{dset}/score_wer/result.txt"))
        if results:
            found[dset] = parse_result(results[-1])
    return found


def decode_rtf(exp: Path) -> Optional[float]:
    """Stage 12's wall time x jobs / audio seconds (per-job real-time factor)."""
    for timing in sorted(exp.glob("*/decode_time")):
        values = dict(
            line.split(maxsplit=1) for line in timing.read_text().splitlines() if line
        )
        return (
            float(values["wall_seconds"])
            * int(values["jobs"])
            / float(values["audio_seconds"])
        )
    return None


def describe_config(config: Path) -> str:
    """The config's own one-line description (its second comment line on)."""
    lines = [
        line[1:].strip()
        for line in config.read_text().splitlines()[1:]
        if line.startswith("#")
    ]
    text = []
    for line in lines:
        if line.startswith("Shared by all rows"):
            break
        text.append(line)
    return " ".join(text)


def asr_row(exp: Path, test_sets: Sequence[str]) -> Dict[str, object]:
    from espnet_shared_conformer.params import ParameterReport

    report = ParameterReport.from_config(str(exp / "config.yaml"))
    epochs = epoch_seconds(exp / "train.log")
    name = exp.name.removeprefix("asr_ablation_")
    source = Path("conf/ablation") / f"{re.sub(r'_seed[0-9]+$', '', name)}.yaml"
    return dict(
        name=name,
        description=describe_config(source) if source.exists() else "",
        unique=report.total,
        virtual=report.total_virtual,
        epochs=len(epochs),
        epoch_seconds=statistics.median(epochs) if epochs else None,
        rtf=decode_rtf(exp),
        wer={k: v["Err"] for k, v in wer_by_set(exp, test_sets).items()},
    )


def peer_row(peer: Path, test_sets: Sequence[str]) -> Dict[str, object]:
    system = json.loads((peer / "system.json").read_text())
    sets = system["sets"]
    audio = sum(s["audio_seconds"] for s in sets.values())
    compute = sum(s["compute_seconds"] for s in sets.values())
    return dict(
        name=system["name"],
        parameters=system["parameters"],
        parameters_note=system["parameters_note"],
        bytes=system["bytes"],
        threads=system["threads"],
        rtf=compute / audio,
        wer={k: v["Err"] for k, v in wer_by_set(peer, test_sets).items()},
    )


def _m(n: float) -> str:
    return f"{n / 1e6:.2f}M"


def _wer_cells(wer: Dict[str, float], test_sets: Sequence[str]) -> List[str]:
    return [f"{wer[d]:.1f}" if d in wer else "-" for d in test_sets]


def asr_table(rows: List[Dict[str, object]], test_sets: Sequence[str]) -> str:
    head = ["row", "unique params", "virtual params"]
    head += [f"WER {SET_TITLES.get(d, d)}" for d in test_sets]
    head += ["train s/epoch", "decode RTF"]
    lines = ["|" + "|".join(head) + "|", "|" + "---|" * len(head)]
    for r in rows:
        cells = [f"`{r['name']}`", _m(r["unique"]), _m(r["virtual"])]
        cells += _wer_cells(r["wer"], test_sets)
        cells.append(f"{r['epoch_seconds']:.0f}" if r["epoch_seconds"] else "-")
        cells.append(f"{r['rtf']:.3f}" if r["rtf"] is not None else "-")
        lines.append("|" + "|".join(cells) + "|")
    return "\n".join(lines)


def peer_table(peers: List[Dict[str, object]], test_sets: Sequence[str]) -> str:
    head = ["system", "parameters", "model files"]
    head += [f"WER {SET_TITLES.get(d, d)}" for d in test_sets]
    head += ["RTF (threads)"]
    lines = ["|" + "|".join(head) + "|", "|" + "---|" * len(head)]
    for p in peers:
        cells = [
            p["name"],
            f"{_m(p['parameters'])} ({p['parameters_note']})",
            f"{p['bytes'] / 2**20:.1f} MiB",
        ]
        cells += _wer_cells(p["wer"], test_sets)
        cells.append(f"{p['rtf']:.3f} ({p['threads']})")
        lines.append("|" + "|".join(cells) + "|")
    return "\n".join(lines)


def paper_scale_table(tuning: Path) -> str:
    from espnet_shared_conformer.params import ParameterReport

    lines = [
        "|config|what|vocabulary|unique params|virtual params|fp32|int8|",
        "|---|---|---|---|---|---|---|",
    ]
    for name, vocab, what in PAPER_SCALE:
        report = ParameterReport.from_config(str(tuning / name), vocab_size=vocab)
        lines.append(
            f"|`{name}`|{what}|{vocab}|{_m(report.total)}|"
            f"{_m(report.total_virtual)}|{4 * report.total / 2**20:.1f} MiB|"
            f"{report.total / 2**20:.1f} MiB|"
        )
    return "\n".join(lines)


# Where a point's name may go, in points from the marker, tried in order.
_LABEL_OFFSETS = [
    (5, 4), (5, -10), (-5, 4), (-5, -10), (8, 14), (8, -20), (-8, 14), (-8, -20),
    (14, 0), (-14, 0), (10, 26), (10, -32), (-10, 26), (-10, -32),
]  # fmt: skip


def label_points(ax, points: Sequence[tuple]) -> None:
    """Name each ``(x, y, name)`` point, moving a name to the next free spot
    around its marker when it would cover a name already placed or leave the
    axes (rows of nearly equal size and WER sit on top of each other). A thin
    line joins a moved name to its marker."""
    renderer = ax.figure.canvas.get_renderer()
    frame = ax.get_window_extent(renderer)
    placed = []
    for x, y, name in sorted(points, key=lambda p: (p[0], p[1])):
        for n, (dx, dy) in enumerate(_LABEL_OFFSETS):
            text = ax.annotate(
                name,
                (x, y),
                textcoords="offset points",
                xytext=(dx, dy),
                ha="left" if dx >= 0 else "right",
                va="center",
                fontsize=8,
                arrowprops=dict(arrowstyle="-", lw=0.5, color="0.4") if n else None,
            )
            box = text.get_window_extent(renderer)
            inside = frame.x0 <= box.x0 and box.x1 <= frame.x1
            inside = inside and frame.y0 <= box.y0 and box.y1 <= frame.y1
            if inside and not any(box.overlaps(other) for other in placed):
                break
            if n + 1 < len(_LABEL_OFFSETS):
                text.remove()
        placed.append(box)  # the last spot stays when none is free


def plot(rows: List[Dict[str, object]], test_sets: Sequence[str], out: Path) -> None:
    """WER of every row and test set against unique parameters. The rows at
    the budget (within 15% of the smallest) get a panel of their own, so that
    their differences are not squeezed next to the upper bound."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    smallest = min(r["unique"] for r in rows)
    budget = [r for r in rows if r["unique"] <= 1.15 * smallest]
    others = [r for r in rows if r["unique"] > 1.15 * smallest]
    panels = [(budget, "at the budget")] + ([(others, "larger")] if others else [])
    fig, axes = plt.subplots(
        1,
        len(panels),
        figsize=(8.5, 4.8),
        sharey=True,
        squeeze=False,
        gridspec_kw=dict(width_ratios=[3, 1][: len(panels)]),
    )
    markers = "os^dv"
    for ax, (panel_rows, title) in zip(axes[0], panels, strict=True):
        for i, dset in enumerate(test_sets):
            pts = [
                (r["unique"] / 1e6, r["wer"][dset])
                for r in panel_rows
                if dset in r["wer"]
            ]
            ax.scatter(
                [p[0] for p in pts],
                [p[1] for p in pts],
                marker=markers[i % len(markers)],
                color=f"C{i}",
                label=SET_TITLES.get(dset, dset),
            )
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("unique parameters (millions)")
        ax.grid(alpha=0.3)
        ax.margins(x=0.15, y=0.08)
    axes[0][0].set_ylabel("WER (%)")
    axes[0][0].legend(fontsize=8, title="row ids label the first set", title_fontsize=7)
    fig.suptitle("Mini corpus: WER against unique parameters (same training budget)")
    fig.tight_layout()
    for ax, (panel_rows, _) in zip(axes[0], panels, strict=True):
        # Rows are named by their id (a0, b3, ...), the first part of the name.
        label_points(
            ax,
            [
                (r["unique"] / 1e6, r["wer"][test_sets[0]], r["name"].split("_")[0])
                for r in panel_rows
                if test_sets and test_sets[0] in r["wer"]
            ],
        )
    tmp = out.with_name(out.stem + ".tmp" + out.suffix)
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    tmp.rename(out)


def render(
    rows: List[Dict[str, object]],
    peers: List[Dict[str, object]],
    test_sets: Sequence[str],
    paper: str,
    plot_name: str,
) -> str:
    out = [BEGIN, "<!-- Generated by egs/librispeech/asr1/local/ablation_report.py -->"]
    described = [
        f"- `{r['name']}`: {r['description']}" for r in rows if r["description"]
    ]
    if described:
        out += ["", "### Rows", ""] + described
    out += ["", "### Results (mini corpus)", ""]
    if rows:
        out += [asr_table(rows, test_sets), ""]
        out += [f"![WER against unique parameters]({plot_name})", ""]
    else:
        out += ["No row trained yet (`local/ablation.sh --stage 2`).", ""]
    if peers:
        out += ["### Peers on the same test sets", "", peer_table(peers, test_sets), ""]
    out += ["### LibriSpeech 960 h configs (paper scale)", "", paper, "", END]
    return "\n".join(out) + "\n"


def splice(doc: Path, generated: str) -> str:
    if not doc.exists():
        return "# Sharing ablation\n\n" + generated
    text = doc.read_text()
    if BEGIN not in text or END not in text:
        return text.rstrip("\n") + "\n\n" + generated
    head, rest = text.split(BEGIN, 1)
    tail = rest.split(END, 1)[1]
    return head + generated.rstrip("\n") + tail


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--exps", type=Path, nargs="+", required=True)
    parser.add_argument("--peers", type=Path, nargs="*", default=[])
    parser.add_argument(
        "--test_sets", default="test_sentences test_voices test_librivox"
    )
    parser.add_argument("--tuning", type=Path, default=Path("conf/tuning"))
    parser.add_argument("--doc", type=Path, required=True)
    parser.add_argument("--plot", type=Path, required=True)
    args = parser.parse_args(argv)
    test_sets = args.test_sets.split()
    rows: List[Dict[str, object]] = []
    peers: List[Dict[str, object]] = []
    try:
        for exp in args.exps:
            if not (exp / "config.yaml").exists():
                print(f"ablation_report: skipping {exp}: not trained", file=sys.stderr)
                continue
            rows.append(asr_row(exp, test_sets))
        for peer in args.peers:
            if (peer / "system.json").exists():
                peers.append(peer_row(peer, test_sets))
        if not rows and not peers:
            raise ValueError("no trained experiment among --exps and no peer")
        paper = paper_scale_table(args.tuning)
        if rows:
            plot(rows, test_sets, args.plot)
        text = splice(
            args.doc,
            render(rows, peers, test_sets, paper, args.plot.name),
        )
    except (OSError, ValueError, KeyError) as e:
        print(f"ablation_report: ERROR: {e}", file=sys.stderr)
        return 1
    tmp = args.doc.with_name(args.doc.name + ".tmp")
    tmp.write_text(text)
    tmp.rename(args.doc)
    print(f"ablation_report: {len(rows)} rows, {len(peers)} peers -> {args.doc}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
