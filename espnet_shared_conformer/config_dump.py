"""An experiment's ``config.yaml``: ESPnet's dump of the training namespace.

The trainer writes every option it ran with (``vars(args)``) plus values it
sets itself, which are no option of ``asr_train`` (``required``,
``distributed``, ``version``, depending on the release), so ``--config``
refuses them; the dump's own ``config`` is the training config's path,
relative to where training ran. This is the one place that knows it.
"""

import argparse
from typing import Any, Dict, Mapping, Optional

__all__ = ["is_config_dump", "training_options"]


def is_config_dump(config: Mapping[str, Any]) -> bool:
    """Whether ``config`` is a trainer's dump rather than a hand-written config.

    Every dump holds ``required`` (a default of ESPnet's task parser that no
    option sets); a training config never does, since ``--config`` refuses it.
    """
    return "required" in config


def training_options(
    dump: Mapping[str, Any], parser: Optional[argparse.ArgumentParser] = None
) -> Dict[str, Any]:
    """The entries of ``dump`` that ``asr_train --config`` takes.

    Those ``parser`` (ESPnet's ASR task parser, built when not given) has an
    option for, except ``config``; the order of ``dump`` is kept.
    """
    if parser is None:
        from espnet2.tasks.asr import ASRTask

        parser = ASRTask.get_parser()
    known = {action.dest for action in parser._actions} - {"config"}
    return {k: v for k, v in dump.items() if k in known}
