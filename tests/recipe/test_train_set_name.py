"""run.sh and local/data.sh name the LibriSpeech training set in one place
(local/train_set_name.sh), whichever way --download_subsets is spelled."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from pipeline_helpers import LOCAL_DIR, copy_recipe
from stage1_helpers import make_chapter

HELPER = LOCAL_DIR / "train_set_name.sh"
SPELLINGS = ("train-clean-100 train-clean-360", "train-clean-100,train-clean-360")
EVAL_SETS = ("dev-clean", "dev-other", "test-clean", "test-other")


def _name(subsets: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", "-c", f'. "{HELPER}"; librispeech_train_set "$1"', "-", subsets],
        capture_output=True,
        text=True,
    )


@pytest.mark.parametrize(
    "subsets, name",
    [
        *[(s, "train_clean_100_clean_360") for s in SPELLINGS],
        ("dev-clean, train-clean-100 ,train-clean-360", "train_clean_100_clean_360"),
        ("train-other-500,train-clean-100 train-clean-360 dev-clean", "train_960"),
        ("train-clean-100", "train_clean_100"),
    ],
)
def test_the_name_of_the_training_set(subsets: str, name: str) -> None:
    result = _name(subsets)
    assert (result.returncode, result.stdout) == (0, f"{name}\n")


def test_no_training_subset_is_no_name() -> None:
    assert (_name("dev-clean,test-clean").returncode, _name("").stdout) == (1, "")


@pytest.mark.parametrize("spelling", SPELLINGS, ids=("spaces", "commas"))
def test_stage_3_finds_the_directory_stage_1_wrote(
    tmp_path: Path, spelling: str
) -> None:
    """./run.sh --stage 1 --stop_stage 3 on a tiny LibriSpeech copy: data.sh
    writes the training set under the name asr.sh's stage 3 then reads."""
    recipe = copy_recipe(tmp_path / "recipe")
    corpus = tmp_path / "corpus"
    for i, subset in enumerate(spelling.replace(",", " ").split() + list(EVAL_SETS)):
        words = {"0000": "A FINE DAY", "0001": "NORTHANGER ABBEY"}
        make_chapter(corpus / "LibriSpeech" / subset, str(100 + i), "10", words)
    # The copy's path.sh cannot find the repository's .venv: put this
    # interpreter's first on PATH.
    env = {k: v for k, v in os.environ.items() if k != "PYTHON"}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    result = subprocess.run(
        [
            "./run.sh",
            "--corpus",
            "librispeech",
            "--librispeech_root",
            str(corpus),
            "--download",
            "false",
            "--download_subsets",
            f"{spelling} {' '.join(EVAL_SETS)}",
            "--speed_perturb_factors",
            "",
            "--nj",
            "1",
            "--stage",
            "1",
            "--stop_stage",
            "3",
        ],
        cwd=recipe,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert (recipe / "data" / "train_clean_100_clean_360" / "wav.scp").is_file()
    dumped = recipe / "dump" / "raw" / "org" / "train_clean_100_clean_360"
    assert len((dumped / "wav.scp").read_text().splitlines()) == 4
