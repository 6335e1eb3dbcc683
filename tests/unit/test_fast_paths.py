"""The faster computations the blocks use agree with ESPnet's own.

Relative-position attention, the depthwise convolution and the Swish
activation each have a faster path (see ``modules.py``); these tests hold
each against the ESPnet computation it replaces, forward and backward, padded
and unpadded, and check that the encoder really takes them.
"""

import copy

import pytest
import torch
from torch import nn

from espnet_shared_conformer import _compat, modules
from espnet_shared_conformer import encoder as encoder_module
from espnet_shared_conformer._compat import (
    ESPNET_HAS_SDPA,
    RelPositionMultiHeadedAttention,
    Swish,
)
from espnet_shared_conformer.modules import RelPositionAttention

from conftest import build

D_MODEL, HEADS = 24, 3  # d_k = 8: 1/sqrt(d_k) is not a power of two


def _pos_emb(time: int, batch: int = 1) -> torch.Tensor:
    return torch.randn(batch, 2 * time - 1, D_MODEL)


def _pair(**kwargs):
    """ESPnet's attention and a copy of it that runs the faster forward."""
    torch.manual_seed(0)
    ref = RelPositionMultiHeadedAttention(HEADS, D_MODEL, 0.0, **kwargs)
    fast = RelPositionAttention.adopt(copy.deepcopy(ref))
    assert type(fast) is RelPositionAttention
    return ref, fast


@pytest.mark.parametrize("time", [1, 2, 7, 30])
def test_rel_shift_view_equals_espnet_rel_shift(time):
    ref, _ = _pair()
    matrix_bd = torch.randn(2, HEADS, time, 2 * time - 1)
    torch.testing.assert_close(
        modules._rel_shift(matrix_bd), ref.rel_shift(matrix_bd), rtol=0, atol=0
    )


def _mask(lengths, time, shape="keys"):
    """(B, 1, T) key mask; "square": (B, T, T), the key mask on every query;
    "rows": (B, T, T), padded queries masked out entirely."""
    mask = (torch.arange(time)[None, :] < torch.tensor(lengths)[:, None])[:, None]
    if shape == "keys":
        return mask
    square = mask.expand(-1, time, -1)
    return square & mask.transpose(1, 2) if shape == "rows" else square


