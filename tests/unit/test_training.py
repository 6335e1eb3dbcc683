"""The training wrapper's safety parts: the experiment directory's lock, the
parent-death signal and atomic checkpoints, the last through ESPnet's own
trainer in a real (tiny) training."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
import yaml

from espnet_shared_conformer import training


def _wait_for_file(path: Path, timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    while not (path.exists() and path.read_text().strip()):
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.02)
    return path.read_text().strip()


def _gone(pid: int, timeout: float = 10) -> bool:
    """Whether ``pid`` ends (or is a zombie) within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except FileNotFoundError:
            return True
        if stat.rsplit(")", 1)[1].split()[0] == "Z":
            return True
        time.sleep(0.05)
    return False


# ------------------------------------------------------------------ lock


def _hold_lock_in_child(directory: Path, ready: Path) -> subprocess.Popen:
    code = textwrap.dedent(f"""
        import pathlib, time
        from espnet_shared_conformer import training
        lock = training.lock_output_dir({str(directory)!r})
        pathlib.Path({str(ready)!r}).write_text("held")
        time.sleep(60)
    """)
    return subprocess.Popen([sys.executable, "-c", code])


def test_second_lock_is_refused_naming_the_holder(tmp_path):
    holder = _hold_lock_in_child(tmp_path / "exp", tmp_path / "ready")
    try:
        _wait_for_file(tmp_path / "ready")
        with pytest.raises(training.TrainingLockedError, match=f"PID {holder.pid} on "):
            training.lock_output_dir(tmp_path / "exp")
        assert training.lock_holder(tmp_path / "exp").split()[0] == str(holder.pid)
    finally:
        holder.kill()
        holder.wait()
    # The kernel drops the lock of a killed holder: no stale lock to clean up.
    assert training.lock_holder(tmp_path / "exp") is None
    with training.lock_output_dir(tmp_path / "exp") as lock:
        assert lock.path.read_text().split()[0] == str(os.getpid())
        assert training.lock_holder(tmp_path / "exp").split()[0] == str(os.getpid())
    assert training.lock_holder(tmp_path / "exp") is None


def test_lock_holder_of_a_fresh_directory_creates_nothing(tmp_path):
    assert training.lock_holder(tmp_path / "exp") is None
    assert not (tmp_path / "exp").exists()


def test_check_lock_command(tmp_path):
    command = [sys.executable, "-m", "espnet_shared_conformer.training", "--check_lock"]
    free = subprocess.run([*command, str(tmp_path)], capture_output=True, text=True)
    assert free.returncode == 0, free.stderr
    with training.lock_output_dir(tmp_path):
        held = subprocess.run([*command, str(tmp_path)], capture_output=True, text=True)
    assert held.returncode == 1
    assert f"being trained by PID {os.getpid()}" in held.stderr
    assert f"kill {os.getpid()}" in held.stderr


def _args(**kwargs) -> argparse.Namespace:
    return argparse.Namespace(**{"dist_rank": None, "dist_launcher": None, **kwargs})


