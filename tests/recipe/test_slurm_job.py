"""The Slurm back end of cmd.sh (scripts/utils/slurm.pl -> scripts/utils/slurm_job.sh).

Slurm cannot run here, so ``sbatch``, ``srun`` and ``scancel`` are small
stand-ins on PATH that record their arguments and do what Slurm would do with
them: sbatch runs the batch script once per array task with the task's output
in the ``--output`` file and exits with the highest task exit code
(``--wait``); srun runs its command once per node with the Slurm variables a
step sets. Everything else is real: the job script, ESPnet's launcher and
ESPnet's own resolution of the distributed mode from Slurm's variables.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

import pytest

RECIPE = Path(__file__).resolve().parents[2] / "egs" / "librispeech" / "asr1"
JOB_ID = "4242"

FAKE_SBATCH = f"""\
#!{sys.executable}
import json, os, subprocess, sys, time

args = sys.argv[1:]
if os.environ.get("FAKE_SBATCH_REFUSE"):
    print("sbatch: error: invalid partition specified", file=sys.stderr)
    sys.exit(1)
print("{JOB_ID}", flush=True)  # --parsable: the job id, at submission
with open(os.environ["FAKE_SLURM_RECORD"], "a") as f:
    f.write(json.dumps(["sbatch"] + args) + "\\n")
if os.environ.get("FAKE_SBATCH_SLEEP"):  # a job that runs until cancelled
    time.sleep(60)
opts = {{}}
while args[0].startswith("--"):
    key, _, value = args.pop(0).partition("=")
    opts[key] = value

def output_name(pattern, task):
    out, i = "", 0
    while i < len(pattern):
        if pattern[i] == "%":
            out += {{"%": "%", "a": str(task), "j": "{JOB_ID}"}}[pattern[i + 1]]
            i += 2
        else:
            out += pattern[i]
            i += 1
    return out

tasks = [None]
if "--array" in opts:
    first, last = opts["--array"].split("%")[0].split("-")
    tasks = range(int(first), int(last) + 1)
worst = 0
for task in tasks:
    env = dict(os.environ, SLURM_JOB_ID="{JOB_ID}")
    env["SLURM_JOB_NUM_NODES"] = opts.get("--nodes", "1")
    if task is not None:
        env["SLURM_ARRAY_TASK_ID"] = str(task)
    if "--cpus-per-task" in opts:
        env["SLURM_CPUS_PER_TASK"] = opts["--cpus-per-task"]
    with open(output_name(opts["--output"], task), "w") as log:
        rc = subprocess.run(["bash"] + args, stdout=log, stderr=log, env=env).returncode
    worst = max(worst, rc)
sys.exit(worst if "--wait" in opts else 0)
"""

FAKE_SRUN = f"""\
#!{sys.executable}
import json, os, subprocess, sys

args = sys.argv[1:]
with open(os.environ["FAKE_SLURM_RECORD"], "a") as f:
    f.write(json.dumps(["srun"] + args) + "\\n")
while args[0].startswith("--"):
    args.pop(0)
nodes = int(os.environ["SLURM_JOB_NUM_NODES"])
step = dict(SLURM_NTASKS=str(nodes), SLURM_STEP_NUM_NODES=str(nodes),
            SLURM_STEP_NODELIST=f"node[1-{{nodes}}]")
tasks = [
    subprocess.Popen(args, env=dict(os.environ, **step, SLURM_PROCID=str(i),
                                    SLURM_NODEID=str(i), SLURM_LOCALID="0"))
    for i in range(nodes)
]
sys.exit(max(task.wait() for task in tasks))
"""

FAKE_SCANCEL = f"""\
#!{sys.executable}
import json, os, sys

with open(os.environ["FAKE_SLURM_RECORD"], "a") as f:
    f.write(json.dumps(["scancel"] + sys.argv[1:]) + "\\n")
"""

# What each node's training process decides from its arguments and Slurm's
# variables, through ESPnet's own code (as espnet2.tasks.abs_task.main does).
PROBE = """\
import argparse

