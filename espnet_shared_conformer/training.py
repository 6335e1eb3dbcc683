"""What the training wrapper adds around ESPnet's trainer, so that a stopped
training can be started again safely.

- :func:`lock_output_dir`: one training per experiment directory. The training
  process holds an exclusive ``flock`` on ``<output_dir>/.train.lock`` with its
  PID and host inside; a second training of the same directory refuses to
  start and names the PID that holds it. The kernel drops the lock when the
  holder dies, however it dies, so a killed run never leaves a stale lock.
- :func:`stop_with_parent`: on Linux, the training gets SIGTERM when the
  process that started it (the recipe's job runner) dies, even by SIGKILL,
  instead of training on as an orphan into a directory a restarted run also
  writes. :func:`started_by_job_runner` tells whether that parent is the
  recipe's runner, which names itself in ``$SHARED_CONFORMER_JOB_RUNNER``; a
  training started by hand (say under ``nohup``) is left to outlive its shell.
- :func:`install_atomic_checkpoints`: ESPnet's ``Trainer.run`` writes
  ``checkpoint.pth`` and ``<N>epoch.pth`` in place with ``torch.save``; a kill
  during that write leaves a truncated file that ``--resume true`` cannot
  load. After this call the trainer writes each of them to a temporary file in
  the same directory and renames it over the old one, so the file on disk is
  always a whole checkpoint: the old one or the new one.
- :func:`install_process_group_teardown`: ESPnet never destroys the process
  group it creates for distributed training. A rank that reaches interpreter
  shutdown with a gloo group alive can abort there (``terminate called
  without an active exception``, exit -6) after training has finished, and the
  launcher reports the run as failed; NCCL warns that the group was not
  destroyed. After this call each worker destroys the group when training
  returns.

``python -m espnet_shared_conformer.training --check_lock DIR`` exits 1 with
the holder's PID when a training holds DIR's lock (asr.sh asks before it
starts ESPnet's launcher), 0 otherwise.

Importing this module loads neither torch nor ESPnet.
"""

from __future__ import annotations

import argparse
import ctypes
import errno
import fcntl
import functools
import os
import signal
import socket
import sys
import types
from pathlib import Path
from typing import Any, Optional, Sequence

from espnet_shared_conformer._cli import command_parser

__all__ = [
    "JOB_RUNNER_ENV",
    "LOCK_NAME",
    "TrainingLock",
    "TrainingLockedError",
    "atomic_save",
    "install_atomic_checkpoints",
    "install_process_group_teardown",
    "is_first_rank",
    "lock_holder",
    "lock_output_dir",
    "started_by_job_runner",
    "stop_with_parent",
]

#: The lock file inside the experiment directory.
LOCK_NAME = ".train.lock"
#: The environment variable in which the recipe's job runner
#: (``scripts/utils/run_job.sh``) gives the commands it starts its PID.
JOB_RUNNER_ENV = "SHARED_CONFORMER_JOB_RUNNER"

# From <linux/prctl.h>.
_PR_SET_PDEATHSIG = 1


class TrainingLockedError(RuntimeError):
    """Another live process holds the experiment directory's training lock."""


class TrainingLock:
    """An exclusive ``flock`` on ``<output_dir>/.train.lock``; held until
    :meth:`release` or the end of the process."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd: Optional[int] = fd

    def release(self) -> None:
        """Drop the lock (closing the descriptor releases the ``flock``)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "TrainingLock":
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _holder_text(fd: int) -> str:
    """The ``PID HOST`` line a lock holder wrote, or a stand-in when the holder
    has not written it yet."""
    os.lseek(fd, 0, os.SEEK_SET)
    text = os.read(fd, 200).decode("utf-8", "replace").strip()
    return text or "unknown"


def _locked_message(output_dir: Path, holder: str) -> str:
    pid, _, host = holder.partition(" ")
    where = f" on {host}" if host else ""
    return (
        f"{output_dir} is being trained by PID {pid}{where}, which holds "
        f"{output_dir / LOCK_NAME}. Two trainings of one directory overwrite each "
        f"other's checkpoints: stop that one first (kill {pid}), or train into "
        "another directory."
    )


def lock_output_dir(output_dir: str | os.PathLike) -> TrainingLock:
    """Take the training lock of ``output_dir`` (created if missing).

    Raises:
        TrainingLockedError: another live process holds it; the message names
            its PID and host.
    """
    directory = Path(output_dir)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        holder = _holder_text(fd)
        os.close(fd)
        if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            raise TrainingLockedError(_locked_message(directory, holder)) from None
        raise
    # The file outlives its holders; only its content names the live one.
    os.ftruncate(fd, 0)
    os.lseek(fd, 0, os.SEEK_SET)
    os.write(fd, f"{os.getpid()} {socket.gethostname()}\n".encode())
    return TrainingLock(path, fd)


def lock_holder(output_dir: str | os.PathLike) -> Optional[str]:
    """The ``PID HOST`` of the live process holding ``output_dir``'s training
    lock, or ``None`` when nobody holds it. Creates nothing."""
    path = Path(output_dir) / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        # A shared lock is refused only while an exclusive one is held; it is
        # dropped again at once, when the descriptor closes.
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError as e:
        if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            return _holder_text(fd)
        raise
    finally:
        os.close(fd)
    return None


