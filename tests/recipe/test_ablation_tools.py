"""The ablation's helpers: peer output normalization, the run records'
train.log parsing, and the report that groups the records and rewrites only
its own part of docs/ablation.md."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
from pipeline_helpers import RECIPE_DIR, local_module

peers = local_module("peers")
report = local_module("ablation_report")
record = local_module("ablation_record")


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("Mrs. Dashwood said, \u201cNo!\u201d", "MISSUS DASHWOOD SAID NO"),
        (
            "It's Mr. Palmer's well-known house.",
            "IT'S MISTER PALMER'S WELL KNOWN HOUSE",
        ),
        (
            "In 1811 there were 3 sisters & 2 brothers",
            "IN ONE THOUSAND EIGHT HUNDRED AND ELEVEN THERE WERE THREE SISTERS "
            "AND TWO BROTHERS",
        ),
        ("on the 2nd of May", "ON THE SECOND OF MAY"),
        ("  ...  ", ""),
        # Apostrophes at a word's edges are quotation marks in the peers' output.
        ("Dr. Jones said \u2018yes\u2019", "DOCTOR JONES SAID YES"),
    ],
)
def test_normalize_maps_peer_output_to_librispeech_conventions(
    raw: str, expected: str
) -> None:
    assert peers.normalize(raw) == expected


def test_parse_epochs_reads_each_form_of_espnet_timespan(tmp_path: Path) -> None:
    log = tmp_path / "train.log"
    head = "[vm] 2026-11-26 (trainer:392) INFO: "
    log.write_text(
        head + "1epoch results: [train] loss=3.1, grad_norm=150.2, clip=100.000, "
        "optim0_lr0=8.625e-04, time=2 minutes and 13.53 seconds, "
        "total_count=149, [valid] loss_ctc=2.5, cer_ctc=0.581, loss_att=nan, "
        "loss=2.0, time=5.11 seconds, total_count=16\n"
        + head
        + "2epoch results: [train] loss=2.1, time=41.5 seconds, "
        "total_count=298, [valid] loss=1.9, cer_ctc=0.4, time=4 seconds, total_count=32\n"
        + head
        + "3epoch results: [train] loss=1.1, time=1 hour, 2 minutes and "
        "3 seconds, total_count=447, [valid] loss=1.0, cer_ctc=0.3, time=4 seconds, "
        "total_count=48\n"
        + head
        + "1epoch:train:1-10batch: loss=3.0, train_time=0.9\n"
        # a re-run of epoch 3 after a crash: its last line counts
        + head
        + "3epoch results: [train] loss=1.2, time=1 minute and 3 seconds, "
        "total_count=447, [valid] loss=0.9, cer_ctc=0.25, time=4 seconds, "
        "total_count=48\n"
    )
    epochs = record.parse_epochs(log)
    assert [e["epoch"] for e in epochs] == [1, 2, 3]
    assert [e["train_seconds"] for e in epochs] == [133.53, 41.5, 63.0]
    assert epochs[0]["grad_norm"] == 150.2 and epochs[0]["lr"] == 8.625e-4
    assert [e["valid_cer_ctc"] for e in epochs] == [0.581, 0.4, 0.25]
    assert [e["valid_loss"] for e in epochs] == [2.0, 1.9, 0.9]


def test_parse_epochs_reads_the_logs_of_a_resumed_training(tmp_path: Path) -> None:
    # Killed twice: the launcher moved each earlier log aside (train.2.log
    # the oldest); the last attempt redid epoch 3, cut short before.
    def results(epoch: int, loss: float) -> str:
        return (
            f"[vm] 2026-12-02 (trainer:392) INFO: {epoch}epoch results: [train] "
            f"loss={loss}, time=4 seconds, total_count=9, [valid] loss={loss}, "
            "cer_ctc=0.5, time=1 seconds, total_count=2\n"
        )

    (tmp_path / "train.2.log").write_text(results(1, 3.0) + results(2, 2.0))
    (tmp_path / "train.1.log").write_text(results(3, 1.5))
    (tmp_path / "train.log").write_text(results(3, 1.4) + results(4, 1.0))
    (tmp_path / "train.old.log").write_text(results(5, 9.9))  # not the launcher's
    epochs = record.parse_epochs(tmp_path / "train.log")
    assert [(e["epoch"], e["train_loss"]) for e in epochs] == [
        (1, 3.0),
        (2, 2.0),
        (3, 1.4),
        (4, 1.0),
    ]


def _record(row: str, seed: int, dev_wer: float, sha: str = "a" * 64) -> dict:
    sets = {
        dset: {"wer": {"Err": dev_wer + i}, "cer": {"Err": dev_wer / 3}}
        for i, dset in enumerate(("dev", "test_sentences"))
    }
    epochs = [
        {"epoch": e, "train_seconds": 60.0 + seed, "valid_cer_ctc": 0.5 / e,
         "grad_norm": 100.0, "train_loss": 1.0, "valid_loss": 1.0,
         "clip_percent": 100.0, "lr": 1e-3}
        for e in (1, 2)
    ]  # fmt: skip
    speed = {"rtf_per_job": 0.1, "wall_seconds": 1.0, "jobs": 1, "audio_seconds": 10}
    return {
        "format": report.FORMAT,
        "row": row,
        "seed": seed,
        "config": f"conf/ablation/{row}.yaml",
        "config_sha256": sha,
        "unique_params": 1_000_000 if "small" in row else 2_000_000,
        "virtual_params": 2_000_000,
        "encoder_gflops_per_audio_second": 0.1,
        "epochs": epochs,
        "decodes": {
            "decode_acoustic": {"sets": sets, "speed": speed},
            "decode_lexicon": {"sets": sets, "speed": speed},
        },
        "environment": {"threads": 1, "concurrent_runs": 2},
    }


def _write_records(directory: Path, records: list) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for r in records:
        (directory / f"{r['row']}_seed{r['seed']}.json").write_text(json.dumps(r))
    return directory


def test_report_gives_each_row_the_mean_and_every_seed(tmp_path: Path) -> None:
    records = _write_records(
        tmp_path / "runs",
        [_record("plain_small", 1, 20.0), _record("plain_small", 2, 23.0),
         _record("plain_big", 1, 15.0), _record("diag_deep", 1, 90.0)],
    )  # fmt: skip
    rows = report.load_records(records)
    small = rows["plain_small"]
    assert small.seeds == [1, 2]
    assert small.values("decode_acoustic", "dev") == [20.0, 23.0]
    assert small.mean("decode_acoustic", "dev") == 21.5
    assert small.spread("decode_acoustic", "dev") == 3.0
    assert small.valid_cer() == [50.0, 25.0]
    table = report.error_table([small], "decode_acoustic", ["dev", "test_sentences"])
    assert (
        "|`plain_small`|2|21.5 (20.0, 23.0)|22.5 (21.0, 24.0)|7.2 (6.7, 7.7)|" in table
    )

    doc = tmp_path / "docs" / "ablation.md"
    doc.parent.mkdir()
    doc.write_text(f"# Title\n\n{report.BEGIN}\nold\n{report.END}\n\n## Reading\n")
    plots = tmp_path / "docs" / "ablation"
    assert report.main([
        "--records", str(records), "--capacity", "plain_small plain_big",
        "--grid", "plain_small", "--default", "plain_big",
        "--test_sets", "dev test_sentences",
        "--doc", str(doc), "--plots", str(plots),
        "--tuning", str(RECIPE_DIR / "conf" / "tuning"),
    ]) == 0  # fmt: skip
    text = doc.read_text()
    assert "old" not in text and text.endswith("## Reading\n")
    capacity, grid, default, diagnosis = (
        text.split("### " + title)[1].split("###")[0]
        for title in ("Capacity curve", "The grid", "At the main job", "Deep reuse")
    )
    assert "`plain_big`" in capacity and "`diag_deep`" not in capacity
    assert "`plain_big`" not in grid and "`plain_small`" in grid
    assert "`plain_big`" in default and "`plain_small`" not in default
    assert "`plain_big`" not in diagnosis
    assert "`diag_deep` valid CER|1|50.0|25.0|" in diagnosis
    for name in ("capacity.png", "grid_params.png", "grid_compute.png", "curves.png"):
        assert (plots / name).stat().st_size > 0
        assert f"](ablation/{name})" in text


def test_report_refuses_seeds_of_different_configs_and_unknown_formats(
    tmp_path: Path,
) -> None:
    records = _write_records(
        tmp_path / "a", [_record("r", 1, 20.0), _record("r", 2, 21.0, sha="b" * 64)]
    )
    with pytest.raises(ValueError, match="seeds 1 and 2 were trained from different"):
        report.load_records(records)
    old = _record("r", 1, 20.0)
    old["format"] = 0
    with pytest.raises(ValueError, match="record format 0"):
        report.load_records(_write_records(tmp_path / "b", [old]))


def _row(name: str, unique: int, dev_wers: list) -> "report.Row":
    records = [_record(name, seed, w) for seed, w in enumerate(dev_wers, 1)]
    for r in records:
        r["unique_params"] = unique
    return report.Row(name, records)


def test_questions_weigh_each_lead_against_the_seeds_spread() -> None:
    acoustic = "decode_acoustic"
    # A capacity curve falling 10 points per 4x parameters, tight seeds except
    # at 1M; the upper bound is its 4M point.
    curve = [
        _row("plain_narrow", 1_000_000, [50.0, 56.0]),
        _row("plain_mid", 2_000_000, [45.0, 46.0]),
        _row("upper", 4_000_000, [42.5, 43.5]),
    ]
    narrow, mid, upper = curve
    rule = report.capacity_rule_table(curve, upper)
    # 53.0 - 43.0 = 10.0 lead against 3 x 6.0; 45.5 - 43.0 = 2.5 against 3 x 1.0.
    assert "|`plain_narrow`|1.00M|10.0|18.0|no|" in rule
    assert "|`plain_mid`|2.00M|2.5|3.0|no|" in rule
    assert "`upper`|" not in rule.split("\n", 2)[2]

    # Log-linear between the curve's means: 49.25 is halfway from 53.0 to 45.5.
    assert report.plain_equivalent(curve, 49.25, acoustic) == "1.41M"
    assert report.plain_equivalent(curve, 60.0, acoustic) == "< 1.00M"
    assert report.plain_equivalent(curve, 40.0, acoustic) == "> 4.00M"

    shallow = _row("plain_shallow", 1_000_000, [58.0, 59.0])
    good = _row("share_good", 1_000_000, [45.0, 46.0])  # 7.5 ahead, spreads <= 6
    close = _row("share_close", 1_000_000, [50.0, 51.0])  # 2.5 ahead of a 6.0 spread
    table = report.grid_questions_table(
        [shallow, narrow, good, close, upper], [shallow, narrow], upper, curve, acoustic
    )
    lines = {line.split("|")[1]: line for line in table.splitlines()}
    assert set(lines) >= {"`share_good`", "`share_close`"}
    assert "`plain_narrow`" not in lines and "`upper`" not in lines
    # The upper bound gains 10.0 over the better plain row: 7.5 of it is 75%;
    # 50.5 lies a third of the way from 1M (53.0) to 2M (45.5): 2 ** (1/3) M.
    assert lines["`share_good`"].endswith("|+7.5|yes|75%|2.00M|")
    assert lines["`share_close`"].endswith("|+2.5|no|25%|1.26M|")

    pairs = report.third_seed_pairs([narrow, good, close], acoustic)
    assert pairs == ["`plain_narrow` and `share_close`: means 2.5 apart, spread 6.0"]
    third = _row("plain_narrow", 1_000_000, [50.0, 56.0, 53.0])
    both = _row("share_close", 1_000_000, [50.0, 51.0, 50.5])
    assert report.third_seed_pairs([third, both], acoustic) == []
    # What local/ablation.sh trains once more: both rows of a close pair, once
    # each, and only the one still short of three seeds; budgets apart.
    assert report.rows_owing_a_third_seed([[narrow, good, close]], acoustic) == [
        "plain_narrow",
        "share_close",
    ]
    assert report.rows_owing_a_third_seed(
        [[third, close], [narrow, close]], acoustic
    ) == ["share_close", "plain_narrow"]
    assert report.rows_owing_a_third_seed([[narrow], [close]], acoustic) == []


def test_splice_keeps_the_prose_around_the_generated_part(tmp_path: Path) -> None:
    doc = tmp_path / "ablation.md"
    generated = f"{report.BEGIN}\nnew table\n{report.END}\n"
    assert report.splice(doc, generated).startswith("# Sharing ablation")
    doc.write_text(
        f"# Title\n\nIntro.\n\n{report.BEGIN}\nold table\n{report.END}\n\n"
        "## Reading\n\nWhat it shows.\n"
    )
    text = report.splice(doc, generated)
    assert "old table" not in text and "new table" in text
    assert text.startswith("# Title\n\nIntro.\n") and text.endswith("What it shows.\n")


def test_pocketsphinx_hypothesis_does_not_depend_on_earlier_utterances(
    tmp_path: Path,
) -> None:
    """Live CMN and noise tracking would carry the loud, clean utterance's
    statistics into the quiet, noisy one; the peer must decode every
    utterance as if it came first."""
    pytest.importorskip("pocketsphinx")
    from espnet_shared_conformer import audio_io

    def speak(name: str, text: str, *options: str) -> np.ndarray:
        wav = tmp_path / f"{name}.wav"
        subprocess.run(["espeak-ng", *options, "-w", str(wav), text], check=True)
        return audio_io.load_audio(str(wav), 16000)

    loud = speak("loud", "the weather was fine and the roads were dry", "-p", "90")
    quiet = 0.3 * speak(
        "quiet", "she walked to the village every morning", "-v", "en-us", "-p", "20"
    )
    quiet += 0.01 * np.random.default_rng(0).standard_normal(len(quiet))
    transcribe = peers.pocketsphinx_system()["transcribe"]
    alone = transcribe(quiet.astype(np.float32))
    transcribe(loud)
    assert alone and transcribe(quiet.astype(np.float32)) == alone


def test_plot_labels_of_coinciding_points_do_not_overlap() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.set_xlim(0, 2)
    ax.set_ylim(60, 100)
    # a0 and a1 of the real grid: 0.62M / 77.6% and 0.60M / 77.3%.
    points = [(0.62, 77.6, "a0_conformer_2x96"), (0.60, 77.3, "a1_conformer_6x60")]
    points.append((1.5, 70.7, "d_conformer_6x96"))
    report.label_points(ax, points)
    renderer = fig.canvas.get_renderer()
    boxes = [t.get_window_extent(renderer) for t in ax.texts]
    assert sorted(t.get_text() for t in ax.texts) == sorted(p[2] for p in points)
    assert not any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1 :])
    plt.close(fig)


def _epoch_line(n: int) -> str:
    return (
        f"[vm] 2026-12-01 (trainer:392) INFO: {n}epoch results: [train] "
        f"loss={100 / n:.1f}, grad_norm=120.5, clip=100.000, optim0_lr0=1e-03, "
        "time=1 minute and 2.5 seconds, total_count=342, [valid] "
        f"loss_ctc={90 / n:.1f}, cer_ctc={0.5 / n:.3f}, loss={90 / n:.1f}, "
        "time=3.1 seconds, total_count=16\n"
    )


def test_record_keeps_a_finished_scored_run_and_refuses_anything_less(
    tmp_path: Path,
) -> None:
    """A synthetic experiment directory with ESPnet's config and log lines
    and real sclite scores: one epoch short, or one set unscored, is no record."""
    import yaml

    sclite = local_module("score_sclite")
    config = RECIPE_DIR / "conf" / "ablation" / "conformer_6x48.yaml"
    exp = tmp_path / "exp"
    exp.mkdir()
    dumped = yaml.safe_load(config.read_text())
    dumped["token_list"] = ["<blank>", "<unk>", "A", "B", "<space>", "<sos/eos>"]
    (exp / "config.yaml").write_text(yaml.safe_dump(dumped))
    (exp / "train.log").write_text("".join(_epoch_line(n) for n in range(1, 10)))
    ref = tmp_path / "ref"
    ref.write_text("u1 A B A\nu2 B B\n")
    hyp = tmp_path / "hyp"
    hyp.write_text("u1 A B\nu2 B B\n")
    sclite.score(ref, hyp, exp / "decode_acoustic" / "dev")
    out = tmp_path / "runs" / "conformer_6x48_seed1.json"
    args = [
        "--exp", str(exp), "--config", str(config), "--row", "conformer_6x48",
        "--seed", "1", "--decodes", "decode_acoustic", "--jobs", "2",
        "--commit", "abc1234", "--out", str(out),
    ]  # fmt: skip

    def run(test_sets: str) -> int:
        return record.main([*args, "--test_sets", test_sets])

    assert run("dev") == 1 and not out.exists()  # 9 of 10 epochs
    with open(exp / "train.log", "a") as log:
        log.write(_epoch_line(10))
    assert run("dev test_voices") == 1 and not out.exists()  # test_voices unscored
    assert run("dev") == 0
    kept = json.loads(out.read_text())
    assert kept["row"] == "conformer_6x48" and kept["seed"] == 1
    assert kept["config_sha256"] == record.config_sha256(config)
    assert record.is_current(out, config)
    assert [e["valid_cer_ctc"] for e in kept["epochs"]][-1] == 0.05
    wer = kept["decodes"]["decode_acoustic"]["sets"]["dev"]["wer"]
    assert (wer["n_Err"], wer["Err"]) == (1, 20.0)  # one deletion in 5 words
    assert kept["unique_params"] == kept["virtual_params"] > 300_000
    assert kept["encoder_gflops_per_audio_second"] > 0
    assert kept["environment"]["commit_at_start"] == "abc1234"
    assert kept["environment"]["concurrent_runs"] == 2
    # another encoder in the experiment than in the row's config: refused
    dumped["encoder_conf"]["output_size"] = 64
    (exp / "config.yaml").write_text(yaml.safe_dump(dumped))
    assert run("dev") == 1


def _readme_ablation_block() -> str:
    """The README's quote of the ablation, whitespace collapsed."""
    text = (RECIPE_DIR.parents[2] / "README.md").read_text()
    block = text.split("<!-- ablation:", 1)[1].split("<!-- end of ablation -->")[0]
    return " ".join(block.split())