@pytest.mark.parametrize(
    "args, env, first",
    [
        (_args(), {}, True),
        (_args(dist_rank=0), {"RANK": "1"}, True),  # the option wins, as in ESPnet
        (_args(dist_rank=1), {}, False),
        (_args(), {"RANK": "1"}, False),
        (_args(), {"RANK": "0"}, True),
        (_args(dist_launcher="slurm"), {"SLURM_PROCID": "2"}, False),
        (_args(dist_launcher="slurm"), {"SLURM_PROCID": "0", "RANK": "3"}, True),
        (_args(dist_launcher="mpi"), {"OMPI_COMM_WORLD_RANK": "1"}, False),
        (_args(dist_launcher="mpi"), {"PMI_RANK": "0"}, True),
    ],
)
def test_only_the_first_rank_takes_the_lock(monkeypatch, args, env, first):
    for name in ("RANK", "SLURM_PROCID", "OMPI_COMM_WORLD_RANK", "PMI_RANK"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert training.is_first_rank(args) is first


# ------------------------------------------------------------------ parent death


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prctl is Linux's")
def test_child_stops_when_its_parent_is_killed(tmp_path):
    child_code = textwrap.dedent(f"""
        import os, pathlib, time
        from espnet_shared_conformer import training
        training.stop_with_parent()
        pathlib.Path({str(tmp_path / "child")!r}).write_text(str(os.getpid()))
        time.sleep(60)
    """)
    parent_code = f"import subprocess, sys; subprocess.Popen([sys.executable, '-c', {child_code!r}]).wait()"
    parent = subprocess.Popen([sys.executable, "-c", parent_code])
    child = int(_wait_for_file(tmp_path / "child"))
    parent.kill()  # SIGKILL: the parent runs no clean-up of its own
    parent.wait()
    stopped = _gone(child)
    if not stopped:
        os.kill(child, signal.SIGKILL)
    assert stopped


@pytest.mark.parametrize(
    "value, expected",
    [(None, False), ("parent", True), ("self", False), ("", False)],
)
def test_started_by_job_runner_only_when_it_names_the_parent(
    monkeypatch, value, expected
):
    # The recipe's job runner names itself; a shell that started a training
    # by hand (under nohup, say) does not, and its end must not stop it.
    pids = {"parent": str(os.getppid()), "self": str(os.getpid()), "": ""}
    if value is None:
        monkeypatch.delenv(training.JOB_RUNNER_ENV, raising=False)
    else:
        monkeypatch.setenv(training.JOB_RUNNER_ENV, pids[value])
    assert training.started_by_job_runner() is expected


# ------------------------------------------------------------------ atomic save


class _Exploding:
    def __reduce__(self):
        raise RuntimeError("pickling failed half-way")


def test_failed_save_keeps_the_previous_file(tmp_path):
    path = tmp_path / "checkpoint.pth"
    training.atomic_save({"epoch": 1, "w": torch.arange(4.0)}, path)

    with pytest.raises(RuntimeError, match="half-way"):
        training.atomic_save(
            {"epoch": 2, "w": torch.zeros(1000), "x": _Exploding()}, path
        )

    loaded = torch.load(path)
    assert loaded["epoch"] == 1 and torch.equal(loaded["w"], torch.arange(4.0))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.pth"]


def test_killed_save_keeps_the_previous_file(tmp_path):
    # torch.save truncates its file when it starts: killed in the middle, an
    # in-place save leaves nothing loadable.
    path, marker = tmp_path / "checkpoint.pth", tmp_path / "marker"
    code = textwrap.dedent(f"""
        import pathlib, time, torch
        from espnet_shared_conformer.training import atomic_save

        class Blocking:  # pickling it says so in a file, then waits to be killed
            def __reduce__(self):
                pathlib.Path({str(marker)!r}).write_text("saving")
                time.sleep(60)

        atomic_save({{"epoch": 1, "w": torch.ones(3)}}, {str(path)!r})
        atomic_save({{"epoch": 2, "w": torch.zeros(3), "x": Blocking()}}, {str(path)!r})
    """)
    saver = subprocess.Popen([sys.executable, "-c", code])
    try:
        _wait_for_file(marker, timeout=60)
    finally:
        saver.kill()
        saver.wait()

    loaded = torch.load(path)
    assert loaded["epoch"] == 1 and torch.equal(loaded["w"], torch.ones(3))
    # What the killed save left is the hidden temporary file, which the next
    # save replaces.
    training.atomic_save({"epoch": 3}, path)
    assert torch.load(path) == {"epoch": 3}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.pth", "marker"]


def test_save_to_a_file_object_is_torchs(tmp_path):
    with (tmp_path / "f.pth").open("wb") as f:
        training.atomic_save({"a": 1}, f)
    assert torch.load(tmp_path / "f.pth") == {"a": 1}


def test_install_changes_only_the_trainers_save(monkeypatch):
    import espnet2.train.trainer as trainer_module

    monkeypatch.setattr(trainer_module, "torch", trainer_module.torch)  # restored after
    original_save = torch.save
    training.install_atomic_checkpoints()
    training.install_atomic_checkpoints()  # idempotent

    assert trainer_module.torch.save is training.atomic_save
    assert trainer_module.torch.nn is torch.nn
    assert trainer_module.torch.cuda.is_available is torch.cuda.is_available
    assert torch.save is original_save


def _one_rank_group(path: Path) -> None:
    torch.distributed.init_process_group(
        "gloo", init_method=f"file://{path}", rank=0, world_size=1
    )


def test_worker_destroys_its_process_group_after_training(tmp_path):
    class Task:
        calls = []

        @classmethod
        def main_worker(cls, args):
            cls.calls.append((cls, args))
            _one_rank_group(tmp_path / f"init{len(cls.calls)}")
            torch.distributed.barrier()

    class SubTask(Task):  # the class ESPnet's main is called on keeps its own
        pass

    training.install_process_group_teardown(SubTask)
    training.install_process_group_teardown(SubTask)  # idempotent: one wrapper

    SubTask.main_worker("args")
    assert Task.calls == [(SubTask, "args")]
    assert not torch.distributed.is_initialized()
    # A second training in the same process can create a group again.
    SubTask.main_worker("again")
    assert not torch.distributed.is_initialized()
    assert SubTask.main_worker.__wrapped__ is vars(Task)["main_worker"].__func__


def test_worker_that_raises_keeps_its_process_group(tmp_path):
    class Task:
        @classmethod
        def main_worker(cls, args):
            _one_rank_group(tmp_path / "init")
            raise RuntimeError("diverged")

    training.install_process_group_teardown(Task)
    try:
        with pytest.raises(RuntimeError, match="diverged"):
            Task.main_worker(None)
        assert torch.distributed.is_initialized()
    finally:
        if torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


# ------------------------------------------------------------------ real training

TOKENS = ["<blank>", "<unk>", "A", "B", "C", "<sos/eos>"]


def _tiny_training_setup(root: Path) -> list[str]:
    """Files for a two-epoch ESPnet training of a tiny model; its arguments."""
    rng = np.random.default_rng(0)
    wav, text, shape = [], [], []
    for i in range(4):
        path = root / f"u{i}.wav"
        soundfile.write(str(path), 0.1 * rng.standard_normal(4000), 16000)
        wav.append(f"u{i} {path}\n")
        text.append(f"u{i} {'ABC'[i % 3]}{'CAB'[i % 3]}\n")
        shape.append(f"u{i} 4000\n")
    (root / "wav.scp").write_text("".join(wav))
    (root / "text").write_text("".join(text))
    (root / "shape").write_text("".join(shape))
    (root / "tokens.txt").write_text("\n".join(TOKENS) + "\n")
    config = dict(
        frontend_conf=dict(n_fft=256, win_length=256, hop_length=128, n_mels=20),
        encoder="shared_conformer",
        encoder_conf=dict(output_size=16, attention_heads=2, linear_units=16, num_blocks=2),
        decoder="transformer",
        decoder_conf=dict(attention_heads=2, linear_units=16, num_blocks=1),
        batch_type="unsorted", batch_size=2, max_epoch=2, num_workers=0,
        use_matplotlib=False, use_tensorboard=False, num_att_plot=0,
    )  # fmt: skip
    (root / "train.yaml").write_text(yaml.safe_dump(config))
    data = [f"{root}/wav.scp,speech,sound", f"{root}/text,text,text"]
    return [
        "--config", str(root / "train.yaml"), "--output_dir", str(root / "exp"),
        "--token_list", str(root / "tokens.txt"), "--token_type", "char",
        "--train_data_path_and_name_and_type", data[0],
        "--train_data_path_and_name_and_type", data[1],
        "--valid_data_path_and_name_and_type", data[0],
        "--valid_data_path_and_name_and_type", data[1],
        "--train_shape_file", str(root / "shape"), "--valid_shape_file", str(root / "shape"),
        "--ngpu", "0", "--seed", "0",
    ]  # fmt: skip


def test_training_killed_while_saving_leaves_the_last_checkpoint(tmp_path):
    # ESPnet's trainer, run by the wrapper, killed half-way through writing
    # epoch 2's checkpoint: the half written so far stays on disk, the rest
    # never comes (SIGKILL runs no clean-up). The checkpoint of epoch 1 must
    # still load, for --resume true.
    args = _tiny_training_setup(tmp_path)
    driver = textwrap.dedent("""
        import os, runpy, signal, sys
        import torch

        real_save = torch.save

        def save_and_die_half_way(obj, f, *args, **kwargs):
            real_save(obj, f, *args, **kwargs)
            is_checkpoint = isinstance(obj, dict) and "reporter" in obj
            if is_checkpoint and obj["reporter"]["epoch"] == 2:
                os.truncate(f, os.path.getsize(f) // 2)
                os.kill(os.getpid(), signal.SIGKILL)

        torch.save = save_and_die_half_way
        sys.argv = ["asr_train", *sys.argv[1:]]
        runpy.run_module("espnet_shared_conformer.bin.asr_train", run_name="__main__")
    """)
    result = subprocess.run(
        [sys.executable, "-c", driver, *args],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == -signal.SIGKILL, result.stderr[-3000:]

    states = torch.load(tmp_path / "exp" / "checkpoint.pth", weights_only=False)
    assert states["reporter"]["epoch"] == 1
    assert set(states) >= {"model", "optimizers", "schedulers"}
