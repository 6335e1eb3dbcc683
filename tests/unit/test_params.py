"""Parameter counts follow the counting rule, and the report command works."""

import itertools
import subprocess
import sys

import pytest
import torch
import yaml

from espnet_shared_conformer.params import (
    ParameterReport,
    count_parameters,
    encoder_block_parameters,
    main,
    parameters_by_part,
    virtual_equivalent_options,
)

from conftest import TINY, build

SHARING = [
    {},
    dict(num_blocks=6, num_unique_blocks=2),
    dict(num_blocks=6, num_unique_blocks=3, per_layer_norms=True),
    dict(share_across_layers=["mhsa", "conv"]),
    dict(tie_macaron_ffn=True),
    dict(tie_macaron_ffn=True, share_across_layers=["ffn", "ffn_macaron"]),
    dict(tie_attention_projections="qk"),
    dict(tie_attention_projections="qkv", lowrank_rank=4),
    dict(lowrank_rank=5, lowrank_modules=["ffn", "conv"]),
    dict(lowrank_rank=4, lowrank_shared_factor="in"),
    dict(
        lowrank_rank=4, lowrank_shared_factor="out", num_blocks=6, num_unique_blocks=3
    ),
    dict(
        num_blocks=8,
        num_unique_blocks=2,
        share_across_layers=["conv"],
        tie_macaron_ffn=True,
        tie_attention_projections="qk",
        lowrank_rank=4,
        lowrank_shared_factor="in",
        per_layer_norms=True,
    ),
]
ARCHITECTURE = [
    dict(),
    dict(macaron_style=False, use_cnn_module=False),
    dict(
        pos_enc_layer_type="abs_pos", selfattention_layer_type="selfattn", qk_norm=True
    ),
    dict(concat_after=True, normalize_before=False),
]


def _compatible(sharing, architecture):
    if architecture.get("macaron_style") is False:
        if sharing.get("tie_macaron_ffn") or "ffn_macaron" in sharing.get(
            "share_across_layers", []
        ):
            return False
    if architecture.get("use_cnn_module") is False:
        if "conv" in sharing.get("share_across_layers", []) + sharing.get(
            "lowrank_modules", []
        ):
            return False
    return True


GRID = [
    {**a, **s} for s, a in itertools.product(SHARING, ARCHITECTURE) if _compatible(s, a)
]


@pytest.mark.parametrize("options", GRID, ids=[str(i) for i in range(len(GRID))])
def test_rule_matches_the_built_encoder(options):
    encoder = build(**options)
    expected = encoder_block_parameters({**TINY, **options})
    assert count_parameters(encoder) - count_parameters(encoder.embed) == expected


@pytest.mark.parametrize("positionwise", ["conv1d", "conv1d-linear"])
def test_rule_counts_convolutional_feed_forward(positionwise):
    options = dict(
        positionwise_layer_type=positionwise,
        positionwise_conv_kernel_size=3,
        lowrank_rank=4,
        lowrank_modules=["mhsa"],
    )
    encoder = build(**options)
    assert count_parameters(encoder) - count_parameters(encoder.embed) == (
        encoder_block_parameters({**TINY, **options})
    )


def test_rule_for_a_paper_scale_config_by_hand():
    # d=256, f=1024, 16 virtual layers over 4 blocks, rank 64 with a shared A.
    options = dict(
        output_size=256,
        linear_units=1024,
        num_blocks=16,
        num_unique_blocks=4,
        macaron_style=True,
        lowrank_rank=64,
        lowrank_shared_factor="in",
        cnn_module_kernel=15,
    )
    d, f, r, k = 256, 1024, 64, 15
    shared_a = 2 * (r * d + r * f) + 5 * r * d + 2 * r * d  # ffn x2, mhsa x5, conv x2
    per_block = (
        2 * (f * r + f + d * r + d)  # two FFNs: B factors and biases
        + 4 * (d * r + d)
        + d * r
        + 2 * d  # attention: q, k, v, out (+bias), pos, pos_bias
        + (2 * d * r + 2 * d)
        + (d * r + d)
        + d * k
        + d
        + 2 * d  # convolution module
        + 5 * 2 * d  # LayerNorms
    )
    assert encoder_block_parameters(options) == shared_a + 4 * per_block + 2 * d


def test_virtual_equivalent_drops_every_sharing_option():
    options = dict(TINY, num_unique_blocks=2, lowrank_rank=4, per_layer_norms=True)
    virtual = virtual_equivalent_options(options)
    assert virtual == TINY
    assert encoder_block_parameters(virtual) > encoder_block_parameters(options)


def _config(tmp_path, encoder, encoder_conf):
    config = dict(
        frontend="default",
        frontend_conf=dict(n_fft=512, hop_length=160),
        encoder=encoder,
        encoder_conf=encoder_conf,
        decoder="transformer",
        decoder_conf=dict(attention_heads=2, linear_units=32, num_blocks=1),
        model_conf=dict(ctc_weight=0.3),
    )
    path = tmp_path / f"{encoder}.yaml"
    path.write_text(yaml.safe_dump(config))
    return str(path)


ENCODER_CONF = dict(
    output_size=32,
    attention_heads=2,
    linear_units=64,
    num_blocks=8,
    cnn_module_kernel=7,
    macaron_style=True,
)


