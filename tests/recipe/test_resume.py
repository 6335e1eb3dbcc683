"""Stage 11 stopped and started again: it resumes from the last completed
epoch and ends where an uninterrupted run ends; a training never outlives its
recipe, never shares its directory with a second one, and never resumes from
other inputs than it started with.

Real ESPnet training of the debug model (3 epochs of 24 one-utterance
batches) on a tiny data set that stages 3-10 prepare once for the module.
About two minutes on two cores, most of it ESPnet starting up.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional

import numpy as np
import pytest
import soundfile
import torch
import yaml
from pipeline_helpers import RECIPE_DIR, copy_recipe, write_data_dir

from espnet_shared_conformer.training import lock_holder

EPOCHS = 3
N_TRAIN = 16
CONFIG = "conf/train_resume.yaml"
OPTS = [
    "--train_set", "train", "--valid_set", "dev", "--test_sets", "test",
    "--asr_config", CONFIG, "--token_type", "char",
    "--speed_perturb_factors", "", "--use_lm", "false", "--use_word_lm", "false",
    "--nj", "1", "--ngpu", "0",
]  # fmt: skip
# A training that would run for long: these tests stop it themselves.
ENDLESS = ["--asr_args", "--max_epoch 100"]
WORDS = "THE CAT SAT ON A MAT AND SANG OF RAIN IN SPAIN".split()


def _env() -> Dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    # One thread per process: on a shared CPU, more only slows every process.
    env["OMP_NUM_THREADS"] = "1"
    return env


def _write_audio(path: Path, rng: np.random.Generator) -> None:
    # Noise under a tone: every mel bin varies, so global MVN stays finite.
    n = int(16000 * rng.uniform(0.8, 1.4))
    t = np.arange(n) / 16000
    wave = 0.05 * rng.standard_normal(n) + 0.3 * np.sin(
        2 * np.pi * rng.uniform(200, 900) * t
    )
    soundfile.write(str(path), wave, 16000, subtype="PCM_16")


def _data_dir(root: Path, name: str, n: int, rng: np.random.Generator) -> None:
    wav, text = {}, {}
    for i in range(n):
        utt = f"spk{i % 3}-{name}{i:03d}"
        path = root / "audio" / f"{utt}.wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        _write_audio(path, rng)
        wav[utt] = str(path)
        text[utt] = " ".join(rng.choice(WORDS, size=3))
    write_data_dir(root / "data" / name, wav, text)


@pytest.fixture(scope="module")
def recipe(tmp_path_factory) -> Iterator[Path]:
    """A scratch copy of the recipe with stages 3-10 done on a tiny data set
    and a 3-epoch copy of the debug config."""
    root = copy_recipe(tmp_path_factory.mktemp("resume"))
    config = yaml.safe_load((RECIPE_DIR / "conf" / "train_asr_debug.yaml").read_text())
    # One utterance a batch: enough steps an epoch to stop it in the middle.
    config.update(max_epoch=EPOCHS, batch_type="unsorted", batch_size=1, log_interval=1)
    config.update(use_matplotlib=False)  # plots cost seconds an epoch
    (root / CONFIG).write_text(yaml.safe_dump(config))
    rng = np.random.default_rng(0)
    _data_dir(root, "train", N_TRAIN, rng)
    _data_dir(root, "dev", 3, rng)
    _data_dir(root, "test", 1, rng)
    result = subprocess.run(
        ["./run.sh", *OPTS, "--stage", "3", "--stop_stage", "10"],
        cwd=root, env=_env(), capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    yield root
    # A test that failed half-way leaves no training behind.
    for run in _STARTED:
        if run.proc.poll() is None:
            os.killpg(run.proc.pid, signal.SIGKILL)
            run.proc.wait()


def _default_signals() -> None:
    """Give run.sh the signal dispositions of a terminal's shell.

    A process started in the background of a non-interactive shell, or under
    nohup, as CI runners may start the test suite, inherits SIGINT (and
    SIGHUP) ignored, and bash cannot trap a signal that was ignored when it
    started: the tests would then see run.sh go on training.
    """
    for signum in (signal.SIGINT, signal.SIGHUP, signal.SIGTERM):
        signal.signal(signum, signal.SIG_DFL)


class Run:
    """``./run.sh --stage 11`` in the background, in its own session (its PID
    is its process group), as a user starts it from a terminal."""

    def __init__(self, recipe: Path, tag: str, *extra: str) -> None:
        self.exp = recipe / "exp" / f"asr_{tag}"
        self.out = recipe / f"run_{tag}_{time.monotonic_ns()}.log"
        with self.out.open("w") as out:
            self.proc = subprocess.Popen(
                ["./run.sh", *OPTS, "--asr_tag", tag, "--stage", "11", "--stop_stage", "11", *extra],
                cwd=recipe, env=_env(), stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True, preexec_fn=_default_signals,
            )  # fmt: skip
        _STARTED.append(self)

    def output(self) -> str:
        return self.out.read_text()

    def wait_for(
        self, what: str, ready: Callable[[], bool], timeout: float = 240
    ) -> None:
        deadline = time.monotonic() + timeout
        while not ready():
            if self.proc.poll() is not None:
                pytest.fail(
                    f"run.sh ended (code {self.proc.returncode}) before {what}:\n{self.output()[-3000:]}"
                )
            if time.monotonic() > deadline:
                os.killpg(self.proc.pid, signal.SIGKILL)
                pytest.fail(f"no {what} after {timeout} s:\n{self.output()[-3000:]}")
            time.sleep(0.02)

    def wait_for_batch(self, epoch: int, batch: int) -> None:
        """Wait until ESPnet has logged training batch ``batch`` of ``epoch``."""
        pattern = re.compile(rf"\b{epoch}epoch:train:\d+-(\d+)batch:")

        def reached() -> bool:
            log = self.exp / "train.log"
            text = log.read_text() if log.exists() else ""
            return any(int(m) >= batch for m in pattern.findall(text))

        self.wait_for(f"epoch {epoch} batch {batch}", reached)

    def finish(self, timeout: float = 300) -> int:
        return self.proc.wait(timeout=timeout)


_STARTED: List[Run] = []


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie waiting to be reaped does not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


def _parent(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def _cmdline(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_text().replace("\0", " ")


def _training_pid(exp: Path) -> Optional[int]:
    holder = lock_holder(exp)
    return int(holder.split()[0]) if holder else None


def _assert_training_stops(exp: Path, pid: int) -> None:
    """The training process ``pid`` ends and nothing holds ``exp``'s lock."""
    deadline = time.monotonic() + 20
    while (_alive(pid) or lock_holder(exp)) and time.monotonic() < deadline:
        time.sleep(0.1)
    survivor = _alive(pid)
    if survivor:
        os.kill(pid, signal.SIGKILL)
    assert not survivor, f"training PID {pid} outlived its recipe"
    assert lock_holder(exp) is None


