"""ESPnet's ``espnet2.bin.asr_train`` with ``encoder: shared_conformer`` known,
made safe to stop and start again.

Takes every argument of ESPnet's binary (collect-stats, training, multi-GPU
and multi-node). Registration happens at import, not under ``__main__``: the
workers ESPnet spawns for multi-GPU training re-import this module as their
main module (``__mp_main__``) and so register too.

Run as a program (or as a spawned worker's main module), the process also
(see :mod:`espnet_shared_conformer.training`):

- stops when the process that started it dies (Linux), rather than training
  on as an orphan: the recipe's job runner, for a process it started; the
  training process, for a worker ESPnet spawned;
- writes ESPnet's ``checkpoint.pth`` and ``<N>epoch.pth`` atomically, so a
  kill during a save leaves the previous checkpoint loadable;
- holds the lock of ``--output_dir`` (rank 0 only), so that a second training
  of the same directory refuses to start and names the PID of the first;
- destroys the distributed process group when a rank's training returns, so
  that no rank aborts at exit after training has finished.
"""

import argparse
import sys
from typing import Optional, Sequence

from espnet_shared_conformer import training

_IS_PROGRAM = __name__ in ("__main__", "__mp_main__")
# First, before the slow imports below, so that a runner killed while ESPnet
# loads still takes this process with it.
if __name__ == "__mp_main__" or (
    __name__ == "__main__" and training.started_by_job_runner()
):
    training.stop_with_parent()

from espnet_shared_conformer._registry import register  # noqa: E402

register()

from espnet2.tasks.asr import ASRTask  # noqa: E402  (needs the registration above)

if _IS_PROGRAM:
    training.install_atomic_checkpoints()
    training.install_process_group_teardown(ASRTask)


def main(cmd: Optional[Sequence[str]] = None) -> None:
    """Parse ESPnet's ASR training arguments, take the output directory's lock
    when this process writes it, and run ESPnet's ``ASRTask.main``."""
    args: argparse.Namespace = ASRTask.get_parser().parse_args(cmd)
    lock = None
    if (
        args.output_dir is not None
        and not args.print_config
        and training.is_first_rank(args)
    ):
        try:
            lock = training.lock_output_dir(args.output_dir)
        except training.TrainingLockedError as e:
            sys.exit(f"ERROR: {e}")
    try:
        ASRTask.main(args=args)
    finally:
        if lock is not None:
            lock.release()


if __name__ == "__main__":
    main()