from espnet2.train.distributed_utils import get_node_rank, resolve_distributed_mode
from espnet2.utils.types import str2bool, str_or_none

parser = argparse.ArgumentParser()
parser.add_argument("--ngpu", type=int)
parser.add_argument("--multiprocessing_distributed", type=str2bool)
parser.add_argument("--dist_launcher", type=str_or_none)
parser.add_argument("--dist_init_method")
parser.add_argument("--dist_backend")
parser.add_argument("--dist_world_size", type=int)
parser.add_argument("--dist_rank", type=int)
parser.add_argument("--local_rank", type=int)
args, _ = parser.parse_known_args()
resolve_distributed_mode(args)
print(f"node_rank={get_node_rank(args.dist_rank, args.dist_launcher)}",
      f"distributed={args.distributed}",
      f"spawns_per_gpu={args.multiprocessing_distributed}")
"""


@pytest.fixture
def slurm(tmp_path: Path) -> Dict[str, object]:
    """A PATH with the stand-ins first, and where they record their calls."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in (
        ("sbatch", FAKE_SBATCH),
        ("srun", FAKE_SRUN),
        ("scancel", FAKE_SCANCEL),
    ):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    record = tmp_path / "slurm_calls.jsonl"
    env = dict(
        os.environ,
        PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        FAKE_SLURM_RECORD=str(record),
    )
    return dict(env=env, record=record)


def calls(record: Path) -> List[List[str]]:
    if not record.exists():
        return []
    return [json.loads(line) for line in record.read_text().splitlines()]


def run_job(
    args: List[str], env: Dict[str, str], cmd: str = "scripts/utils/slurm.pl"
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [cmd, *args], cwd=RECIPE, env=env, capture_output=True, text=True, timeout=60
    )


def ended(log: Path) -> Optional[int]:
    """The exit code the log's footer reports."""
    for line in reversed(log.read_text().splitlines()):
        if line.startswith("# Ended (code "):
            return int(line.split("(code ")[1].split(")")[0])
    return None


def test_single_job(slurm, tmp_path: Path) -> None:
    log = tmp_path / "exp%1" / "probe.log"  # "%" is special to Slurm's --output
    result = run_job(
        ["--name", "probe", str(log), "echo", "hello  world"], slurm["env"]
    )
    assert result.returncode == 0, result.stderr
    assert calls(slurm["record"]) == [
        ["sbatch", "--parsable", "--wait", "--export=ALL", "--job-name=probe"]
        + [
            f"--output={tmp_path}/exp%%1/probe.log",
            "scripts/utils/slurm.pl",
            "--batch_task",
        ]
        + ["", "echo", "hello  world"]
    ]
    lines = log.read_text().splitlines()
    assert lines[0] == "# echo hello\\ \\ world"  # the command, shell-quoted
    assert "hello  world" in lines  # one argument: no word splitting
    assert ended(log) == 0


def test_job_array_substitutes_the_task_and_names_failed_logs(slurm, tmp_path) -> None:
    pattern = tmp_path / "logs" / "stats.JOB.log"
    script = "echo task JOB; [ JOB != 2 ]"  # task 2 fails
    result = run_job(
        ["--max_jobs_run", "2", "--mem", "4G", "JOB=1:3", str(pattern), "sh"]
        + ["-c", script],
        slurm["env"],
    )
    assert result.returncode == 1
    failed = tmp_path / "logs" / "stats.2.log"
    assert f"1 of 3 jobs failed (Slurm job {JOB_ID}); see {failed}" in result.stderr
    assert calls(slurm["record"]) == [
        ["sbatch", "--parsable", "--wait", "--export=ALL", "--job-name=stats"]
        + [f"--output={tmp_path}/logs/stats.%a.log", "--array=1-3%2", "--mem=4G"]
        + ["scripts/utils/slurm.pl", "--batch_task", "JOB", "sh", "-c", script]
    ]
    for task in (1, 2, 3):
        log = tmp_path / "logs" / f"stats.{task}.log"
        assert f"task {task}" in log.read_text().splitlines()
        assert ended(log) == (1 if task == 2 else 0)