def _checkpoint(exp: Path) -> dict:
    return torch.load(exp / "checkpoint.pth", map_location="cpu", weights_only=False)


def _weights(exp: Path) -> Dict[str, torch.Tensor]:
    return torch.load(exp / f"{EPOCHS}epoch.pth", map_location="cpu")


def _progress(checkpoint: dict) -> Dict[str, int]:
    """Epochs completed and optimizer steps taken, three ways ESPnet counts them."""
    reporter = checkpoint["reporter"]
    epoch = reporter["epoch"]
    adam_steps = {int(s["step"]) for s in checkpoint["optimizers"][0]["state"].values()}
    assert len(adam_steps) == 1, adam_steps
    return {
        "epoch": epoch,
        "iterations": reporter["stats"][epoch]["train"]["total_count"],
        "optimizer_steps": adam_steps.pop(),
        "scheduler_steps": checkpoint["schedulers"][0]["last_epoch"],
    }


def _started_epochs(train_log: Path) -> list[int]:
    return [
        int(e)
        for e in re.findall(rf"\b(\d+)/{EPOCHS}epoch started", train_log.read_text())
    ]


def test_killed_training_resumes_and_ends_as_an_uninterrupted_one(recipe):
    # 1. kill -9 of run.sh's whole process group in the middle of epoch 2.
    first = Run(recipe, "killed")
    first.wait_for_batch(epoch=2, batch=3)
    pid = _training_pid(first.exp)
    os.killpg(first.proc.pid, signal.SIGKILL)
    assert first.finish() == -signal.SIGKILL
    _assert_training_stops(first.exp, pid)
    assert _progress(_checkpoint(first.exp))["epoch"] == 1

    # 2. The same command resumes at epoch 2; Ctrl-C's SIGINT, sent to run.sh
    # alone, stops it in the middle of epoch 3.
    second = Run(recipe, "killed")
    second.wait_for_batch(epoch=3, batch=3)
    pid = _training_pid(second.exp)
    os.kill(second.proc.pid, signal.SIGINT)
    assert second.finish() == 128 + signal.SIGINT
    _assert_training_stops(second.exp, pid)
    assert "The training was resumed" in (second.exp / "train.log").read_text()
    assert _started_epochs(second.exp / "train.log") == [2, 3]
    assert _progress(_checkpoint(second.exp))["epoch"] == 2

    # 3. Started once more, it trains epoch 3 only.
    third = Run(recipe, "killed")
    assert third.finish() == 0, third.output()[-3000:]
    assert _started_epochs(third.exp / "train.log") == [3]
    assert (third.exp / "valid.acc.ave.pth").exists()

    # It ends where an uninterrupted run ends: as many optimizer steps, and
    # (each epoch starting from the state the previous one left; same seeds,
    # one thread) the same weights.
    reference = Run(recipe, "uninterrupted")
    assert reference.finish() == 0, reference.output()[-3000:]
    expected = _progress(_checkpoint(reference.exp))
    assert expected["epoch"] == EPOCHS
    assert expected["optimizer_steps"] == EPOCHS * N_TRAIN
    assert _progress(_checkpoint(third.exp)) == expected
    final, reference_final = _weights(third.exp), _weights(reference.exp)
    assert final.keys() == reference_final.keys()
    for name, value in final.items():
        assert torch.allclose(value, reference_final[name], rtol=1e-5, atol=1e-6), name