@pytest.mark.parametrize(
    "lengths, shape",
    [
        ((9, 9), "keys"),
        ((9, 5), "keys"),
        ((9, 4), "square"),
        ((9, 9), "square"),
        ((9, 4), "rows"),
    ],
    ids=["full", "padded", "padded-square", "full-square", "padded-rows"],
)
def test_attention_equals_espnet_forward_and_backward(lengths, shape):
    ref, fast = _pair()
    time = max(lengths)
    x = torch.randn(len(lengths), time, D_MODEL)
    pos_emb = _pos_emb(time)
    mask = _mask(lengths, time, shape)
    outputs, grads = [], []
    for module in (ref, fast):
        x_in = x.clone().requires_grad_()
        out = module(x_in, x_in, x_in, pos_emb, mask)
        out.pow(2).sum().backward()
        outputs.append((out, module.attn))
        grads.append([x_in.grad] + [p.grad for p in module.parameters()])
    (out_ref, attn_ref), (out_fast, attn_fast) = outputs
    # Padded queries differ by rounding only; compare every row, as ESPnet's.
    torch.testing.assert_close(out_fast, out_ref, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(attn_fast, attn_ref, rtol=1e-5, atol=1e-6)
    for got, want in zip(*grads, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize(
    "kwargs",
    [dict(zero_triu=True)] + ([dict(use_sdpa=True)] if ESPNET_HAS_SDPA else []),
    ids=lambda kwargs: next(iter(kwargs)),
)
def test_attention_options_keep_espnet_computation(kwargs, monkeypatch):
    ref, fast = _pair(**kwargs)
    shifts = []
    monkeypatch.setattr(modules, "_rel_shift", lambda m: shifts.append(m) or m)
    x, pos_emb, mask = torch.randn(2, 6, D_MODEL), _pos_emb(6), _mask((6, 4), 6)
    with torch.no_grad():
        torch.testing.assert_close(
            fast(x, x, x, pos_emb, mask), ref(x, x, x, pos_emb, mask)
        )
    assert not shifts


def test_attention_takes_the_fast_path(monkeypatch):
    _, fast = _pair()
    shifts = []
    real = modules._rel_shift
    monkeypatch.setattr(modules, "_rel_shift", lambda m: shifts.append(m) or real(m))
    x = torch.randn(1, 5, D_MODEL)
    fast(x, x, x, _pos_emb(5), _mask((5,), 5))
    assert len(shifts) == 1


def test_only_espnet_latest_attention_is_adopted():
    attention = _compat._backend("transformer.attention")
    legacy = attention.LegacyRelPositionMultiHeadedAttention(HEADS, D_MODEL, 0.0)
    assert RelPositionAttention.adopt(legacy) is legacy
    assert type(legacy) is not RelPositionAttention


@pytest.mark.parametrize("lengths", [(40, 40), (40, 23)], ids=["full", "padded"])
@pytest.mark.parametrize("kernel", [3, 15])
def test_depthwise_equals_conv1d(kernel, lengths):
    torch.manual_seed(0)
    conv = nn.Conv1d(D_MODEL, D_MODEL, kernel, padding=kernel // 2, groups=D_MODEL)
    x = torch.randn(len(lengths), max(lengths), D_MODEL)
    x = x * _mask(lengths, x.size(1)).transpose(1, 2)
    results = []
    for fn in (
        lambda x: conv(x.transpose(1, 2)),
        lambda x: modules._depthwise(conv, x),
    ):
        conv.zero_grad()
        x_in = x.clone().requires_grad_()
        out = fn(x_in)
        (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
        results.append([out, x_in.grad, conv.weight.grad, conv.bias.grad])
    for got, want in zip(*reversed(results), strict=True):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


def test_encoder_blocks_take_the_fast_modules():
    encoder = build(seed=0)
    for block in encoder.encoders:
        assert type(block.self_attn) is RelPositionAttention
        assert type(block.feed_forward.activation) is nn.SiLU
        assert type(block.conv_module.activation) is nn.SiLU
    assert not any(type(m) is Swish for m in encoder.modules())
    legacy = build(seed=0, rel_pos_type="legacy")
    assert all(type(b.self_attn) is not RelPositionAttention for b in legacy.encoders)


def test_silu_equals_espnet_swish():
    x = torch.randn(1000) * 8
    torch.testing.assert_close(nn.SiLU()(x), Swish()(x), rtol=1e-6, atol=1e-7)


def test_padding_is_checked_on_the_cpu_only():
    full = torch.ones(2, 1, 5, dtype=torch.bool)
    assert encoder_module._layer_masks(full) is None
    padded = _mask((5, 3), 5)
    assert encoder_module._layer_masks(padded) is padded
    # Off the CPU the answer is never read back (a meta tensor has no data).
    on_meta = torch.ones(2, 1, 5, dtype=torch.bool, device="meta")
    assert encoder_module._layer_masks(on_meta) is on_meta


def _calls(module):
    """A list that grows by one every time ``module`` itself runs."""
    calls = []
    module.register_forward_pre_hook(lambda *_: calls.append(1))
    return calls


def _channels_last(lengths=(40, 29)):
    """A (B, d, T) depthwise output in the layout ``_depthwise`` gives."""
    torch.manual_seed(0)
    conv = nn.Conv1d(D_MODEL, D_MODEL, 7, padding=3, groups=D_MODEL)
    x = torch.randn(len(lengths), max(lengths), D_MODEL)
    return modules._depthwise(conv, x).detach()


def _batch_norm():
    torch.manual_seed(1)
    norm = nn.BatchNorm1d(D_MODEL)
    with torch.no_grad():
        norm.running_mean.normal_()
        norm.running_var.uniform_(0.5, 2.0)
        norm.weight.normal_()
        norm.bias.normal_()
    return norm


def test_batch_norm_in_eval_takes_the_image_view():
    x = _channels_last()
    assert x.stride(1) == 1  # channels-last: the case the fast path is for
    norm = _batch_norm().eval()
    want = norm(x)
    calls = _calls(norm)
    got = modules._normalize(norm, x)
    assert not calls
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_batch_norm_in_training_keeps_the_module():
    x = _channels_last()
    ref, norm = _batch_norm().train(), _batch_norm().train()
    calls = _calls(norm)
    torch.testing.assert_close(modules._normalize(norm, x), ref(x))
    assert len(calls) == 1
    # Batch statistics were used and the running ones updated, as ESPnet's do.
    torch.testing.assert_close(norm.running_mean, ref.running_mean)
    assert norm.num_batches_tracked.item() == 1


def test_batch_norm_without_running_statistics_keeps_the_module():
    x = _channels_last()
    norm = nn.BatchNorm1d(D_MODEL, track_running_stats=False).eval()
    calls = _calls(norm)
    modules._normalize(norm, x)
    assert len(calls) == 1


def test_lowrank_linear_applies_swapped_in_factors():
    torch.manual_seed(0)
    layer = modules.LowRankLinear(D_MODEL, 10, rank=4)
    x = torch.randn(2, 5, D_MODEL)
    want = x @ layer.a.weight.T @ layer.b.weight.T + layer.bias
    torch.testing.assert_close(layer(x), want)
    # A factor that is no plain nn.Linear (as after dynamic int8 quantization)
    # runs as a module, bias still added once.
    for name in ("a", "b"):
        swapped = copy.deepcopy(layer)
        factor = getattr(swapped, name)
        setattr(swapped, name, nn.Sequential(factor))
        calls = _calls(factor)
        torch.testing.assert_close(swapped(x), want)
        assert len(calls) == 1
