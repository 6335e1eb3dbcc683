"""ESPnet's encoder features keep working with sharing."""

import pytest
import torch
from espnet2.asr.ctc import CTC

from espnet_shared_conformer._compat import ESPNET_HAS_SDPA, TooShortUttError

from conftest import INPUT_SIZE, TINY, batch, build, build_espnet

ALL_LEVELS = dict(
    num_blocks=6,
    num_unique_blocks=2,
    share_across_layers=["conv"],
    tie_macaron_ffn=True,
    tie_attention_projections="qk",
    lowrank_rank=4,
    lowrank_shared_factor="in",
    per_layer_norms=True,
)
PADDING_CASES = {
    "plain": {},
    "all-levels": ALL_LEVELS,
    "abs-pos": dict(
        ALL_LEVELS, pos_enc_layer_type="abs_pos", selfattention_layer_type="selfattn"
    ),
    # Not "legacy" relative attention: its relative shift mixes in positions
    # past the end, so in ESPnet too a padded batch changes it.
    "conv2d6-post-norm": dict(
        ALL_LEVELS, input_layer="conv2d6", normalize_before=False
    ),
    "narrow-subsampling": dict(ALL_LEVELS, subsampling_channels=6),
}


@pytest.mark.parametrize("options", PADDING_CASES.values(), ids=PADDING_CASES.keys())
def test_padding_invariance(options):
    """An utterance alone and inside a padded batch encodes the same."""
    encoder = build(**options).eval()
    x, lengths = batch((61, 44, 23))
    with torch.no_grad():
        together, olens, _ = encoder(x, lengths)
        for i, length in enumerate(lengths.tolist()):
            alone, olen, _ = encoder(x[i : i + 1, :length], lengths[i : i + 1])
            assert olen.item() == olens[i].item()
            assert torch.allclose(alone[0], together[i, : olen.item()], atol=1e-5)


def test_interctc_counts_virtual_layers():
    encoder = build(interctc_layer_idx=[2, 5], **ALL_LEVELS).eval()
    x, lengths = batch()
    with torch.no_grad():
        (out, inter), _, _ = encoder(x, lengths)
        all_hs = build(**ALL_LEVELS).eval()
        all_hs.load_state_dict(encoder.state_dict())
        (_, hidden), _, _ = all_hs(x, lengths, return_all_hs=True)
    assert [layer for layer, _ in inter] == [2, 5]
    assert len(hidden) == 6  # one per virtual layer, not per unique block
    # Intermediate outputs are normalized outputs of the virtual layers 2 and 5.
    for layer, hs in inter:
        assert torch.allclose(hs, encoder.after_norm(hidden[layer - 1]), atol=1e-6)


def test_interctc_with_conditioning():
    vocab = 7
    encoder = build(
        interctc_layer_idx=[3], interctc_use_conditioning=True, **ALL_LEVELS
    ).eval()
    ctc = CTC(odim=vocab, encoder_output_size=TINY["output_size"])
    # ESPnetASRModel attaches this layer when conditioning is on.
    encoder.conditioning_layer = torch.nn.Linear(vocab, TINY["output_size"])
    x, lengths = batch()
    with torch.no_grad():
        (conditioned, _), _, _ = encoder(x, lengths, ctc=ctc)
        torch.nn.init.zeros_(encoder.conditioning_layer.weight)
        torch.nn.init.zeros_(encoder.conditioning_layer.bias)
        (unconditioned, _), _, _ = encoder(x, lengths, ctc=ctc)
        plain = build(interctc_layer_idx=[3], **ALL_LEVELS).eval()
        state = encoder.state_dict()
        plain.load_state_dict(
            {k: v for k, v in state.items() if "conditioning" not in k}
        )
        (reference, _), _, _ = plain(x, lengths)
    assert torch.allclose(unconditioned, reference, atol=1e-6)
    assert not torch.allclose(conditioned, reference, atol=1e-3)


def test_interctc_matches_espnet_when_nothing_is_shared():
    options = dict(interctc_layer_idx=[1, 3])
    ours, ref = build(seed=4, **options).eval(), build_espnet(seed=4, **options).eval()
    x, lengths = batch((50, 50, 50))
    with torch.no_grad():
        (_, a), _, _ = ours(x, lengths)
        (_, b), _, _ = ref(x, lengths)
    assert [i for i, _ in a] == [i for i, _ in b] == [1, 3]
    for (_, ha), (_, hb) in zip(a, b, strict=False):
        assert torch.allclose(ha, hb, atol=1e-5)


