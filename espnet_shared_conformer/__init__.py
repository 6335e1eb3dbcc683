"""A shared-weight low-rank Conformer encoder for ESPnet2.

After Hernandez et al., "Sharing Low Rank Conformer Weights for Tiny
Always-On Ambient Speech Recognition Models" (ICASSP 2023). Call
:func:`register` before building an ESPnet model whose config says
``encoder: shared_conformer``; importing this package registers nothing and
loads neither torch nor ESPnet.
"""

from typing import Any

from espnet_shared_conformer._registry import ENCODER_NAME, is_registered, register
from espnet_shared_conformer.plan import SharingPlan

__all__ = [
    "ENCODER_NAME",
    "SharedConformerEncoder",
    "SharingPlan",
    "is_registered",
    "register",
]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    # The encoder pulls in torch and ESPnet; load it only when asked for.
    if name == "SharedConformerEncoder":
        from espnet_shared_conformer.encoder import SharedConformerEncoder

        return SharedConformerEncoder
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
