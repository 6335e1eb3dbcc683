"""SharingOptions: each sharing option defined once, read by all that lists them."""

import dataclasses
import inspect
import io
import sys

import pytest
import yaml
from typeguard import TypeCheckError

from espnet_shared_conformer._compat import ConformerEncoder
from espnet_shared_conformer.bin import asr_train
from espnet_shared_conformer.compress import get_parser
from espnet_shared_conformer.encoder import SharedConformerEncoder, default_options
from espnet_shared_conformer.plan import SharingOptions
from espnet_shared_conformer.streaming import StreamingOptions

from conftest import build

REQUIRED = ["--config", "c.yaml", "--model", "m.pth", "--out_dir", "out"]


def test_the_defaults_share_nothing():
    options = SharingOptions()
    assert options.unshared() == options
    assert options.changed() == {}


def test_lists_are_kept_as_tuples_and_written_back_as_lists():
    options = SharingOptions(
        repeat_schedule=[0, 1, 1, 0],
        share_across_layers=["conv"],
        lowrank_rank=4,
        lowrank_modules=["ffn", "mhsa"],
    )
    assert options.repeat_schedule == (0, 1, 1, 0)
    assert options.lowrank_modules == ("ffn", "mhsa")
    assert options == SharingOptions(**options.to_conf())
    changed = options.changed()
    assert changed == dict(
        repeat_schedule=[0, 1, 1, 0],
        share_across_layers=["conv"],
        lowrank_rank=4,
        lowrank_modules=["ffn", "mhsa"],
    )
    assert yaml.safe_load(yaml.safe_dump(changed)) == changed


def test_unshared_keeps_the_factorization_only():
    options = SharingOptions(
        num_unique_blocks=2,
        repeat_schedule="consecutive",
        share_across_layers=["conv"],
        tie_attention_projections="qk",
        lowrank_rank=4,
        lowrank_modules=["mhsa"],
        lowrank_shared_factor="in",
        per_layer_norms=True,
    )
    assert options.unshared() == SharingOptions(
        lowrank_rank=4, lowrank_modules=["mhsa"]
    )


def test_from_conf_takes_the_sharing_options_of_an_encoder_conf():
    conf = dict(output_size=144, num_blocks=8, num_unique_blocks=4, lowrank_rank=16)
    assert SharingOptions.from_conf(conf) == SharingOptions(
        num_unique_blocks=4, lowrank_rank=16
    )


# A value outside the choices of every option that has choices.
OUTSIDE = dict(
    repeat_schedule="zigzag",
    share_across_layers=["attention"],
    tie_attention_projections="kv",
    lowrank_modules=["attention"],
    lowrank_shared_factor="both",
)


def test_every_option_with_choices_is_tried_outside_them():
    with_choices = {
        o.name for o in dataclasses.fields(SharingOptions) if o.metadata["choices"]
    }
    assert set(OUTSIDE) == with_choices


@pytest.mark.parametrize("name, value", OUTSIDE.items())
def test_a_value_outside_the_choices_is_refused_by_name(name, value):
    word = value[0] if isinstance(value, list) else value
    with pytest.raises(ValueError, match=f"^{name}.*'{word}'"):
        SharingOptions(**{name: value, "lowrank_rank": 2})


def test_a_wrong_type_names_the_option_and_the_type():
    with pytest.raises(
        TypeCheckError, match=r"lowrank_rank \('8'\) must be int or None"
    ):
        SharingOptions(lowrank_rank="8")


def test_an_unknown_encoder_option_is_named():
    with pytest.raises(TypeError, match=r"keyword argument 'num_unique_block'"):
        build(num_unique_block=2)


def test_the_encoder_spells_out_each_sharing_option_with_its_default():
    """ESPnet reads encoder options and defaults from the constructor's
    signature; there they must be SharingOptions' then StreamingOptions'
    fields, in order."""
    parameters = inspect.signature(SharedConformerEncoder).parameters.values()
    keyword_only = {p.name: p.default for p in parameters if p.kind is p.KEYWORD_ONLY}
    groups = dataclasses.fields(SharingOptions) + dataclasses.fields(StreamingOptions)
    assert keyword_only == {o.name: o.default for o in groups}
    assert list(keyword_only) == list(SharingOptions.names()) + list(
        StreamingOptions.names()
    )


def test_the_encoder_keeps_its_streaming_options():
    encoder = build(causal_conv=True, chunk_size=4, num_left_chunks=2)
    assert encoder.streaming == StreamingOptions(
        causal_conv=True, chunk_size=4, num_left_chunks=2
    )
    assert StreamingOptions.from_conf(encoder.build_options) == encoder.streaming
    assert SharingOptions.from_conf(encoder.build_options) == SharingOptions()


def test_print_config_lists_each_sharing_option_with_its_default(monkeypatch):
    # What asr_train --print_config runs; ESPnet parses sys.argv there itself.
    argv = ["asr_train", "--print_config", "--encoder", "shared_conformer"]
    monkeypatch.setattr(sys, "argv", argv)
    printed = io.StringIO()
    asr_train.ASRTask.print_config(file=printed)
    encoder_conf = yaml.safe_load(printed.getvalue())["encoder_conf"]
    defaults = {**SharingOptions().to_conf(), **StreamingOptions().to_conf()}
    assert {k: encoder_conf.get(k, "(missing)") for k in defaults} == defaults


def test_the_encoder_takes_espnets_conformer_options_with_espnets_defaults():
    espnet = inspect.signature(ConformerEncoder).parameters
    ours = default_options()
    assert set(espnet) - {"input_size"} <= set(ours)
    assert {k: ours[k] for k in espnet if k != "input_size"} == {
        k: p.default for k, p in espnet.items() if k != "input_size"
    }
    assert SharingOptions.from_conf(ours) == SharingOptions()
    assert StreamingOptions.from_conf(ours) == StreamingOptions()


def test_the_compress_command_line_defaults_are_the_options_defaults():
    args = get_parser().parse_args(REQUIRED)
    given = {name: getattr(args, name) for name in SharingOptions.names()}
    assert SharingOptions(**given) == SharingOptions()


def test_the_compress_command_line_sets_every_option():
    args = get_parser().parse_args(
        REQUIRED
        + ["--num_unique_blocks", "2", "--repeat_schedule", "0,1,1,0"]
        + ["--share_across_layers", "conv", "mhsa", "--tie_macaron_ffn"]
        + ["--tie_attention_projections", "qkv", "--lowrank_rank", "8"]
        + ["--lowrank_modules", "ffn", "--lowrank_shared_factor", "out"]
        + ["--per_layer_norms"]
    )
    given = SharingOptions(**{n: getattr(args, n) for n in SharingOptions.names()})
    assert given == SharingOptions(
        num_unique_blocks=2,
        repeat_schedule=[0, 1, 1, 0],
        share_across_layers=["conv", "mhsa"],
        tie_macaron_ffn=True,
        tie_attention_projections="qkv",
        lowrank_rank=8,
        lowrank_modules=["ffn"],
        lowrank_shared_factor="out",
        per_layer_norms=True,
    )


@pytest.mark.parametrize(
    "argv",
    [
        ["--repeat_schedule", "zigzag"],
        ["--share_across_layers", "attention"],
        ["--lowrank_shared_factor", "both"],
    ],
)
def test_the_compress_command_line_refuses_what_the_options_refuse(argv, capsys):
    with pytest.raises(SystemExit):
        get_parser().parse_args(REQUIRED + argv)
    assert argv[1] in capsys.readouterr().err
