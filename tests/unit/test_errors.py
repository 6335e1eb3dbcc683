"""Impossible or contradictory options fail at build time, naming option and value."""

import pytest
from typeguard import TypeCheckError

from espnet_shared_conformer._compat import ESPNET_HAS_SDPA

from conftest import build

# (options, words the message must contain)
BAD = {
    "U > V": (
        dict(num_blocks=4, num_unique_blocks=5),
        ["num_unique_blocks (5)", "num_blocks (4)"],
    ),
    "U = 0": (dict(num_unique_blocks=0), ["num_unique_blocks (0)"]),
    "V = 0": (dict(num_blocks=0), ["num_blocks (0)"]),
    "unknown schedule": (
        dict(repeat_schedule="zigzag"),
        ["repeat_schedule ('zigzag')"],
    ),
    "schedule too short": (
        dict(num_unique_blocks=2, repeat_schedule=[0, 1, 0]),
        ["repeat_schedule ([0, 1, 0])", "num_blocks (4)"],
    ),
    "schedule index >= U": (
        dict(num_unique_blocks=2, repeat_schedule=[0, 1, 2, 0]),
        ["repeat_schedule", "[2]", "num_unique_blocks 2"],
    ),
    "schedule skips a block": (
        dict(num_unique_blocks=3, repeat_schedule=[0, 1, 1, 0]),
        ["never uses blocks [2]"],
    ),
    "unknown module": (
        dict(share_across_layers=["attention"]),
        ["share_across_layers", "'attention'"],
    ),
    "schedule of strings": (
        dict(repeat_schedule=[0, "1", 2, 3]),
        ["repeat_schedule ([0, '1', 2, 3])", "integer"],
    ),
    "repeated module": (
        dict(share_across_layers=["ffn", "ffn"]),
        ["share_across_layers (['ffn', 'ffn'])"],
    ),
    "share absent conv": (
        dict(use_cnn_module=False, share_across_layers=["conv"]),
        ["'conv'", "use_cnn_module"],
    ),
    "share absent macaron": (
        dict(macaron_style=False, share_across_layers=["ffn_macaron"]),
        ["'ffn_macaron'"],
    ),
    "tie without macaron": (
        dict(macaron_style=False, tie_macaron_ffn=True),
        ["tie_macaron_ffn (True)", "macaron_style"],
    ),
    "tie contradicts share": (
        dict(tie_macaron_ffn=True, share_across_layers=["ffn_macaron"]),
        ["tie_macaron_ffn (True)", "['ffn_macaron']"],
    ),
    "unknown tie": (
        dict(tie_attention_projections="kv"),
        ["tie_attention_projections ('kv')"],
    ),
    "rank >= d": (dict(lowrank_rank=16), ["lowrank_rank (16)", "output_size 16"]),
    "rank >= f in ffn": (
        dict(output_size=32, linear_units=24, lowrank_rank=24, lowrank_modules=["ffn"]),
        ["lowrank_rank (24)", "ffn.w_1"],
    ),
    "rank 0": (dict(lowrank_rank=0), ["lowrank_rank (0)"]),
    "unknown factor": (
        dict(lowrank_rank=2, lowrank_shared_factor="both"),
        ["lowrank_shared_factor ('both')"],
    ),
    "modules without rank": (
        dict(lowrank_modules=["mhsa"]),
        ["lowrank_modules (['mhsa'])", "lowrank_rank"],
    ),
    "factor without rank": (
        dict(lowrank_shared_factor="in"),
        ["lowrank_shared_factor ('in')", "lowrank_rank"],
    ),
    "low-rank conv1d ffn": (
        dict(lowrank_rank=2, positionwise_layer_type="conv1d"),
        ["positionwise_layer_type 'linear'", "'conv1d'"],
    ),
    "heads do not divide d": (
        dict(attention_heads=3),
        ["output_size (16)", "attention_heads (3)"],
    ),
    "even conv kernel": (dict(cnn_module_kernel=4), ["cnn_module_kernel (4)"]),
    "interctc beyond V": (
        dict(interctc_layer_idx=[2, 4]),
        ["interctc_layer_idx ([2, 4])", "[4]"],
    ),
    "interctc zero": (dict(interctc_layer_idx=[0]), ["interctc_layer_idx ([0])"]),
    "stochastic depth length": (
        dict(stochastic_depth_rate=[0.1, 0.1]),
        ["stochastic_depth_rate", "num_blocks (4)"],
    ),
    "stochastic depth 1": (dict(stochastic_depth_rate=1.0), ["stochastic_depth_rate"]),
    "layer drop 1": (dict(layer_drop_rate=1.0), ["layer_drop_rate (1.0)"]),
    "unknown input layer": (dict(input_layer="conv3d"), ["input_layer ('conv3d')"]),
    "subsampling channels without convolutions": (
        dict(input_layer="linear", subsampling_channels=8),
        ["subsampling_channels (8)", "input_layer ('linear')"],
    ),
    "subsampling channels 0": (
        dict(subsampling_channels=0),
        ["subsampling_channels (0)", "positive"],
    ),
    "input layer none": (
        dict(input_layer=None),
        ["input_size (20)", "output_size (16)"],
    ),
    "unknown positionwise": (
        dict(positionwise_layer_type="mlp"),
        ["positionwise_layer_type ('mlp')"],
    ),
    "unknown rel_pos_type": (dict(rel_pos_type="new"), ["rel_pos_type ('new')"]),
    "unknown pos enc": (
        dict(pos_enc_layer_type="rope"),
        ["pos_enc_layer_type ('rope')"],
    ),
    "latest with legacy": (
        dict(
            rel_pos_type="latest",
            pos_enc_layer_type="legacy_rel_pos",
            selfattention_layer_type="legacy_rel_selfattn",
        ),
        ["rel_pos_type ('latest')"],
    ),
    "relative pos, absolute attention": (
        dict(pos_enc_layer_type="rel_pos", selfattention_layer_type="selfattn"),
        ["'rel_pos'", "'selfattn'"],
    ),
}


@pytest.mark.parametrize("options,words", BAD.values(), ids=BAD.keys())
def test_bad_options_raise_value_error(options, words):
    with pytest.raises(ValueError) as info:
        build(**options)
    for word in words:
        assert word in str(info.value)


@pytest.mark.skipif(ESPNET_HAS_SDPA, reason="this ESPnet has SDPA")
def test_sdpa_needs_a_newer_espnet():
    with pytest.raises(ValueError, match="use_sdpa"):
        build(use_sdpa=True)


@pytest.mark.parametrize(
    "options",
    [
        dict(num_unique_blocks="2"),
        dict(lowrank_rank=2.5),
        dict(share_across_layers="mhsa"),
        dict(per_layer_norms="yes"),
        dict(lowrank_rank=2, lowrank_modules="ffn"),
    ],
)
def test_wrong_types_rejected_like_espnet(options):
    with pytest.raises(TypeCheckError):
        build(**options)
