"""Checks of ESPnet's own Conformer options, before anything is built.

ESPnet's ``ConformerEncoder`` asserts on some impossible options, fails deep
inside a layer on others, and accepts a few it then ignores; the shared
encoder refuses them all up front with a ``ValueError`` naming option and
value. The sharing options are checked by
:class:`~espnet_shared_conformer.plan.SharingOptions` and the plan.
"""

from typing import Any, Mapping

from espnet_shared_conformer._compat import ESPNET_HAS_SDPA
from espnet_shared_conformer.subsampling import CONV2D_INPUT_LAYERS

__all__ = ["check_conformer_options"]

# The values ESPnet's ConformerEncoder builds something for.
_CHOICES = {
    "input_layer": ("linear", *CONV2D_INPUT_LAYERS, "embed", None),
    "positionwise_layer_type": ("linear", "conv1d", "conv1d-linear"),
    "rel_pos_type": ("legacy", "latest"),
    "pos_enc_layer_type": (
        "abs_pos",
        "scaled_abs_pos",
        "conv",
        "rel_pos",
        "legacy_rel_pos",
    ),
    "selfattention_layer_type": ("selfattn", "rel_selfattn", "legacy_rel_selfattn"),
}


def check_conformer_options(conf: Mapping[str, Any]) -> None:
    """Raise ``ValueError`` for Conformer options ESPnet would assert on or reject.

    ``conf`` holds the encoder's constructor arguments other than the
    sharing options (``input_size``, ``output_size``, ..., ``use_sdpa``,
    ``subsampling_channels``), every one present.
    """
    output_size, heads = conf["output_size"], conf["attention_heads"]
    if output_size < 1:
        raise ValueError(f"output_size ({output_size}) must be positive")
    if heads < 1 or output_size % heads:
        raise ValueError(
            f"output_size ({output_size}) is not a multiple of attention_heads "
            f"({heads})"
        )
    for name, choices in _CHOICES.items():
        if conf[name] not in choices:
            raise ValueError(f"{name} ({conf[name]!r}) must be one of {list(choices)}")
    if conf["input_layer"] is None and conf["input_size"] != output_size:
        raise ValueError(
            f"input_layer (None) feeds the input straight to the blocks, so "
            f"input_size ({conf['input_size']}) must equal output_size ({output_size})"
        )
    channels = conf["subsampling_channels"]
    if channels is not None:
        if conf["input_layer"] not in CONV2D_INPUT_LAYERS:
            raise ValueError(
                f"subsampling_channels ({channels}) sets the channels of a "
                f"convolutional subsampling; input_layer ({conf['input_layer']!r}) has "
                f"none (use one of {list(CONV2D_INPUT_LAYERS)})"
            )
        if channels < 1:
            raise ValueError(f"subsampling_channels ({channels}) must be positive")
    pos_enc, self_attn = conf["pos_enc_layer_type"], conf["selfattention_layer_type"]
    if conf["rel_pos_type"] == "latest" and "legacy" in pos_enc + self_attn:
        raise ValueError(
            f"rel_pos_type ('latest') contradicts pos_enc_layer_type ({pos_enc!r}) "
            f"/ selfattention_layer_type ({self_attn!r}): drop the 'legacy_' types"
        )
    if pos_enc.endswith("rel_pos") != self_attn.endswith("rel_selfattn"):
        raise ValueError(
            f"pos_enc_layer_type ({pos_enc!r}) and selfattention_layer_type "
            f"({self_attn!r}) disagree: relative positions need relative "
            "self-attention and vice versa"
        )
    kernel = conf["cnn_module_kernel"]
    if conf["use_cnn_module"] and (kernel < 1 or kernel % 2 == 0):
        raise ValueError(f"cnn_module_kernel ({kernel}) must be odd ('same' padding)")
    _check_layer_options(conf)
    if conf["use_sdpa"] and not ESPNET_HAS_SDPA:
        raise ValueError(
            "use_sdpa (True) needs ESPnet 202611 or newer; this ESPnet's attention "
            "has no SDPA path"
        )


def _check_layer_options(conf: Mapping[str, Any]) -> None:
    """The options that count virtual layers (``num_blocks`` of them)."""
    num_blocks = conf["num_blocks"]
    bad = [i for i in conf["interctc_layer_idx"] if not 0 < i < num_blocks]
    if bad:
        raise ValueError(
            f"interctc_layer_idx ({conf['interctc_layer_idx']}) has layers {bad} "
            f"outside 1..{num_blocks - 1}: it counts virtual layers, num_blocks "
            f"({num_blocks})"
        )
    rates = conf["stochastic_depth_rate"]
    if isinstance(rates, list) and len(rates) != num_blocks:
        raise ValueError(
            f"stochastic_depth_rate ({rates}) has {len(rates)} entries; it needs "
            f"one per virtual layer, num_blocks ({num_blocks})"
        )
    if not all(0.0 <= p < 1.0 for p in (rates if isinstance(rates, list) else [rates])):
        raise ValueError(f"stochastic_depth_rate ({rates}) must lie in [0, 1)")
    if not 0.0 <= conf["layer_drop_rate"] < 1.0:
        raise ValueError(
            f"layer_drop_rate ({conf['layer_drop_rate']}) must lie in [0, 1)"
        )
