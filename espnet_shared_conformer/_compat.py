"""ESPnet's Conformer building blocks, wherever this ESPnet keeps them.

ESPnet 202611 moved the legacy ``espnet.nets.pytorch_backend`` modules to
``espnet2.legacy.nets.pytorch_backend``; 202511 (the last release for Python
3.11) still has them at the old place. Everything the package borrows from
ESPnet's building blocks is imported here and nowhere else.
"""

import importlib
import inspect

from espnet2.asr.encoder.conformer_encoder import ConformerEncoder

__all__ = [
    "ESPNET_HAS_SDPA",
    "ConformerEncoder",
    "LayerNorm",
    "PositionalEncoding",
    "RelPositionMultiHeadedAttention",
    "RelPositionalEncoding",
    "ScaledPositionalEncoding",
    "Swish",
    "TooShortUttError",
    "check_short_utt",
    "make_pad_mask",
    "trim_by_ctc_posterior",
]


def _backend(module: str):
    try:
        return importlib.import_module(f"espnet2.legacy.nets.pytorch_backend.{module}")
    except ModuleNotFoundError:
        return importlib.import_module(f"espnet.nets.pytorch_backend.{module}")


_nets_utils = _backend("nets_utils")
_subsampling = _backend("transformer.subsampling")
_embedding = _backend("transformer.embedding")

make_pad_mask = _nets_utils.make_pad_mask
trim_by_ctc_posterior = _nets_utils.trim_by_ctc_posterior
LayerNorm = _backend("transformer.layer_norm").LayerNorm
RelPositionMultiHeadedAttention = _backend(
    "transformer.attention"
).RelPositionMultiHeadedAttention
PositionalEncoding = _embedding.PositionalEncoding
ScaledPositionalEncoding = _embedding.ScaledPositionalEncoding
RelPositionalEncoding = _embedding.RelPositionalEncoding
Swish = _backend("conformer.swish").Swish
TooShortUttError = _subsampling.TooShortUttError
check_short_utt = _subsampling.check_short_utt

# `use_sdpa` (PyTorch's fused attention) first appears in ESPnet 202611.
ESPNET_HAS_SDPA = "use_sdpa" in inspect.signature(ConformerEncoder.__init__).parameters
