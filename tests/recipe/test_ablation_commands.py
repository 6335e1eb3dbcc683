"""local/ablation.sh spells out every option of the study itself.

The rows must be trained and decoded the same way whenever the study is run,
whatever the main job's presets in run.sh have become since. The script's
``--dry_run true`` prints the asr.sh commands it would run; these tests read
them in a scratch copy of the recipe's scripts and configs.
"""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import List

import pytest
from pipeline_helpers import RECIPE_DIR, local_module


def copy_recipe(dest: Path) -> Path:
    """The scripts and configs of the recipe (no data, no experiments)."""
    for name in ("run.sh", "asr.sh", "path.sh", "cmd.sh"):
        shutil.copy2(RECIPE_DIR / name, dest / name)
    shutil.copytree(RECIPE_DIR / "conf", dest / "conf")
    shutil.copytree(RECIPE_DIR / "local", dest / "local")
    shutil.copytree(RECIPE_DIR / "scripts", dest / "scripts")
    shutil.copytree(RECIPE_DIR / "pyscripts", dest / "pyscripts")
    return dest


def dry_run(recipe: Path, *args: str) -> List[List[str]]:
    done = subprocess.run(
        ["bash", "local/ablation.sh", "--dry_run", "true", *args],
        cwd=recipe,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return [shlex.split(line) for line in done.stdout.splitlines()]


def option(cmd: List[str], name: str) -> str:
    return cmd[cmd.index(name) + 1]


def test_changing_run_sh_presets_changes_no_ablation_command(tmp_path: Path) -> None:
    recipe = copy_recipe(tmp_path)
    before = dry_run(recipe, "--rows", "conformer_6x48")
    run_sh = recipe / "run.sh"
    text = run_sh.read_text()
    for old, new in (
        ('--speed_perturb_factors "0.9 1.0 1.1"', '--speed_perturb_factors "1.0"'),
        (
            "--token_type char --use_word_lm true",
            "--token_type bpe --use_word_lm false",
        ),
        ("--ngpu 0 --nj 2 --inference_nj 2", "--ngpu 0 --nj 3 --inference_nj 5"),
        ("--asr_config conf/train_asr.yaml", "--asr_config conf/other.yaml"),
        ("mini_hours=2.0 ", "mini_hours=0.5 "),
    ):
        assert old in text, f"run.sh no longer has {old!r}: update this test"
        text = text.replace(old, new)
    run_sh.write_text(text)
    assert dry_run(recipe, "--rows", "conformer_6x48") == before
    assert not any("run.sh" in word for cmd in before for word in cmd)


def test_each_row_and_seed_trains_once_and_decodes_twice(tmp_path: Path) -> None:
    cmds = dry_run(
        copy_recipe(tmp_path),
        "--rows",
        "conformer_6x48 conformer_6x64",
        "--seeds",
        "3 7",
    )
    asr = [c for c in cmds if c[0] == "./asr.sh"]
    data = asr[0]
    assert (option(data, "--stage"), option(data, "--stop_stage")) == ("1", "10")
    # the data as the main job made it, named by the script itself
    assert option(data, "--speed_perturb_factors") == "0.9 1.0 1.1"
    assert option(data, "--token_type") == "char"
    assert "--mini_hours 2.0 --seed 1" in option(data, "--local_data_opts")
    runs = asr[1:]
    assert len(runs) == 2 * 2 * 2
    tags = set()
    for train, lexicon in zip(runs[::2], runs[1::2], strict=True):
        tag = option(train, "--asr_tag")
        seed = tag.rsplit("seed", 1)[1]
        assert option(train, "--asr_args") == f"--seed {seed}"
        assert (option(train, "--stage"), option(train, "--stop_stage")) == ("11", "13")
        # the primary score: no LM of any kind
        assert option(train, "--use_word_lm") == "false"
        assert option(train, "--use_lm") == "false"
        assert option(train, "--inference_tag") == "decode_acoustic"
        # the second column decodes the same model with the lexicon
        assert option(lexicon, "--asr_tag") == tag
        assert option(lexicon, "--asr_args") == f"--seed {seed}"
        assert option(lexicon, "--stage") == "12"
        assert option(lexicon, "--use_word_lm") == "true"
        assert option(lexicon, "--inference_tag") == "decode_lexicon"
        assert option(train, "--test_sets").split()[0] == "dev"
        tags.add(tag)
    assert tags == {
        f"ablation_{row}_seed{seed}"
        for row in ("conformer_6x48", "conformer_6x64")
        for seed in (3, 7)
    }
    # each run ends with its record, named by row and seed
    records = [
        c
        for c in cmds
        if c[:2] == ["python3", "local/ablation_record.py"] and "--exp" in c
    ]
    assert [Path(option(c, "--out")).name for c in records] == [
        f"{row}_seed{seed}.json"
        for row in ("conformer_6x48", "conformer_6x64")
        for seed in (3, 7)
    ]
    assert all(
        option(c, "--decodes") == "decode_acoustic decode_lexicon" for c in records
    )


def test_a_run_with_a_current_record_is_skipped_and_a_stale_one_redone(
    tmp_path: Path,
) -> None:
    recipe = copy_recipe(tmp_path)
    records = tmp_path / "records"
    records.mkdir()
    config = recipe / "conf/ablation/conformer_6x48.yaml"
    sha = local_module("ablation_record").config_sha256(config)
    (records / "conformer_6x48_seed1.json").write_text(
        json.dumps({"config_sha256": sha})
    )
    (records / "conformer_6x48_seed2.json").write_text(
        json.dumps({"config_sha256": "0" * 64})
    )
    args = ["--stage", "2", "--stop_stage", "2", "--records", str(records)]
    cmds = dry_run(recipe, "--rows", "conformer_6x48", "--seeds", "1 2", *args)
    tags = {option(c, "--asr_tag") for c in cmds if c[0] == "./asr.sh"}
    assert tags == {"ablation_conformer_6x48_seed2"}
    # a comment is not the config's content
    config.write_text("# a new comment\n" + config.read_text())
    cmds = dry_run(recipe, "--rows", "conformer_6x48", "--seeds", "1 2", *args)
    tags = {option(c, "--asr_tag") for c in cmds if c[0] == "./asr.sh"}
    assert tags == {"ablation_conformer_6x48_seed2"}
    # the config changed since seed 1's record: both run again
    config.write_text(config.read_text().replace("max_epoch: 10", "max_epoch: 11"))
    cmds = dry_run(recipe, "--rows", "conformer_6x48", "--seeds", "1 2", *args)
    tags = {option(c, "--asr_tag") for c in cmds if c[0] == "./asr.sh"}
    assert tags == {"ablation_conformer_6x48_seed1", "ablation_conformer_6x48_seed2"}


def _scored_record(recipe: Path, row: str, seed: int, dev_wer: float) -> dict:
    """A finished run's record as far as the third-seed rule reads it."""
    config = recipe / "conf" / "ablation" / f"{row}.yaml"
    sets = {"dev": {"wer": {"Err": dev_wer}}}
    return {
        "format": local_module("ablation_report").FORMAT,
        "row": row,
        "seed": seed,
        "config": f"conf/ablation/{row}.yaml",
        "config_sha256": local_module("ablation_record").config_sha256(config),
        "unique_params": 1,
        "virtual_params": 1,
        "encoder_gflops_per_audio_second": 0.1,
        "decodes": {"decode_acoustic": {"sets": sets}},
    }


def test_rows_closer_than_their_spread_get_a_third_seed(tmp_path: Path) -> None:
    """After the two seeds, the same command trains a third seed of each row
    whose dev mean lies closer to another row of its budget than their spread,
    and only of those."""
    recipe = copy_recipe(tmp_path)
    records = tmp_path / "records"
    records.mkdir()
    # narrow and tie: 1.0 apart with a 4.0 spread; repeat: 10 points clear.
    for row, wers in (
        ("conformer_6x72", (50.0, 54.0)),
        ("tie_2x3_132", (51.0, 51.0)),
        ("repeat_1x6_144", (40.0, 41.0)),
    ):
        for seed, wer in enumerate(wers, 1):
            (records / f"{row}_seed{seed}.json").write_text(
                json.dumps(_scored_record(recipe, row, seed, wer))
            )
    args = ["--stage", "2", "--stop_stage", "2", "--records", str(records)]
    rows = ["--rows", "conformer_6x72 tie_2x3_132 repeat_1x6_144"]
    cmds = dry_run(recipe, *rows, *args)
    tags = [option(c, "--asr_tag") for c in cmds if c[0] == "./asr.sh"]
    assert sorted(set(tags)) == [
        "ablation_conformer_6x72_seed3",
        "ablation_tie_2x3_132_seed3",
    ]
    # only the rows asked for, with the seed asked for, or none at all
    cmds = dry_run(recipe, "--rows", "tie_2x3_132", "--third_seed", "9", *args)
    assert {option(c, "--asr_tag") for c in cmds if c[0] == "./asr.sh"} == {
        "ablation_tie_2x3_132_seed9"
    }
    cmds = dry_run(recipe, *rows, "--third_seed", "", *args)
    assert not [c for c in cmds if c[0] == "./asr.sh"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--seeds", "1 two"], "--seeds takes integers"),
        (["--jobs", "0"], "--jobs must be at least 1"),
        (["--third_seed", "three"], "--third_seed takes an integer or nothing"),
        (["--rows", "no_such_row"], "no config conf/ablation/no_such_row.yaml"),
        (
            ["--acoustic_config", "conf/missing.yaml"],
            "no decoding config conf/missing.yaml",
        ),
    ],
)
def test_bad_options_exit_2_naming_them(
    tmp_path: Path, args: List[str], message: str
) -> None:
    done = subprocess.run(
        ["bash", "local/ablation.sh", "--dry_run", "true", *args],
        cwd=copy_recipe(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert message in done.stderr


def test_rows_change_only_the_encoder_of_the_main_jobs_config() -> None:
    """A row is conf/train_asr.yaml with another encoder; the deep rows
    (deep_*) may also change the schedule and add intermediate CTC, and the
    diagnosis configs (diag_*) stop early too."""
    import yaml

    main = yaml.safe_load((RECIPE_DIR / "conf" / "train_asr.yaml").read_text())
    rows = sorted((RECIPE_DIR / "conf" / "ablation").glob("*.yaml"))
    assert rows
    for path in rows:
        row = yaml.safe_load(path.read_text())
        free = {"encoder", "encoder_conf"}
        if path.name.startswith(("deep_", "diag_")):
            free |= {"scheduler_conf"}
        if path.name.startswith("diag_"):
            free |= {"max_epoch"}
        if path.name.startswith(("deep_", "diag_")):
            # intermediate CTC: a loss term on a virtual layer, nothing else
            inter = row.get("model_conf", {}).pop("interctc_weight", 0.0)
            assert (inter > 0) == bool(row["encoder_conf"].get("interctc_layer_idx"))
        differs = {k for k in main.keys() | row.keys() if main.get(k) != row.get(k)}
        assert differs <= free, f"{path.name} changes {sorted(differs - free)}"


def test_a_row_named_twice_runs_once(tmp_path: Path) -> None:
    cmds = dry_run(
        copy_recipe(tmp_path), "--rows", "conformer_6x48 conformer_6x48", "--seeds", "1"
    )
    trainings = [c for c in cmds if c[0] == "./asr.sh" and option(c, "--stage") == "11"]
    assert len(trainings) == 1


def test_the_grid_spends_one_budget_and_its_upper_bound_more() -> None:
    """ablation.sh's grid rows: every row but the unshared upper bound holds
    0.84-0.91M parameters (within 8% of each other)."""
    from espnet_shared_conformer.params import ParameterReport

    script = (RECIPE_DIR / "local" / "ablation.sh").read_text()
    grid = shlex.split(script.split("\ngrid_rows=", 1)[1].split("#", 1)[0])[0].split()
    upper = grid[-1]
    assert upper == "conformer_6x144"
    for row in grid:
        path = RECIPE_DIR / "conf" / "ablation" / f"{row}.yaml"
        report = ParameterReport.from_config(str(path), vocab_size=31)  # 31 characters
        if row == upper:
            assert report.total == report.total_virtual > 3 * 0.91e6
        else:
            assert 0.84e6 <= report.total <= 0.91e6, (row, report.total)


def test_the_report_compares_each_budget_with_its_own_plain_rows(
    tmp_path: Path,
) -> None:
    """The report's questions name plain rows of the same group and the shared
    upper bound; a row renamed in one list but not the other would silently
    drop the comparison."""
    import yaml

    cmds = dry_run(copy_recipe(tmp_path), "--stage", "3", "--peers", "")
    [cmd] = [c for c in cmds if c[:2] == ["python3", "local/ablation_report.py"]]
    grid, default = option(cmd, "--grid").split(), option(cmd, "--default").split()
    plain, default_plain = (
        option(cmd, "--plain").split(),
        option(cmd, "--default_plain").split(),
    )
    upper = option(cmd, "--upper")
    assert plain and set(plain) < set(grid) and upper == grid[-1] not in plain
    assert upper in option(cmd, "--capacity").split()
    assert default_plain and set(default_plain) < set(default)
    for row in plain + default_plain + [upper]:
        config = yaml.safe_load((RECIPE_DIR / f"conf/ablation/{row}.yaml").read_text())
        assert config["encoder"] == "conformer", row
