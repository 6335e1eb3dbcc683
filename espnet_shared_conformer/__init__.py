"""A shared-weight low-rank Conformer encoder for ESPnet2.

After Hernandez et al., "Sharing Low Rank Conformer Weights for Tiny
Always-On Ambient Speech Recognition Models" (ICASSP 2023). Call
:func:`register` before building an ESPnet model whose config says
``encoder: shared_conformer`` (or run ``python -m
espnet_shared_conformer.enable`` once per environment); importing this package
registers nothing and loads neither torch nor ESPnet.
:func:`espnet_shared_conformer.inference.load_model` loads a trained model
with its decoding configuration.
"""

from espnet_shared_conformer._registry import ENCODER_NAME, is_registered, register

__all__ = [
    "ENCODER_NAME",
    "SharedConformerEncoder",
    "SharingOptions",
    "SharingPlan",
    "StreamingOptions",
    "is_registered",
    "register",
]
__version__ = "0.1.0"


def __getattr__(name: str) -> object:
    # The encoder pulls in torch and ESPnet, the plan dataclasses and inspect
    # (30 ms): load them only when asked for. The startup hook of
    # ``enable`` imports this package in every process of an environment.
    if name == "SharedConformerEncoder":
        from espnet_shared_conformer.encoder import SharedConformerEncoder

        return SharedConformerEncoder
    if name in ("SharingOptions", "SharingPlan"):
        from espnet_shared_conformer import plan

        return getattr(plan, name)
    if name == "StreamingOptions":
        from espnet_shared_conformer.streaming import StreamingOptions

        return StreamingOptions
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
