"""Compression of a trained Conformer: SVD init, shared factors, the CLI, int8."""

import numpy as np
import pytest
import torch
import yaml

from espnet_shared_conformer import register
from espnet_shared_conformer.compress import (
    compress_encoder,
    compress_state_dict,
    main,
    truncated_svd,
)
from espnet_shared_conformer.modules import LowRankLinear, resolve

from conftest import batch, build, build_espnet


def _dense(state, name):
    """W (out x in) of projection ``name`` in an unshared, full-rank state_dict."""
    w = state[f"{name}.weight"]
    return w.reshape(w.shape[0], -1)


def _product(encoder, name):
    """B A of the low-rank projection ``name`` (aliases resolved)."""
    layer = encoder
    for part in name.split("."):
        layer = resolve(getattr(layer, part))
    assert isinstance(layer, LowRankLinear)
    return resolve(layer.b).weight @ resolve(layer.a).weight


@pytest.mark.parametrize("shape", [(12, 7), (7, 12), (9, 9)])
def test_truncated_svd_at_full_rank_reproduces_the_weight(shape):
    w = torch.randn(*shape, generator=torch.Generator().manual_seed(0))
    b, a = truncated_svd(w, min(shape))
    assert b.shape == (shape[0], min(shape)) and a.shape == (min(shape), shape[1])
    torch.testing.assert_close(b @ a, w, atol=1e-5, rtol=1e-5)


def test_truncated_svd_splits_singular_values_evenly():
    w = torch.randn(10, 6, generator=torch.Generator().manual_seed(1))
    b, a = truncated_svd(w, 3)
    # B^T B = A A^T = S_r: both factors carry sqrt of each singular value.
    torch.testing.assert_close(b.T @ b, a @ a.T, atol=1e-5, rtol=1e-5)


def test_unshared_rank_r_error_is_the_best_rank_r_error():
    source = build(seed=0)
    target = build(seed=7, lowrank_rank=5)
    state = source.state_dict()
    report = compress_encoder(state, target)
    assert len(report.projections) == 4 * (2 + 2 + 5 + 2)  # layers x projections
    for p in report.projections:
        w = _dense(state, p.name)
        s = torch.linalg.svdvals(w.double())
        best = (s[p.rank :].square().sum().sqrt() / s.square().sum().sqrt()).item()
        assert p.shared_by == 1
        assert p.error == pytest.approx(best, rel=1e-4)
        actual = torch.linalg.norm(w - _product(target, p.name)) / torch.linalg.norm(w)
        assert actual.item() == pytest.approx(best, rel=1e-3)
        # Bias kept as it was.
        bias = state.get(f"{p.name}.bias")
        if bias is not None:
            torch.testing.assert_close(
                target.state_dict()[f"{p.name}.bias"], bias, rtol=0, atol=0
            )


@pytest.mark.parametrize("factor", ["in", "out"])
def test_shared_factor_is_the_best_common_subspace(factor):
    """sum_i ||W_i - B_i A||^2 equals the dropped energy of the stacked matrix."""
    source = build(seed=0)
    target = build(seed=7, lowrank_rank=6, lowrank_shared_factor=factor)
    state = source.state_dict()
    report = compress_encoder(state, target)
    by_position = {}
    for p in report.projections:
        position = p.name.split(".", 2)[2]
        by_position.setdefault(position, []).append(p)
    assert len(by_position) == 11
    for position, members in by_position.items():
        assert [p.shared_by for p in members] == [4] * 4
        ws = [_dense(state, p.name).double() for p in members]
        stacked = torch.cat(ws, dim=0 if factor == "in" else 1)
        s = torch.linalg.svdvals(stacked)
        dropped = s[6:].square().sum().item()
        squared = sum(
            (p.error * torch.linalg.norm(w).item()) ** 2
            for p, w in zip(members, ws, strict=True)
        )
        assert squared == pytest.approx(dropped, rel=1e-3), position
        # And the factors in the encoder really give those errors.
        for p, w in zip(members, ws, strict=True):
            product = _product(target, p.name).double()
            error = (torch.linalg.norm(w - product) / torch.linalg.norm(w)).item()
            assert error == pytest.approx(p.error, rel=1e-3)
    # Better than factorizing every layer alone is impossible; worse than 1 is wrong.
    assert all(0 < p.error < 1 for p in report.projections)