def test_readme_quotes_the_ablation_records() -> None:
    """The README's first screen answers whether the sharing pays at the
    main job's budget; its figures must be the records' own."""
    root = RECIPE_DIR.parents[2]
    block = _readme_ablation_block()
    rows = report.load_records(root / "docs" / "ablation" / "runs")
    shared, plain, upper = (
        rows[n] for n in ("shared_3x2_144", "conformer_3x144", "conformer_6x144")
    )

    def dev(row: "report.Row", decode: str = "decode_acoustic") -> float:
        return row.mean(decode, "dev")

    lexicon = "decode_lexicon"
    share = (dev(plain) - dev(shared)) / (dev(plain) - dev(upper))
    spread = max(r.spread("decode_acoustic", "dev") for r in (shared, plain, upper))
    for quote in (
        f"{report._m(shared.unique)} parameters) **{dev(shared):.1f}**",
        f"{report._m(plain.unique)}) **{dev(plain):.1f}**",
        f"{report._m(upper.unique)}, the same compute as the default) "
        f"**{dev(upper):.1f}**",
        f"recovers {share:.0%} of",
        f"within {spread:.1f} points",
        f"shrinks to {dev(plain, lexicon) - dev(shared, lexicon):.1f} points "
        f"({dev(shared, lexicon):.1f} against {dev(plain, lexicon):.1f})",
        f"{plain.spread(lexicon, 'dev'):.1f}-point seed spread",
    ):
        assert quote in block, quote
    assert shared.gflops == upper.gflops
    # how many seeds each mean is over, as the README words it
    number = {2: "two", 3: "three"}
    counts = {len(r.seeds) for r in (shared, plain, upper)}
    if len(counts) == 1:
        seeds = f"mean of {number[counts.pop()]} seeds"
    else:
        assert len(shared.seeds) == len(upper.seeds), "reword the README's seeds"
        seeds = (
            f"mean of {number[len(shared.seeds)]} seeds "
            f"({number[len(plain.seeds)]} for the plain one)"
        )
    assert seeds in block, seeds


