"""The recipe's training entry point, saving every rank's final weights.

Usage: ``python tests/unit/ddp_train.py ARG...`` with the arguments of
``python -m espnet_shared_conformer.bin.asr_train``.

ESPnet saves checkpoints on rank 0 only, so a test cannot otherwise see what
the other ranks hold after distributed training. This runs the entry point as
``python -m`` runs it (``runpy``, as ``__main__``: its parent-death signal,
atomic checkpoints, output-directory lock, then ESPnet's ``ASRTask.main`` with
argument parsing, ``resolve_distributed_mode``, the process group, DDP and the
trainer loop). The one addition is ESPnet's own extension point for a task's
training loop, ``ASRTask.trainer``: here a ``Trainer`` subclass that writes
``<output_dir>/rank<R>.pth`` after ``Trainer.run`` returns. This driver is a
test helper; nothing in the package sets a task's trainer.
"""

import runpy
from pathlib import Path
from typing import Any

import torch
from espnet2.tasks.asr import ASRTask
from espnet2.train.trainer import Trainer


class _RankDumpingTrainer(Trainer):
    """ESPnet's trainer; afterwards each rank saves its model's ``state_dict``."""

    @classmethod
    def run(cls, model: torch.nn.Module, **kwargs: Any) -> None:
        super().run(model=model, **kwargs)
        option = kwargs["distributed_option"]
        rank = option.dist_rank if option.distributed else 0
        out = Path(kwargs["trainer_options"].output_dir) / f"rank{rank}.pth"
        torch.save(model.state_dict(), out)


if __name__ == "__main__":
    ASRTask.trainer = _RankDumpingTrainer
    # sys.argv[1:] are the entry point's arguments, as with `python -m`.
    runpy.run_module(
        "espnet_shared_conformer.bin.asr_train", run_name="__main__", alter_sys=True
    )
