"""asr.sh's distributed-training options: checked values, and what ESPnet's
launcher (``python -m espnet2.bin.launch``, run for real) hands on to the
job runner and the training command.

The job runner of cmd.sh is replaced, in a scratch copy of the recipe, by a
script that records its arguments and trains nothing: what is under test is
the command line that reaches it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List

import pytest
from pipeline_helpers import RECIPE_DIR, copy_recipe, run

ASR_SH = RECIPE_DIR / "asr.sh"
REQUIRED = ["--train_set", "tr", "--valid_set", "dv", "--test_sets", "t1"]
NO_STAGE = ["--stage", "16", "--stop_stage", "0"]


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["--dist_backend", "mpi"],
            "--dist_backend must be one of: nccl gloo; got 'mpi'",
        ),
        (["--dist_backend", "nccl", "--ngpu", "0"], "--dist_backend nccl needs GPUs"),
        (
            ["--master_port", "70000"],
            "--master_port must be a TCP port number (1-65535), got '70000'",
        ),
        (["--master_port", "0"], "--master_port must be a TCP port number"),
        (["--master_port", "29x"], "--master_port must be a TCP port number"),
        (
            ["--master_addr", "node 1", "--master_port", "29500"],
            "--master_addr must be a host name or IP address",
        ),
        (["--master_addr", "node1"], "--master_addr needs --master_port"),
    ],
)
def test_bad_launcher_values_exit_2(args, message):
    result = run([ASR_SH, *REQUIRED, *NO_STAGE, *args])

    assert result.returncode == 2
    assert message in result.stderr


def test_good_launcher_values_are_accepted():
    result = run(
        [ASR_SH, *REQUIRED, *NO_STAGE, "--ngpu", "2", "--num_nodes", "2",
         "--dist_backend", "gloo", "--master_addr", "10.0.0.1", "--master_port", "29500"]
    )  # fmt: skip

    assert result.returncode == 0, result.stderr


RECORDER = """#!/usr/bin/env bash
# Records the arguments ESPnet's launcher gives the job runner.
printf '%s\\n' "$@" >"$(dirname "$0")/../../recorded_args"
"""


@pytest.fixture
def recipe(tmp_path) -> Path:
    """A scratch recipe whose stage 11 can start (its inputs' markers exist)
    and whose GPU job runner records instead of running."""
    copy_recipe(tmp_path)
    for marker in (
        "exp/asr_stats_raw_en_char/.done",
        "dump/raw/tr/.done",
        "dump/raw/dv/.done",
        "data/en_token_list/char/.done",
    ):
        (tmp_path / marker).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / marker).write_text("fingerprint\n")
    # ESPnet's launcher picks its multi-node path by the runner's name.
    for name in ("run_one.sh", "slurm.pl"):
        (tmp_path / "scripts" / "utils" / name).unlink(missing_ok=True)
        (tmp_path / "scripts" / "utils" / name).write_text(RECORDER)
        (tmp_path / "scripts" / "utils" / name).chmod(0o755)
    return tmp_path


def _stage11(recipe: Path, runner: str, *args: str) -> List[str]:
    """Run stage 11 with ``runner`` as cmd.sh's cuda_cmd; return what the
    runner got."""
    (recipe / "cmd.sh").write_text(
        f"# shellcheck shell=bash disable=SC2034\ntrain_cmd=scripts/utils/run_job.sh\n"
        f"cuda_cmd=scripts/utils/{runner}\ndecode_cmd=scripts/utils/run_job.sh\n"
    )
    result = run(
        [recipe / "asr.sh", *REQUIRED, "--token_type", "char",
         "--asr_config", "conf/train_asr_debug.yaml", "--stage", "11", "--stop_stage", "11",
         *args]
    )  # fmt: skip
    # Nothing trained, so stage 11 fails after the launcher has run.
    assert "training wrote no" in result.stderr, result.stderr[-3000:]
    return (recipe / "recorded_args").read_text().splitlines()


def _training_options(argv: List[str]) -> Dict[str, str]:
    """The training command's options as its parser sees them (the last of a
    repeated option wins)."""
    start = argv.index("espnet_shared_conformer.bin.asr_train") + 1
    options = {}
    for name, value in zip(argv[start:-1], argv[start + 1 :], strict=True):
        if name.startswith("--"):
            options[name] = value
    return options


def test_one_node_cpu(recipe):
    argv = _stage11(recipe, "run_one.sh", "--ngpu", "0", "--master_port", "29533")

    assert argv[:4] == ["--name", "asr_train", "--gpu", "0"]
    options = _training_options(argv)
    assert options["--ngpu"] == "0"
    assert options["--dist_backend"] == "gloo"
    # The launcher drops its --master_port on one node; asr.sh hands it to
    # ESPnet's multi-GPU mode directly.
    assert options["--dist_master_port"] == "29533"


def test_two_nodes_through_slurm(recipe):
    argv = _stage11(
        recipe, "slurm.pl", "--ngpu", "2", "--num_nodes", "2", "--dist_backend", "nccl",
        "--master_addr", "node1", "--master_port", "29533",
    )  # fmt: skip

    assert argv[argv.index("--num_nodes") + 1] == "2"
    assert "srun" in argv
    options = _training_options(argv)
    assert options["--ngpu"] == "2"
    assert options["--dist_launcher"] == "slurm"
    assert options["--dist_backend"] == "nccl"
    assert options["--dist_master_addr"] == "node1"
    assert options["--dist_master_port"] == "29533"


def test_two_cpu_nodes_meet_through_a_file(recipe):
    argv = _stage11(recipe, "slurm.pl", "--ngpu", "0", "--num_nodes", "2")

    options = _training_options(argv)
    assert options["--dist_backend"] == "gloo"
    assert options["--dist_init_method"].startswith(
        f"file://{recipe}/exp/asr_train_asr_debug_raw_en_char/.dist_init_"
    )
    assert "--dist_master_port" not in options