def test_readme_quotes_the_grid_at_b() -> None:
    """The README's answer at the grid's budget: its best sharing row, the
    plain narrow row and that row's spread are the records', and no sharing
    row beats both plain rows by more than their spread (else the sentence
    is false)."""
    root = RECIPE_DIR.parents[2]
    block = _readme_ablation_block()
    script = (RECIPE_DIR / "local" / "ablation.sh").read_text()

    def sh_list(name: str) -> list:
        return (
            script.split(f"\n{name}=", 1)[1].split("#", 1)[0].strip().strip('"').split()
        )

    rows = report.load_records(root / "docs" / "ablation" / "runs")
    grid, plain = sh_list("grid_rows"), sh_list("plain_rows")
    sharing = [rows[n] for n in grid[:-1] if n not in plain]  # last: upper bound
    plains = [rows[n] for n in plain]
    dev = "decode_acoustic"
    best = min(sharing, key=lambda r: r.mean(dev, "dev"))
    narrow = rows["conformer_6x72"]
    for quote in (
        f"`{best.name}`",
        f"**{best.mean(dev, 'dev'):.1f}**",
        f"**{narrow.mean(dev, 'dev'):.1f}** for the plain 6 × 72",
        f"{narrow.spread(dev, 'dev'):.1f} points apart",
    ):
        assert quote in block, quote
    for row in sharing:
        lead = min(p.mean(dev, "dev") for p in plains) - row.mean(dev, "dev")
        assert lead <= report.larger_spread(dev, row, *plains), row.name
