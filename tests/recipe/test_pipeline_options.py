"""Command lines of run.sh, asr.sh and the job runner: --help, bad options."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
from pipeline_helpers import RECIPE_DIR, run

ASR_SH = RECIPE_DIR / "asr.sh"
RUN_SH = RECIPE_DIR / "run.sh"
RUN_JOB = RECIPE_DIR / "scripts" / "utils" / "run_job.sh"
REQUIRED = ["--train_set", "tr", "--valid_set", "dv", "--test_sets", "t1 t2"]
# What ESPnet users expect asr.sh to take, and the data roots run.sh takes.
EXPECTED_ASR = """stage stop_stage nj inference_nj ngpu num_nodes train_set valid_set test_sets
    asr_config inference_config asr_args inference_args inference_asr_model token_type
    nbpe bpemode speed_perturb_factors feats_type audio_format min_wav_duration
    max_wav_duration use_lm lm_config use_word_lm word_lm_order expdir dumpdir python""".split()
EXPECTED_RUN = "corpus librispeech_root download download_subsets mini_root mini_hours seed".split()


def declared(script) -> list[str]:
    block = script.read_text().split("# >>> options")[1].split("# <<< options")[0]
    return re.findall(r"^([a-z_][a-z_0-9]*)=", block, flags=re.M)


def test_asr_help_lists_every_option_with_its_help():
    result = run([ASR_SH, "--help"])

    assert result.returncode == 0
    names = declared(ASR_SH)
    assert set(EXPECTED_ASR) <= set(names)
    for name in names:
        line = re.search(rf"^  --{name} +(\S.*)$", result.stdout, flags=re.M)
        assert line, name
        assert "(default: " in line.group(1)


def test_run_help_lists_corpus_and_stage_options():
    result = run([RUN_SH, "--help"])

    assert result.returncode == 0
    assert set(EXPECTED_RUN) <= set(declared(RUN_SH))
    for name in [*EXPECTED_RUN, *EXPECTED_ASR]:
        assert re.search(rf"^  --{name} ", result.stdout, flags=re.M), name


@pytest.mark.parametrize("script", [ASR_SH, RUN_SH])
def test_unknown_option_exits_2(script):
    result = run([script, *REQUIRED, "--no_such_option", "1"])

    assert result.returncode == 2
    assert "--no_such_option" in result.stderr


@pytest.mark.parametrize("script", [ASR_SH, RUN_SH])
@pytest.mark.parametrize(
    "args",
    [["--stage"], ["--nj", "--stage", "3"]],
    ids=["at-end", "followed-by-option"],
)
def test_missing_value_exits_2(script, args):
    result = run([script, *REQUIRED, *args])

    assert result.returncode == 2
    assert "needs a value" in result.stderr


@pytest.mark.parametrize(
    "args,message",
    [
        (["--nj", "two"], "--nj must be a non-negative integer"),
        (["--feats_type", "mfcc"], "--feats_type must be one of: raw fbank"),
        (["--token_type", "word"], "--token_type must be one of: bpe char"),
        (["--use_lm", "yes"], "--use_lm must be one of: true false"),
        (
            ["--use_word_lm", "true", "--token_type", "bpe"],
            "--use_word_lm true spells words in characters: it needs --token_type char",
        ),
        (
            ["--use_word_lm", "true", "--token_type", "char", "--use_lm", "true"],
            "--use_lm true and --use_word_lm true",
        ),
        (["--word_lm_order", "1"], "--word_lm_order must be at least 2"),
        (["stray"], "unexpected argument 'stray'"),
    ],
)
def test_bad_values_exit_2(args, message):
    result = run([ASR_SH, *REQUIRED, *args])

    assert result.returncode == 2
    assert message in result.stderr


def test_required_sets_are_checked():
    result = run([ASR_SH, "--valid_set", "dv", "--test_sets", "t"])

    assert result.returncode == 2
    assert "--train_set is required" in result.stderr


def test_run_rejects_unknown_corpus():
    result = run([RUN_SH, "--corpus", "timit"])

    assert result.returncode == 2
    assert "--corpus must be one of: mini librispeech" in result.stderr


def test_option_strings_pass_as_values_and_no_stage_runs(tmp_path):
    # *_args values look like options; --stage past --stop_stage runs nothing.
    result = run(
        [
            ASR_SH,
            *REQUIRED,
            "--asr_args",
            "--max_epoch 1",
            "--inference_args=--beam_size 2",
            "--expdir",
            tmp_path / "exp",
            "--stage",
            "16",
            "--stop_stage",
            "0",
        ]
    )

    assert result.returncode == 0, result.stderr
    assert "Successfully finished" in result.stderr
    assert not (tmp_path / "exp").exists()


def test_run_job_array_substitutes_job_and_logs(tmp_path):
    result = run(
        [
            RUN_JOB,
            "JOB=1:3",
            tmp_path / "log.JOB.txt",
            "bash",
            "-c",
            "echo job JOB > $0",
            tmp_path / "out.JOB",
        ]
    )

    assert result.returncode == 0, result.stderr
    for n in (1, 2, 3):
        assert (tmp_path / f"out.{n}").read_text() == f"job {n}\n"
        log = (tmp_path / f"log.{n}.txt").read_text()
        assert log.startswith("# bash -c")
        assert "# Ended (code 0)" in log


def test_run_job_reports_failed_jobs(tmp_path):
    result = run(
        [
            RUN_JOB,
            "--gpu",
            "0",
            "JOB=1:2",
            tmp_path / "l.JOB",
            "bash",
            "-c",
            "exit $((JOB - 1))",
        ]
    )

    assert result.returncode == 1
    assert "1 of 2 jobs failed" in result.stderr
    assert str(tmp_path / "l.2") in result.stderr
    assert "# Ended (code 1)" in (tmp_path / "l.2").read_text()


def test_run_job_refuses_multi_node(tmp_path):
    # ESPnet's launcher asks the cmd for --num_nodes N; this runner has one machine.
    result = run([RUN_JOB, "--gpu", "1", "--num_nodes", "2", tmp_path / "log", "true"])

    assert result.returncode == 2
    assert "cmd.sh" in result.stderr
    assert not (tmp_path / "log").exists()


def test_killing_run_job_stops_its_commands(tmp_path):
    # A scheduler or asr.sh's own clean-up sends SIGTERM to the runner alone;
    # the commands it started must not outlive it.
    script = 'echo $$ > "$0"; exec sleep 60'
    proc = subprocess.Popen(
        [
            str(RUN_JOB),
            "JOB=1:2",
            str(tmp_path / "log.JOB"),
            "bash",
            "-c",
            script,
            str(tmp_path / "pid.JOB"),
        ],
        start_new_session=True,
    )
    pid_files = [tmp_path / "pid.1", tmp_path / "pid.2"]
    deadline = time.monotonic() + 20
    while not all(p.exists() and p.read_text().strip() for p in pid_files):
        assert time.monotonic() < deadline, "jobs did not start"
        time.sleep(0.1)

    proc.terminate()

    assert proc.wait(timeout=20) != 0
    survivors = []
    for p in pid_files:
        pid = int(p.read_text())
        deadline = time.monotonic() + 5
        while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        if Path(f"/proc/{pid}").exists():
            survivors.append(pid)
            os.kill(pid, signal.SIGKILL)
    assert not survivors


def test_log_and_die_name_their_caller(tmp_path):
    """scripts/utils/log.sh, sourced by every script: the line names the
    script, line and function that called log or die; die exits 1."""
    script = tmp_path / "stage.sh"
    script.write_text(
        f". {RECIPE_DIR / 'scripts' / 'utils' / 'log.sh'}\n"
        'work() {\n    log "reading data"\n    die "no data"\n}\nwork\n'
    )
    result = run(["bash", script])
    assert result.returncode == 1
    first, second = result.stderr.splitlines()
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d \(stage\.sh:3:work\) reading data", first
    )
    assert second.endswith(" (stage.sh:4:work) ERROR: no data")