def test_second_training_refuses_and_a_dead_runner_stops_training(recipe):
    run = Run(recipe, "locked", *ENDLESS)
    run.wait_for("the first checkpoint", lambda: (run.exp / "checkpoint.pth").exists())
    pid = _training_pid(run.exp)
    assert pid is not None and _alive(pid)

    # A second run of the same directory names the PID and touches nothing:
    # the launcher would otherwise have moved the live training's log aside.
    second = Run(recipe, "locked", *ENDLESS)
    assert second.finish(timeout=60) != 0
    assert f"being trained by PID {pid}" in second.output()
    assert not (run.exp / "train.1.log").exists()
    # ESPnet's training itself refuses too (a start that bypasses asr.sh).
    direct = subprocess.run(
        [sys.executable, "-m", "espnet_shared_conformer.bin.asr_train",
         "--output_dir", str(run.exp), "--dry_run", "true", "--config", str(recipe / CONFIG)],
        env=_env(), capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert direct.returncode == 1
    assert f"being trained by PID {pid}" in direct.stderr

    # The job runner that ESPnet's launcher started, killed outright (no
    # trap can run): the parent-death signal stops the training.
    runner = _parent(pid)
    while "espnet2.bin.launch" not in _cmdline(_parent(runner)):
        runner = _parent(runner)
    assert "run_job.sh" in _cmdline(runner)
    os.kill(runner, signal.SIGKILL)
    _assert_training_stops(run.exp, pid)
    assert run.finish() != 0


def test_hangup_stops_the_training(recipe):
    # A dropped SSH session: SIGHUP to run.sh; asr.sh passes it on.
    run = Run(recipe, "hangup", *ENDLESS)
    run.wait_for("the first checkpoint", lambda: (run.exp / "checkpoint.pth").exists())
    pid = _training_pid(run.exp)
    os.kill(run.proc.pid, signal.SIGHUP)
    assert run.finish() == 128 + signal.SIGHUP
    _assert_training_stops(run.exp, pid)

    # Then the inputs change under the stopped run: stage 11 refuses to
    # resume it, says what changed and how to start afresh.
    config = recipe / CONFIG
    original = config.read_text()
    try:
        config.write_text(original.replace("lr: 0.002", "lr: 0.001"))
        changed = Run(recipe, "hangup", *ENDLESS)
        assert changed.finish(timeout=60) != 0
    finally:
        config.write_text(original)
    out = changed.output()
    assert f"the config {CONFIG}" in out
    assert "rm -r exp/asr_hangup" in out and "--asr_tag" in out
    assert not (run.exp / "train.1.log").exists()  # no training started

    other_args = Run(recipe, "hangup", "--asr_args", "--max_epoch 100 --seed 7")
    assert other_args.finish(timeout=60) != 0
    assert "the options: was --asr_args" in other_args.output()
    assert f"the config {CONFIG}" not in other_args.output()
    assert _progress(_checkpoint(run.exp))["epoch"] >= 1  # kept for a resume