@pytest.mark.parametrize("source_kind", ["espnet", "shared_conformer"])
def test_sharing_nothing_is_a_copy(source_kind):
    source = (build_espnet if source_kind == "espnet" else build)(seed=0).eval()
    state, report = compress_state_dict(
        source.state_dict(), dict(build(seed=0).build_options)
    )
    assert report.parameters_before == report.parameters_after
    assert report.projections == ()
    for key, value in source.state_dict().items():
        torch.testing.assert_close(state[key], value, rtol=0, atol=0)


@pytest.mark.parametrize("init", ["first", "mean"])
def test_repeated_blocks_start_from_the_layers_they_replace(init):
    source = build(seed=0)
    state = source.state_dict()
    target = build(seed=7, num_unique_blocks=2, repeat_schedule="consecutive")
    report = compress_encoder(state, target, init=init)
    assert report.parameters_after < report.parameters_before
    got = target.state_dict()
    for block, layers in ((0, (0, 1)), (1, (2, 3))):
        for name in ("self_attn.linear_q.weight", "conv_module.norm.running_var"):
            values = [state[f"encoders.{i}.{name}"] for i in layers]
            expected = values[0] if init == "first" else (values[0] + values[1]) / 2
            torch.testing.assert_close(got[f"encoders.{block}.{name}"], expected)


def test_per_layer_norms_come_from_their_own_layers():
    source = build(seed=0)
    state = source.state_dict()
    target = build(seed=7, num_unique_blocks=1, per_layer_norms=True)
    compress_encoder(state, target)
    for layer in range(4):
        torch.testing.assert_close(
            target.state_dict()[f"layer_norms.{layer}.norm_mha.weight"],
            state[f"encoders.{layer}.norm_mha.weight"],
            rtol=0,
            atol=0,
        )


def test_everything_shared_still_encodes_close_at_high_rank():
    """Rank just below full on an unshared model: outputs barely move."""
    source = build(seed=0).eval()
    target = build(seed=7, lowrank_rank=15).eval()
    compress_encoder(source.state_dict(), target)
    x, lengths = batch()
    with torch.no_grad():
        reference, approx = source(x, lengths)[0], target(x, lengths)[0]
    assert (torch.linalg.norm(reference - approx) / torch.linalg.norm(reference)) < 0.1


def test_mismatched_source_is_an_error():
    with pytest.raises(ValueError, match="num_blocks"):
        compress_encoder(build(seed=0, num_blocks=6).state_dict(), build(seed=1))
    with pytest.raises(ValueError, match="nothing for"):
        compress_encoder(build(seed=0, num_blocks=2).state_dict(), build(seed=1))
    with pytest.raises(ValueError, match="init"):
        compress_encoder(build(seed=0).state_dict(), build(seed=1), init="last")


def test_quantized_shared_lowrank_encoder_stays_close_to_fp32():
    encoder = build(
        seed=0,
        num_blocks=6,
        num_unique_blocks=2,
        lowrank_rank=8,
        lowrank_shared_factor="in",
        tie_attention_projections="qk",
        share_across_layers=["conv"],
    ).eval()
    quantized = torch.ao.quantization.quantize_dynamic(
        encoder, {torch.nn.Linear}, torch.qint8
    )
    dynamic = torch.ao.nn.quantized.dynamic.Linear
    assert isinstance(quantized.encoders[0].self_attn.linear_q.a, dynamic)
    assert resolve(quantized.encoders[1].self_attn.linear_q.a) is (
        quantized.encoders[0].self_attn.linear_q.a
    )
    x, lengths = batch(lengths=(60, 41))
    with torch.no_grad():
        reference, olens = encoder(x, lengths)[:2]
        approx, qlens = quantized(x, lengths)[:2]
    assert torch.equal(olens, qlens)
    mask = torch.arange(reference.size(1))[None, :] < olens[:, None]
    error = torch.linalg.norm((reference - approx)[mask]) / torch.linalg.norm(
        reference[mask]
    )
    assert 0 < error < 0.05  # int8 changes something, but little


# -- the command, on an ESPnet model ------------------------------------------

TOKENS = ["<blank>", "<unk>", "A", "B", "C", "D", "E", "<sos/eos>"]