@pytest.mark.parametrize("option", ["layer_drop_rate", "stochastic_depth_rate"])
def test_dropping_every_layer_leaves_the_embedding(option):
    # With probability ~1 every virtual layer is skipped in training: the
    # output is the normalized embedding; in eval mode nothing is skipped.
    encoder = build(**{option: 0.999999}, **ALL_LEVELS)
    x, lengths = batch()
    embedded, _ = encoder.embed(
        x, (torch.arange(x.size(1))[None] < lengths[:, None])[:, None]
    )
    expected = encoder.after_norm(embedded[0])
    encoder.train()
    assert torch.allclose(encoder(x, lengths)[0], expected, atol=1e-6)
    encoder.eval()
    assert not torch.allclose(encoder(x, lengths)[0], expected, atol=1e-3)


def test_stochastic_depth_per_virtual_layer():
    rates = [0.0, 0.5, 0.0, 0.5, 0.0, 0.999999]
    encoder = build(stochastic_depth_rate=rates, **ALL_LEVELS)
    assert encoder.stochastic_depth_rate == rates
    x, lengths = batch()
    outputs = {tuple(encoder(x, lengths)[0].flatten()[:4].tolist()) for _ in range(12)}
    assert len(outputs) > 1  # layers 2 and 4 are skipped in some passes only


@pytest.mark.parametrize(
    "input_layer", ["conv2d", "conv2d1", "conv2d2", "conv2d6", "conv2d8"]
)
def test_subsampling_channels_narrow_only_the_front_end(input_layer):
    channels = 6
    narrow = build(input_layer=input_layer, subsampling_channels=channels)
    wide = build(input_layer=input_layer)
    convs = [m for m in narrow.embed.conv if isinstance(m, torch.nn.Conv2d)]
    assert convs[0].in_channels == 1
    assert all(conv.out_channels == channels for conv in convs)
    assert all(conv.in_channels == channels for conv in convs[1:])
    # Kernels and strides, hence output lengths, are ESPnet's.
    wide_convs = [m for m in wide.embed.conv if isinstance(m, torch.nn.Conv2d)]
    assert [(c.kernel_size, c.stride) for c in convs] == [
        (c.kernel_size, c.stride) for c in wide_convs
    ]

    # The blocks are untouched: the same names and shapes as without the option.
    def blocks(encoder):
        return {
            k: v.shape
            for k, v in encoder.state_dict().items()
            if not k.startswith("embed.")
        }

    assert blocks(narrow) == blocks(wide)
    x, lengths = batch((61, 44, 23))
    out, olens, _ = narrow(x, lengths)
    _, wide_olens, _ = wide(x, lengths)
    assert out.shape[-1] == TINY["output_size"]
    assert olens.tolist() == wide_olens.tolist()
    out.pow(2).mean().backward()
    assert all(p.grad is not None for p in narrow.embed.parameters())


def test_subsampling_channels_parameter_count():
    """conv2d: two 3x3 convolutions of c channels and a projection of c x F' to d."""
    c, d = 6, TINY["output_size"]
    bins = ((INPUT_SIZE - 1) // 2 - 1) // 2
    expected = (9 * c + c) + (9 * c * c + c) + (c * bins * d + d)
    embed = build(subsampling_channels=c).embed
    assert sum(p.numel() for p in embed.parameters()) == expected


def test_too_short_utterance():
    encoder = build(input_layer="conv2d6")
    x, lengths = batch((10,))
    with pytest.raises(TooShortUttError, match="too short"):
        encoder(x, lengths)


@pytest.mark.skipif(
    not ESPNET_HAS_SDPA, reason="this ESPnet's attention has no SDPA path"
)
@pytest.mark.parametrize(
    "attention",
    [
        dict(),
        dict(
            pos_enc_layer_type="abs_pos",
            selfattention_layer_type="selfattn",
            use_flash_attn=False,
        ),
    ],
)
def test_sdpa_attention_gives_the_same_outputs(attention):
    eager = build(seed=9, **attention, **ALL_LEVELS).eval()
    fused = build(seed=0, use_sdpa=True, **attention, **ALL_LEVELS).eval()
    fused.load_state_dict(eager.state_dict())
    x, lengths = batch()
    with torch.no_grad():
        a, olens, _ = eager(x, lengths)
        b, _, _ = fused(x, lengths)
    mask = torch.arange(a.size(1))[None] < olens[:, None]
    assert torch.allclose(a[mask], b[mask], atol=1e-5)
