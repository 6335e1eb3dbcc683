"""The recipe's training entry point, saving every rank's final weights.

Usage: ``python tests/unit/ddp_train.py ARG...`` with the arguments of
``python -m espnet_shared_conformer.bin.asr_train``.

ESPnet saves checkpoints on rank 0 only, so a test cannot otherwise see what
the other ranks hold after distributed training. This runs ESPnet's own
``ASRTask.main`` (argument parsing, ``resolve_distributed_mode``, process group,
DDP, the trainer loop) exactly as the recipe's entry point does; the one
addition is a trainer subclass, ESPnet's own extension point (``Task.trainer``),
that writes ``<output_dir>/rank<R>.pth`` after ``Trainer.run`` returns.
"""

import sys
from pathlib import Path
from typing import Any

import torch
from espnet2.tasks.asr import ASRTask
from espnet2.train.trainer import Trainer

# Importing the entry point registers ``encoder: shared_conformer`` (before
# the parser is built, which is when ESPnet reads the encoder names), as
# running ``python -m espnet_shared_conformer.bin.asr_train`` does.
from espnet_shared_conformer.bin import asr_train  # noqa: F401


class _RankDumpingTrainer(Trainer):
    """ESPnet's trainer; afterwards each rank saves its model's ``state_dict``."""

    @classmethod
    def run(cls, model: torch.nn.Module, **kwargs: Any) -> None:
        super().run(model=model, **kwargs)
        option = kwargs["distributed_option"]
        rank = option.dist_rank if option.distributed else 0
        out = Path(kwargs["trainer_options"].output_dir) / f"rank{rank}.pth"
        torch.save(model.state_dict(), out)


class _RankDumpingASRTask(ASRTask):
    trainer = _RankDumpingTrainer


if __name__ == "__main__":
    _RankDumpingASRTask.main(cmd=sys.argv[1:])
