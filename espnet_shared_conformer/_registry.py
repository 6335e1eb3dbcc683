"""Registration of the encoder under ESPnet2's ASR task.

ESPnet2 has no plugin entry point: ``espnet2.tasks.asr.encoder_choices`` is a
closed mapping that is read when the argument parser is built and when a model
is built from a config. Every process that builds a model must therefore call
:func:`register` first; the ``espnet_shared_conformer.bin`` wrappers do it at
import, so ESPnet's spawned workers (which re-import the main module) get it
too. ``python -m espnet_shared_conformer.enable`` registers it in every process
of an environment instead (:mod:`espnet_shared_conformer._startup`). No imports
at module level: that hook imports this module in every process there.
"""

__all__ = [
    "ENCODER_NAME",
    "UNREGISTERED_HINT",
    "is_registered",
    "register",
]

#: The name a YAML config uses: ``encoder: shared_conformer``.
ENCODER_NAME = "shared_conformer"

#: How to make a process know the encoder: what the startup hook prints when
#: it cannot register. (ESPnet's own "--encoder must be one of (...)" error, in
#: a process the package is not part of, lists ESPnet's names only.)
UNREGISTERED_HINT = (
    f"encoder: {ENCODER_NAME} is not registered with ESPnet in this process. "
    "Run python -m espnet_shared_conformer.bin.asr_train / .bin.asr_inference "
    "instead of espnet2.bin.asr_train / asr_inference; in Python call "
    "espnet_shared_conformer.register() before building the model, or load it "
    "with espnet_shared_conformer.inference.load_model(); or run "
    "python -m espnet_shared_conformer.enable once to register it in every "
    "process of this environment, ESPnet's own binaries included."
)


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