def test_report_builds_the_model_by_name(tmp_path):
    conf = dict(ENCODER_CONF, num_unique_blocks=2, lowrank_rank=8)
    report = ParameterReport.from_config(
        _config(tmp_path, "shared_conformer", conf), vocab_size=50
    )
    plain = ParameterReport.from_config(
        _config(tmp_path, "conformer", ENCODER_CONF), vocab_size=50
    )
    assert report.vocab_size == 50
    assert report.total == sum(report.parts.values())
    assert report.parts["decoder"] == plain.parts["decoder"] > 0
    assert report.parts["ctc"] == 50 * 32 + 50
    # The virtual-equivalent of the shared encoder is the plain Conformer.
    assert report.encoder_virtual == plain.encoder == plain.encoder_virtual
    assert report.compression == plain.encoder / report.encoder > 3


def test_report_command(tmp_path):
    conf = _config(
        tmp_path, "shared_conformer", dict(ENCODER_CONF, num_unique_blocks=4)
    )
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "espnet_shared_conformer.params",
            "--config",
            conf,
            "--vocab_size",
            "40",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    report = ParameterReport.from_config(conf, vocab_size=40)
    assert f"encoder compression: {report.compression:.2f}x" in result.stdout
    assert "fp32" in result.stdout and "int8" in result.stdout
    for part in ("encoder", "decoder", "ctc", "total"):
        assert part in result.stdout


def test_report_command_missing_config(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "espnet_shared_conformer.params",
            "--config",
            str(tmp_path / "nope.yaml"),
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1
    assert "nope.yaml" in result.stderr


def test_report_reads_an_experiments_dumped_config(tmp_path):
    """ESPnet's config.yaml in an experiment dir also holds trainer-set values
    (``required``, ``distributed``) that its parser rejects, and the path of
    the training config relative to where training ran; a hand-written config
    with an unknown key is still refused."""
    path = _config(
        tmp_path, "shared_conformer", dict(ENCODER_CONF, num_unique_blocks=2)
    )
    direct = ParameterReport.from_config(path, vocab_size=50)
    dumped = yaml.safe_load(open(path))
    dumped.update(
        required=["output_dir", "token_list"],
        distributed=False,
        config="conf/not_here.yaml",
    )
    dump_path = tmp_path / "exp_config.yaml"
    dump_path.write_text(yaml.safe_dump(dumped))
    assert (
        ParameterReport.from_config(str(dump_path), vocab_size=50).total == direct.total
    )

    typo = yaml.safe_load(open(path))
    typo["encoder_confx"] = {}
    typo_path = tmp_path / "typo.yaml"
    typo_path.write_text(yaml.safe_dump(typo))
    with pytest.raises(SystemExit):
        ParameterReport.from_config(str(typo_path), vocab_size=50)


def test_a_tensor_two_modules_share_counts_once():
    first, second = torch.nn.Linear(3, 4), torch.nn.Linear(3, 4)
    second.weight = first.weight
    assert count_parameters(first, second) == 12 + 4 + 4
    model = torch.nn.Sequential(first, second)
    assert parameters_by_part(model) == {"0": 16, "1": 4}
    assert parameters_by_part(model, ["1", "missing", "0"]) == {"1": 16, "0": 4}


def test_report_gives_a_streaming_encoders_cache_by_the_formula(tmp_path, capsys):
    streaming = dict(causal_conv=True, chunk_size=4, rel_pos_type="latest")
    conf = dict(ENCODER_CONF, **streaming, num_left_chunks=2)
    path = _config(tmp_path, "shared_conformer", conf)
    report = ParameterReport.from_config(path, vocab_size=40)
    # V (2 d N C + d (k - 1)) + D (S (C - 1) + R - 1): d 32, V 8, k 7, 80
    # mel bins into conv2d (R 7, S 4).
    assert report.streaming_cache.total == 8 * (2 * 32 * 2 * 4 + 32 * 6) + 80 * 18
    line = report.format().splitlines()[-1]
    assert line.startswith("  streaming cache per stream (chunk 4, 2 left chunks)")
    assert "28.29 KB" in line  # 28288 bytes
    assert main(["--config", path, "--vocab_size", "40"]) == 0
    assert line in capsys.readouterr().out

    unbounded = dict(ENCODER_CONF, **streaming)
    report = ParameterReport.from_config(
        _config(tmp_path, "shared_conformer", unbounded), vocab_size=40
    )
    assert report.streaming_cache.total is None
    assert "per output frame, unbounded" in report.format()

    # Trained with dynamic chunks, evaluated at full context: the nominal
    # chunk, and the nominal left chunks only where the config sets none.
    dynamic = dict(
        ENCODER_CONF,
        causal_conv=True,
        dynamic_chunk_training=True,
        rel_pos_type="latest",
    )
    cache = ParameterReport.from_config(
        _config(tmp_path, "shared_conformer", dynamic), vocab_size=40
    ).streaming_cache
    assert (cache.chunk_size, cache.num_left_chunks) == (16, 4)
    assert cache.total == 8 * (2 * 32 * 4 * 16 + 32 * 6) + 80 * 66
    cache = ParameterReport.from_config(
        _config(tmp_path, "shared_conformer", dict(dynamic, num_left_chunks=1)),
        vocab_size=40,
    ).streaming_cache
    assert (cache.chunk_size, cache.num_left_chunks) == (16, 1)

    plain = ParameterReport.from_config(
        _config(tmp_path, "shared_conformer", ENCODER_CONF), vocab_size=40
    )
    assert plain.streaming_cache is None
    assert "streaming cache" not in plain.format()