def is_first_rank(args: argparse.Namespace) -> bool:
    """Whether this process is the one that writes ESPnet's ``--output_dir``
    (rank 0 of a distributed run, or the only process), judged before ESPnet
    sets up distribution, from the same sources ESPnet reads the rank from.
    """
    rank: Optional[str]
    if args.dist_rank is not None:
        rank = str(args.dist_rank)
    elif args.dist_launcher == "slurm":
        rank = os.environ.get("SLURM_PROCID")
    elif args.dist_launcher == "mpi":
        rank = os.environ.get("OMPI_COMM_WORLD_RANK", os.environ.get("PMI_RANK"))
    else:
        rank = os.environ.get("RANK")
    return rank is None or int(rank) == 0


def started_by_job_runner() -> bool:
    """Whether this process's parent is the recipe's job runner (the PID in
    ``$SHARED_CONFORMER_JOB_RUNNER``), rather than a shell or anything else
    that may end while the process is meant to go on."""
    return os.environ.get(JOB_RUNNER_ENV) == str(os.getppid())


def stop_with_parent(signum: int = signal.SIGTERM) -> bool:
    """Ask the kernel to send ``signum`` to this process when its parent dies.

    Linux only (``prctl(PR_SET_PDEATHSIG)``); elsewhere a no-op. The setting is
    not inherited by forked children, so each process that wants it calls
    this. Call it first thing: a parent that dies before the call is not seen.

    Returns:
        True when the signal was set.
    """
    if not sys.platform.startswith("linux"):
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, int(signum), 0, 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"prctl(PR_SET_PDEATHSIG): {os.strerror(err)}")
    return True


def _fsync_path(path: Path, flags: int = os.O_RDONLY) -> None:
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_save(obj: Any, f: Any, *args: Any, **kwargs: Any) -> None:
    """``torch.save(obj, f, ...)`` that never leaves a partial file at ``f``.

    A path ``f`` is written as ``.<name>.partial`` in the same directory,
    flushed to disk and renamed over ``f`` (a rename within one file system
    replaces the file in one step). If the save raises, the temporary file is
    removed and ``f`` is untouched; if the process is killed, ``f`` is untouched
    and the next save overwrites the leftover temporary file. Anything else
    (an open file, a buffer) goes to ``torch.save`` as it is.
    """
    import torch

    if not isinstance(f, (str, os.PathLike)):
        torch.save(obj, f, *args, **kwargs)
        return
    path = Path(f)
    tmp = path.with_name(f".{path.name}.partial")
    try:
        torch.save(obj, tmp, *args, **kwargs)
        # Durable before it becomes visible: after a crash of the machine, the
        # name never points at data that did not reach the disk.
        _fsync_path(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_path(path.parent)


class _TorchWithAtomicSave(types.ModuleType):
    """``torch`` as ESPnet's trainer module sees it, except that ``save`` is
    :func:`atomic_save`. Every other attribute is torch's own."""

    def __init__(self, torch_module: types.ModuleType) -> None:
        super().__init__(torch_module.__name__, torch_module.__doc__)
        self.__dict__["_torch"] = torch_module
        self.__dict__["save"] = atomic_save

    def __getattr__(self, name: str) -> Any:
        return getattr(self.__dict__["_torch"], name)


def install_atomic_checkpoints() -> None:
    """Make ESPnet's ``Trainer`` write its checkpoints with :func:`atomic_save`.

    ``espnet2.train.trainer`` calls ``torch.save(states, output_dir /
    "checkpoint.pth")`` and ``torch.save(model_state, output_dir /
    "<N>epoch.pth")`` inside ``Trainer.run``, which offers no hook for it. So
    the ``torch`` name of that one module (not torch itself, nor any other
    module) becomes a view of torch whose ``save`` is atomic. Idempotent.
    """
    import espnet2.train.trainer as trainer_module

    if not isinstance(trainer_module.torch, _TorchWithAtomicSave):
        trainer_module.torch = _TorchWithAtomicSave(trainer_module.torch)


def install_process_group_teardown(task: type) -> None:
    """Make ``task.main_worker`` destroy torch's default process group when
    it returns, if the worker created one.

    ``main_worker`` is where ESPnet's ``AbsTask`` creates the group (from
    ``--dist_*``) and trains: called in this process for one process per rank,
    or as the target of the processes ``AbsTask.main`` spawns for several GPUs
    of one node, which resolve it by name on the task class (so a worker whose
    main module ran this call is covered too). The group is destroyed only
    after a normal return: a worker that raises exits with the error, and
    tearing down a group other ranks may still be waiting in could block it.
    Idempotent.
    """
    worker = task.main_worker  # bound to ``task``: a classmethod
    if getattr(worker, "_tears_down_process_group", False):
        return
    train = worker.__func__

    @functools.wraps(train)
    def main_worker(cls: type, args: argparse.Namespace) -> None:
        train(cls, args)
        import torch.distributed

        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()

    main_worker._tears_down_process_group = True  # type: ignore[attr-defined]
    task.main_worker = classmethod(main_worker)  # type: ignore[attr-defined]


def _main(argv: Optional[Sequence[str]] = None) -> int:
    parser = command_parser(
        "training", "Exit 1, naming the PID, when a training holds DIR's lock."
    )
    parser.add_argument("--check_lock", metavar="DIR", required=True)
    args = parser.parse_args(argv)
    holder = lock_holder(args.check_lock)
    if holder is None:
        return 0
    print(_locked_message(Path(args.check_lock), holder), file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(_main())