def _trained_model(tmp_path):
    """An ESPnet ASR model with a plain `conformer` encoder, as training leaves it."""
    from espnet2.tasks.asr import ASRTask

    config = dict(
        frontend="default",
        frontend_conf=dict(n_fft=256, win_length=256, hop_length=128, n_mels=20),
        normalize="utterance_mvn",
        encoder="conformer",
        encoder_conf=dict(
            output_size=32,
            attention_heads=2,
            linear_units=48,
            num_blocks=4,
            cnn_module_kernel=7,
            macaron_style=True,
            rel_pos_type="latest",
        ),
        decoder="transformer",
        decoder_conf=dict(attention_heads=2, linear_units=32, num_blocks=1),
        model_conf=dict(ctc_weight=0.5),
    )
    (tmp_path / "train.yaml").write_text(yaml.safe_dump(config))
    (tmp_path / "tokens.txt").write_text("\n".join(TOKENS) + "\n")
    args = ASRTask.get_parser().parse_args(
        [
            "--config",
            str(tmp_path / "train.yaml"),
            "--token_list",
            str(tmp_path / "tokens.txt"),
            "--token_type",
            "char",
            "--output_dir",
            str(tmp_path),
        ]
    )
    torch.manual_seed(0)
    model = ASRTask.build_model(args)
    exp = tmp_path / "exp"
    exp.mkdir()
    (exp / "config.yaml").write_text(yaml.safe_dump(vars(args)))
    torch.save(model.state_dict(), exp / "valid.acc.ave.pth")
    return exp


def test_command_writes_a_model_espnet_decodes(tmp_path, capsys):
    from espnet2.bin.asr_inference import Speech2Text
    from espnet2.tasks.asr import ASRTask

    exp = _trained_model(tmp_path)
    out = tmp_path / "compressed"
    argv = [
        "--config",
        str(exp / "config.yaml"),
        "--model",
        str(exp / "valid.acc.ave.pth"),
        "--out_dir",
        str(out),
        "--lowrank_rank",
        "8",
        "--num_unique_blocks",
        "2",
        "--share_across_layers",
        "conv",
        "--lowrank_shared_factor",
        "in",
    ]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "||W-BA||/||W||" in printed and "fewer" in printed

    before = yaml.safe_load((exp / "config.yaml").read_text())
    after = yaml.safe_load((out / "config.yaml").read_text())
    assert after["encoder"] == "shared_conformer"
    assert after["encoder_conf"] == dict(
        before["encoder_conf"],
        lowrank_rank=8,
        num_unique_blocks=2,
        share_across_layers=["conv"],
        lowrank_shared_factor="in",
    )
    assert {k: v for k, v in after.items() if k not in ("encoder", "encoder_conf")} == {
        k: v for k, v in before.items() if k not in ("encoder", "encoder_conf")
    }

    register()
    source = ASRTask.build_model_from_file(
        exp / "config.yaml", exp / "valid.acc.ave.pth", "cpu"
    )[0]
    model = ASRTask.build_model_from_file(
        out / "config.yaml", out / "model.pth", "cpu"
    )[0]
    assert sum(p.numel() for p in model.encoder.parameters()) < sum(
        p.numel() for p in source.encoder.parameters()
    )
    torch.testing.assert_close(
        model.decoder.state_dict(), source.decoder.state_dict(), rtol=0, atol=0
    )

    speech = np.random.default_rng(0).standard_normal(8000).astype(np.float32)
    for quantize in (False, True):
        speech2text = Speech2Text(
            asr_train_config=str(out / "config.yaml"),
            asr_model_file=str(out / "model.pth"),
            device="cpu",
            beam_size=2,
            ctc_weight=0.5,
            nbest=1,
            maxlenratio=0.2,
            quantize_asr_model=quantize,
        )
        text, tokens, _, _ = speech2text(speech)[0]
        assert all(t in TOKENS for t in tokens)
        assert text == "".join(tokens)


def test_command_refuses_an_already_shared_encoder(tmp_path, capsys):
    exp = _trained_model(tmp_path)
    config = yaml.safe_load((exp / "config.yaml").read_text())
    config["encoder"] = "shared_conformer"
    config["encoder_conf"]["num_unique_blocks"] = 2
    (exp / "config.yaml").write_text(yaml.safe_dump(config))
    argv = ["--config", str(exp / "config.yaml"), "--model", str(exp / "x.pth")]
    assert main(argv + ["--out_dir", str(tmp_path / "o"), "--lowrank_rank", "4"]) == 1
    assert "already shares" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
