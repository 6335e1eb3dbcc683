"""Registration of the encoder under ESPnet2's ASR task.

ESPnet2 has no plugin entry point: ``espnet2.tasks.asr.encoder_choices`` is a
closed mapping that is read when the argument parser is built and when a model
is built from a config. Every process that builds a model must therefore call
:func:`register` first; the ``espnet_shared_conformer.bin`` wrappers do it at
import, so ESPnet's spawned workers (which re-import the main module) get it
too.
"""

__all__ = ["ENCODER_NAME", "is_registered", "register"]

#: The name a YAML config uses: ``encoder: shared_conformer``.
ENCODER_NAME = "shared_conformer"


def register() -> None:
    """Make ``encoder: shared_conformer`` known to ESPnet2's ASR task.

    Idempotent; call it before ``Speech2Text`` or
    ``ASRTask.build_model_from_file`` in Python.
    """
    from espnet2.tasks.asr import encoder_choices

    from espnet_shared_conformer.encoder import SharedConformerEncoder

    registered = encoder_choices.classes.get(ENCODER_NAME)
    if registered is not None and registered is not SharedConformerEncoder:
        raise RuntimeError(
            f"ESPnet's encoder name {ENCODER_NAME!r} is already taken by "
            f"{registered.__module__}.{registered.__qualname__}"
        )
    encoder_choices.classes[ENCODER_NAME] = SharedConformerEncoder


def is_registered() -> bool:
    """Whether :func:`register` has run in this process."""
    from espnet2.tasks.asr import encoder_choices

    return ENCODER_NAME in encoder_choices.classes