def launch(slurm, exp: Path, ngpu: int, num_nodes: int, train: List[str]) -> None:
    """ESPnet's launcher with the Slurm back end, as stage 11 calls it."""
    result = subprocess.run(
        [sys.executable, "-m", "espnet2.bin.launch"]
        + [
            "--cmd",
            "scripts/utils/slurm.pl --name asr_train",
            "--log",
            f"{exp}/train.log",
        ]
        + ["--ngpu", str(ngpu), "--num_nodes", str(num_nodes), "--init_file_prefix"]
        + [f"{exp}/.dist_init_", "--multiprocessing_distributed", "true", "--", *train],
        cwd=RECIPE,
        env=slurm["env"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]


def test_two_node_gpu_training_through_espnets_launcher(slurm, tmp_path) -> None:
    """Stage 11's launcher call with --ngpu 8 --num_nodes 2, as asr.sh makes it."""
    exp = tmp_path / "exp"
    exp.mkdir()
    probe = tmp_path / "probe.py"
    probe.write_text(PROBE)
    train = [sys.executable, str(probe), "--output_dir", str(exp)]
    launch(slurm, exp, 8, 2, train)
    (sbatch, srun) = calls(slurm["record"])
    # The launcher's own options, then the one that says how ranks meet: a file
    # on the shared file system, named at random.
    init = srun[-1]
    assert srun[-2] == "--dist_init_method"
    assert init.startswith(f"file://{exp}/.dist_init_")
    espnet = ["--ngpu", "8", "--multiprocessing_distributed", "true"]
    espnet += ["--dist_launcher", "slurm", "--dist_init_method", init]
    assert srun == ["srun", "--export=ALL", *train, *espnet]
    assert sbatch == (
        ["sbatch", "--parsable", "--wait", "--export=ALL", "--job-name=asr_train"]
        + [f"--output={exp}/train.log", "--gres=gpu:8", "--cpus-per-task=8"]
        + [
            "--nodes=2",
            "--ntasks-per-node=1",
            "scripts/utils/slurm.pl",
            "--batch_task",
            "",
        ]
        + srun
    )
    # One task per node, each told its node rank by Slurm; each spawns one
    # process per GPU (ESPnet's multiprocessing-distributed mode).
    text = (exp / "train.log").read_text()
    for node in (0, 1):
        assert f"node_rank={node} distributed=True spawns_per_gpu=True" in text
    assert ended(exp / "train.log") == 0


def test_one_node_four_gpus_through_espnets_launcher(slurm, tmp_path) -> None:
    """Stage 11 with --ngpu 4 on one node: one task that spawns 4 processes."""
    exp = tmp_path / "exp"
    exp.mkdir()
    train = [sys.executable, "-c", "import sys; print(sys.argv[1:])"]
    launch(slurm, exp, 4, 1, train)
    espnet = ["--ngpu", "4", "--multiprocessing_distributed", "True"]
    assert calls(slurm["record"]) == [
        ["sbatch", "--parsable", "--wait", "--export=ALL", "--job-name=asr_train"]
        # One core per GPU process when cmd.sh asks for no number.
        + [f"--output={exp}/train.log", "--gres=gpu:4", "--cpus-per-task=4"]
        + ["scripts/utils/slurm.pl", "--batch_task", "", *train, *espnet]
    ]
    assert str(espnet) in (exp / "train.log").read_text()


def test_launcher_under_another_name_is_refused(slurm, tmp_path) -> None:
    """Named other than slurm.pl, the launcher would run mpirun: refuse clearly."""
    result = subprocess.run(
        [sys.executable, "-m", "espnet2.bin.launch"]
        + ["--cmd", "scripts/utils/slurm_job.sh", "--log", f"{tmp_path}/train.log"]
        + ["--ngpu", "1", "--num_nodes", "2", "--", "true"],
        cwd=RECIPE,
        env=slurm["env"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert "its --cmd is named slurm.pl" in result.stderr
    assert calls(slurm["record"]) == []


@pytest.mark.parametrize(
    "args, message",
    [
        (["--gpu", "x", "LOG", "true"], "--gpu needs a whole number >= 0, got 'x'"),
        (["--num_nodes", "0", "LOG", "true"], "--num_nodes needs a whole number >= 1"),
        (["--num_threads", "-2", "LOG", "true"], "got '-2'"),
        (["--frobnicate", "1", "LOG", "true"], "unknown option --frobnicate"),
        (["--config", "conf/slurm.conf", "LOG", "true"], "reads no Kaldi slurm.conf"),
        (["JOB=3:1", "LOG", "true"], "empty job range JOB=3:1"),
        (["LOG"], "usage:"),
        (["--gpu"], "--gpu needs a value"),
    ],
)
def test_bad_options_exit_2_before_anything_runs(slurm, tmp_path, args, message):
    log = str(tmp_path / "logs" / "x.log")
    result = run_job([log if a == "LOG" else a for a in args], slurm["env"])
    assert result.returncode == 2
    assert message in result.stderr
    assert calls(slurm["record"]) == []
    assert not (tmp_path / "logs").exists()


def test_without_slurm_it_says_so(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"  # bash and what the script needs, no Slurm
    bin_dir.mkdir()
    for tool in ("bash", "env", "basename"):
        (bin_dir / tool).symlink_to(
            subprocess.check_output(["which", tool], text=True).strip()
        )
    result = run_job(
        [str(tmp_path / "x.log"), "true"], dict(os.environ, PATH=str(bin_dir))
    )
    assert result.returncode == 2
    assert "sbatch not found" in result.stderr
    assert "cmd_backend=local" in result.stderr


def test_refused_submission_is_an_error(slurm, tmp_path: Path) -> None:
    env = dict(slurm["env"], FAKE_SBATCH_REFUSE="1")
    result = run_job([str(tmp_path / "x.log"), "true"], env)
    assert result.returncode == 1
    assert "invalid partition" in result.stderr  # sbatch's own message ...
    assert "sbatch did not accept the job (exit code 1); nothing ran" in result.stderr


def test_stopping_it_cancels_the_job(slurm, tmp_path: Path) -> None:
    env = dict(slurm["env"], FAKE_SBATCH_SLEEP="1")
    process = subprocess.Popen(
        ["scripts/utils/slurm.pl", str(tmp_path / "x.log"), "true"],
        cwd=RECIPE,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 30
    while not calls(slurm["record"]) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert calls(slurm["record"]), "sbatch was never called"
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=30)
    assert process.returncode == 130
    assert f"cancelling Slurm job {JOB_ID}" in err
    assert calls(slurm["record"])[-1] == ["scancel", JOB_ID]


def test_cmd_sh_picks_the_back_end() -> None:
    def source(backend: Optional[str]) -> subprocess.CompletedProcess:
        env = dict(os.environ)
        env.pop("cmd_backend", None)
        if backend is not None:
            env["cmd_backend"] = backend
        script = '. ./cmd.sh && echo "${train_cmd}|${cuda_cmd}|${decode_cmd}"'
        return subprocess.run(
            ["bash", "-c", script],
            cwd=RECIPE,
            env=env,
            capture_output=True,
            text=True,
        )

    local = "scripts/utils/run_job.sh"
    assert source(None).stdout.strip() == f"{local}|{local}|{local}"
    assert (
        source("slurm").stdout.strip()
        == "scripts/utils/slurm.pl|scripts/utils/slurm.pl|scripts/utils/slurm.pl"
    )
    bad = source("pbs")
    assert bad.returncode == 2
    assert "unknown cmd_backend 'pbs' (local or slurm)" in bad.stderr
