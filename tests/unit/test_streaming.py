"""Streaming: chunk masks, a causal convolution, and chunk-by-chunk encoding
that gives what one masked forward gives."""

import itertools
from typing import List, Sequence, Tuple

import pytest
import torch
from typeguard import TypeCheckError

from espnet_shared_conformer._compat import ESPNET_HAS_SDPA
from espnet_shared_conformer.streaming import (
    StreamingOptions,
    cache_size,
    choose_chunk,
    chunk_attention_mask,
)
from espnet_shared_conformer.subsampling import time_window

from conftest import INPUT_SIZE, batch, build

# -- options -----------------------------------------------------------------


def test_the_defaults_stream_nothing():
    options = StreamingOptions()
    assert not options.chunking
    assert options.changed() == {}
    assert StreamingOptions.from_conf(dict(chunk_size=4, output_size=8)).chunk_size == 4


@pytest.mark.parametrize(
    "name, value, message",
    [
        ("chunk_size", -1, "must not be negative"),
        ("max_dynamic_chunk", 0, "must be at least 1"),
        ("num_left_chunks", -2, "must be -1 .unlimited. or at least 0"),
    ],
)
def test_an_impossible_value_is_refused_by_name(name, value, message):
    with pytest.raises(ValueError, match=rf"^{name} \({value}\) {message}"):
        StreamingOptions(**{name: value, "dynamic_chunk_training": True})


def test_a_wrong_type_names_the_option():
    with pytest.raises(TypeCheckError, match=r"chunk_size \('4'\) must be int"):
        StreamingOptions(chunk_size="4")


@pytest.mark.parametrize(
    "options, message",
    [
        (
            dict(dynamic_left_chunks=True),
            r"dynamic_left_chunks \(True\) needs dynamic_",
        ),
        (dict(max_dynamic_chunk=8), r"max_dynamic_chunk \(8\) needs dynamic_chunk_"),
        (dict(num_left_chunks=2), r"num_left_chunks \(2\) needs chunk_size > 0"),
    ],
)
def test_options_that_need_another_are_refused(options, message):
    with pytest.raises(ValueError, match=message):
        StreamingOptions(**options)


CHUNKED = dict(causal_conv=True, chunk_size=4)


@pytest.mark.parametrize(
    "options, message",
    [
        (dict(chunk_size=4), r"chunk_size \(4\) needs causal_conv"),
        (
            dict(dynamic_chunk_training=True),
            r"dynamic_chunk_training \(True\) needs causal_conv",
        ),
        (
            dict(causal_conv=True, use_cnn_module=False),
            r"causal_conv \(True\) needs use_cnn_module",
        ),
        (
            dict(CHUNKED, input_layer="linear"),
            r"chunk_size \(4\) needs a convolutional subsampling; input_layer "
            r"\('linear'\)",
        ),
        (
            dict(CHUNKED, rel_pos_type="legacy"),
            r"not pos_enc_layer_type \('rel_pos'\) with rel_pos_type \('legacy'\)",
        ),
        (
            dict(
                CHUNKED,
                rel_pos_type="legacy",
                pos_enc_layer_type="legacy_rel_pos",
                selfattention_layer_type="legacy_rel_selfattn",
            ),
            r"pos_enc_layer_type \('legacy_rel_pos'\)",
        ),
        (
            dict(
                CHUNKED, pos_enc_layer_type="conv", selfattention_layer_type="selfattn"
            ),
            r"pos_enc_layer_type \('conv'\)",
        ),
        (dict(CHUNKED, zero_triu=True), r"chunk_size \(4\) contradicts zero_triu"),
        (
            dict(CHUNKED, positionwise_layer_type="conv1d"),
            r"positionwise_layer_type 'linear'; 'conv1d'",
        ),
        (
            dict(CHUNKED, ctc_trim=True, interctc_layer_idx=[2]),
            r"chunk_size \(4\) contradicts ctc_trim",
        ),
    ],
)
def test_options_that_contradict_the_conformer_are_refused(options, message):
    with pytest.raises(ValueError, match=message):
        build(**options)


def test_chunks_without_a_convolution_need_no_causal_one():
    assert build(use_cnn_module=False, chunk_size=4).streaming.chunking


def test_streaming_needs_a_chunk_and_a_causal_model():
    plain = build().eval()
    with pytest.raises(ValueError, match=r"chunk_size \(0\) must be at least 1"):
        plain.init_streaming_state()
    with pytest.raises(ValueError, match=r"chunk_size \(4\) needs causal_conv"):
        plain.init_streaming_state(chunk_size=4)
    encoder = build(**CHUNKED).eval()
    with pytest.raises(ValueError, match=r"batch \(0\) must be at least 1"):
        encoder.init_streaming_state(batch=0)
    with pytest.raises(ValueError, match=r"num_left_chunks \(-3\)"):
        encoder.init_streaming_state(num_left_chunks=-3)
    conditioned = build(
        **CHUNKED, interctc_layer_idx=[2], interctc_use_conditioning=True
    ).eval()
    with pytest.raises(ValueError, match=r"interctc_use_conditioning"):
        conditioned.init_streaming_state()


def test_forward_chunk_refuses_misuse():
    encoder = build(**CHUNKED).eval()
    state = encoder.init_streaming_state(batch=2)
    with pytest.raises(ValueError, match=r"feats \(1, 9, 20\) must be \(batch 2"):
        encoder.forward_chunk(torch.zeros(1, 9, INPUT_SIZE), state)
    with pytest.raises(ValueError, match=r"input_size 20"):
        encoder.forward_chunk(torch.zeros(2, 9, 7), state)
    _, flushed = encoder.forward_chunk(torch.zeros(2, 9, INPUT_SIZE), state, True)
    with pytest.raises(ValueError, match="flushed"):
        encoder.forward_chunk(torch.zeros(2, 9, INPUT_SIZE), flushed)
    with pytest.raises(RuntimeError, match="evaluation mode"):
        encoder.train().forward_chunk(torch.zeros(2, 9, INPUT_SIZE), state)


# -- masks -------------------------------------------------------------------


def test_chunk_mask_by_hand():
    # 5 frames in chunks of 2: {0, 1}, {2, 3}, {4}.
    unlimited = [
        [1, 1, 0, 0, 0],
        [1, 1, 0, 0, 0],
        [1, 1, 1, 1, 0],
        [1, 1, 1, 1, 0],
        [1, 1, 1, 1, 1],
    ]
    one_left = [
        [1, 1, 0, 0, 0],
        [1, 1, 0, 0, 0],
        [1, 1, 1, 1, 0],
        [1, 1, 1, 1, 0],
        [0, 0, 1, 1, 1],
    ]
    none_left = [
        [1, 1, 0, 0, 0],
        [1, 1, 0, 0, 0],
        [0, 0, 1, 1, 0],
        [0, 0, 1, 1, 0],
        [0, 0, 0, 0, 1],
    ]
    for left, expected in ((-1, unlimited), (1, one_left), (0, none_left)):
        mask = chunk_attention_mask(5, 2, left)
        assert mask.dtype == torch.bool
        assert mask.int().tolist() == expected, left
    assert chunk_attention_mask(3, 1, 0).int().tolist() == torch.eye(3).int().tolist()


def test_eval_uses_the_static_chunk_and_dynamic_training_draws():
    assert choose_chunk(StreamingOptions(), 50, training=True) is None
    static = StreamingOptions(causal_conv=True, chunk_size=4, num_left_chunks=2)
    assert choose_chunk(static, 50, training=True) == (4, 2)
    assert choose_chunk(static, 50, training=False) == (4, 2)
    dynamic = StreamingOptions(
        dynamic_chunk_training=True, max_dynamic_chunk=6, dynamic_left_chunks=True
    )
    assert choose_chunk(dynamic, 50, training=False) is None
    torch.manual_seed(0)
    draws = [choose_chunk(dynamic, 50, training=True) for _ in range(600)]
    chunked = [d for d in draws if d is not None]
    assert 0.4 < len(chunked) / len(draws) < 0.6  # full context for about half
    assert {chunk for chunk, _ in chunked} == set(range(1, 7))
    assert all(0 <= left <= 49 // chunk for chunk, left in chunked)
    assert {left for chunk, left in chunked if chunk == 6} == set(range(0, 9))


# -- the invariant -----------------------------------------------------------

SHARING = {
    "plain": {},
    "repeated-per-layer-norms": dict(
        num_blocks=6, num_unique_blocks=2, per_layer_norms=True
    ),
    "shared-mhsa": dict(share_across_layers=["mhsa"]),
    "shared-lowrank-factor": dict(lowrank_rank=4, lowrank_shared_factor="in"),
}
# 155 input frames: 38 output frames, a multiple of none of the chunks but 1.
FRAMES = 155


def _pieces(total: int, seed: int) -> List[int]:
    """Random piece lengths adding up to ``total``, empty and 1-frame ones too."""
    g = torch.Generator().manual_seed(seed)
    pieces = [0, 1]
    while sum(pieces) < total:
        pieces.append(int(torch.randint(0, 24, (1,), generator=g)))
    pieces[-1] -= sum(pieces) - total
    return pieces


def _stream(
    encoder, feats: torch.Tensor, pieces: Sequence[int], **state_options
) -> Tuple[torch.Tensor, List[int]]:
    """Feed ``feats`` (B, L, D) in ``pieces``, the last with final=True; the
    whole output and the number of frames each call returned."""
    state = encoder.init_streaming_state(batch=feats.size(0), **state_options)
    outputs, start = [], 0
    for i, length in enumerate(pieces):
        piece = feats[:, start : start + length]
        out, state = encoder.forward_chunk(piece, state, final=i == len(pieces) - 1)
        outputs.append(out)
        start += length
    return torch.cat(outputs, dim=1), [out.size(1) for out in outputs]


def _masked_forward(encoder, feats: torch.Tensor) -> torch.Tensor:
    lengths = torch.full((feats.size(0),), feats.size(1))
    return encoder(feats, lengths)[0]


@pytest.mark.parametrize("sharing", SHARING.values(), ids=SHARING.keys())
@pytest.mark.parametrize("chunk, left", list(itertools.product([1, 4, 8], [-1, 0, 2])))
@torch.no_grad()
def test_chunk_by_chunk_equals_the_masked_forward(sharing, chunk, left):
    encoder = build(
        seed=2, causal_conv=True, chunk_size=chunk, num_left_chunks=left, **sharing
    ).eval()
    feats, _ = batch((FRAMES,), seed=chunk)
    expected = _masked_forward(encoder, feats)
    assert expected.size(1) == 38
    streamed, sizes = _stream(encoder, feats, _pieces(FRAMES, seed=chunk + left))
    assert torch.allclose(streamed, expected, atol=1e-5)
    # Whole chunks until the flush, which emits the partial last one.
    assert all(size % chunk == 0 for size in sizes[:-1])
    assert sizes[-1] < 38 and sum(sizes) == 38


ARCHITECTURES = {
    "abs-pos-qk-norm": dict(
        pos_enc_layer_type="abs_pos", selfattention_layer_type="selfattn", qk_norm=True
    ),
    "scaled-abs-pos": dict(
        pos_enc_layer_type="scaled_abs_pos", selfattention_layer_type="selfattn"
    ),
    "post-norm-concat-after": dict(normalize_before=False, concat_after=True),
    "no-macaron-no-conv": dict(macaron_style=False, use_cnn_module=False),
    "conv2d6-narrow": dict(input_layer="conv2d6", subsampling_channels=8),
    "conv2d8-kernel-7": dict(input_layer="conv2d8", cnn_module_kernel=7),
    "tied-qkv-lowrank-out": dict(
        tie_attention_projections="qkv",
        tie_macaron_ffn=True,
        lowrank_rank=4,
        lowrank_shared_factor="out",
        num_blocks=6,
        num_unique_blocks=3,
        repeat_schedule="consecutive",
    ),
    "sdpa-interctc": dict(use_sdpa=True, interctc_layer_idx=[2]),
}


@pytest.mark.parametrize("options", ARCHITECTURES.values(), ids=ARCHITECTURES.keys())
@torch.no_grad()
def test_chunk_by_chunk_equals_the_masked_forward_for_other_architectures(options):
    if options.get("use_sdpa") and not ESPNET_HAS_SDPA:
        pytest.skip("use_sdpa needs ESPnet 202611")
    streaming = dict(chunk_size=3, num_left_chunks=1)
    if options.get("use_cnn_module", True):
        streaming["causal_conv"] = True
    encoder = build(seed=4, **streaming, **options).eval()
    feats, _ = batch((2 * FRAMES,), seed=5)
    expected = _masked_forward(encoder, feats)
    if isinstance(expected, tuple):  # intermediate CTC outputs too
        expected = expected[0]
    streamed, _ = _stream(encoder, feats, _pieces(2 * FRAMES, seed=6))
    assert streamed.shape == expected.shape
    assert torch.allclose(streamed, expected, atol=1e-5)


@torch.no_grad()
def test_the_masked_forward_is_not_full_context():
    """Else the invariant would hold for an encoder that ignores chunks."""
    encoder = build(seed=2, causal_conv=True, chunk_size=4).eval()
    full = build(seed=2, causal_conv=True).eval()
    feats, _ = batch((FRAMES,))
    chunked, context = _masked_forward(encoder, feats), _masked_forward(full, feats)
    # The first chunk cannot see the second: it is what full context gives
    # for the 19 input frames of its 4 output frames, and no more.
    assert not torch.allclose(chunked[:, :4], context[:, :4], atol=1e-3)
    first = _masked_forward(full, feats[:, :19])
    assert torch.allclose(chunked[:, :4], first, atol=1e-5)


@torch.no_grad()
def test_streams_of_a_batch_are_independent():
    encoder = build(seed=2, causal_conv=True, chunk_size=4, num_left_chunks=1).eval()
    feats, _ = batch((FRAMES, FRAMES), seed=8)
    streamed, _ = _stream(encoder, feats, [40, 60, 55])
    for row in range(2):
        alone = _masked_forward(encoder, feats[row : row + 1])
        assert torch.allclose(streamed[row : row + 1], alone, atol=1e-5)


@torch.no_grad()
def test_chunked_forward_is_padding_invariant():
    """Chunk mask and padding mask together: an utterance alone and inside a
    padded batch encode the same."""
    encoder = build(seed=2, causal_conv=True, chunk_size=3, num_left_chunks=1).eval()
    feats, lengths = batch((FRAMES, 101, 64))
    padded, olens, _ = encoder(feats, lengths)
    for row, length in enumerate(lengths.tolist()):
        alone = _masked_forward(encoder, feats[row : row + 1, :length])
        assert alone.size(1) == olens[row]
        assert torch.allclose(padded[row : row + 1, : olens[row]], alone, atol=1e-5)


@torch.no_grad()
def test_a_stream_too_short_for_one_frame_flushes_to_nothing():
    encoder = build(**CHUNKED).eval()
    state = encoder.init_streaming_state()
    out, state = encoder.forward_chunk(torch.randn(1, 6, INPUT_SIZE), state)
    assert out.shape == (1, 0, 16)
    out, state = encoder.forward_chunk(torch.zeros(1, 0, INPUT_SIZE), state, True)
    assert out.shape == (1, 0, 16) and state.finished


@torch.no_grad()
def test_a_dynamic_chunk_model_streams_at_any_chunk_size():
    encoder = build(seed=2, causal_conv=True, dynamic_chunk_training=True).eval()
    static = build(seed=2, causal_conv=True, chunk_size=5, num_left_chunks=2).eval()
    feats, _ = batch((FRAMES,))
    streamed, _ = _stream(
        encoder, feats, _pieces(FRAMES, 3), chunk_size=5, num_left_chunks=2
    )
    assert torch.allclose(streamed, _masked_forward(static, feats), atol=1e-5)


# -- dynamic chunk training ----------------------------------------------------


@torch.no_grad()
def test_a_dynamic_chunk_model_decodes_at_full_context():
    dynamic = build(seed=6, causal_conv=True, dynamic_chunk_training=True)
    full = build(seed=6, causal_conv=True)
    full.load_state_dict(dynamic.state_dict())
    feats, lengths = batch()
    assert torch.equal(
        dynamic.eval()(feats, lengths)[0], full.eval()(feats, lengths)[0]
    )


@torch.no_grad()
def test_dynamic_chunk_training_forwards_with_the_chunk_it_draws():
    options = dict(
        causal_conv=True,
        dynamic_chunk_training=True,
        max_dynamic_chunk=5,
        dynamic_left_chunks=True,
    )
    dynamic = build(seed=6, **options).train()
    feats, lengths = batch()
    time = 9  # output frames of the longest utterance, 40 input frames
    for seed in range(20):
        torch.manual_seed(seed)
        drawn = choose_chunk(dynamic.streaming, time, training=True)
        if drawn is not None and drawn[0] < time:
            break
    chunk, left = drawn
    static = build(seed=6, causal_conv=True, chunk_size=chunk, num_left_chunks=left)
    torch.manual_seed(seed)
    # In training mode both take batch statistics from the same batch.
    out = dynamic(feats, lengths)[0]
    assert torch.allclose(out, static.train()(feats, lengths)[0], atol=1e-6)
    assert not torch.allclose(
        out, build(seed=6, causal_conv=True).train()(feats, lengths)[0], atol=1e-3
    )


# -- causal convolution --------------------------------------------------------


@pytest.mark.parametrize("causal", [True, False])
@torch.no_grad()
def test_a_causal_convolution_ignores_later_frames(causal):
    conv = build(causal_conv=causal, cnn_module_kernel=7).encoders[0].conv_module
    conv.eval()
    x = torch.randn(2, 20, 16)
    changed = x.clone()
    changed[:, 12:] = torch.randn(2, 8, 16)
    before, after = conv(x), conv(changed)
    assert before.shape == x.shape
    if causal:
        assert torch.equal(before[:, :12], after[:, :12])
        assert not torch.allclose(before[:, 12:], after[:, 12:])
    else:  # frames 9, 10, 11 read frame 12 (kernel 7: three on each side)
        assert torch.equal(before[:, :9], after[:, :9])
        assert not torch.allclose(before[:, 9:12], after[:, 9:12])


def test_a_causal_convolution_keeps_espnets_weights():
    causal = build(seed=1, causal_conv=True, chunk_size=2)
    plain = build(seed=1)
    assert list(causal.state_dict()) == list(plain.state_dict())
    for (name, a), b in zip(
        causal.state_dict().items(), plain.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b), name
    assert causal.encoders[0].conv_module.depthwise_conv.padding == (0,)


# -- cache size ----------------------------------------------------------------


@pytest.mark.parametrize(
    "options",
    [
        dict(chunk_size=4, num_left_chunks=2),
        dict(chunk_size=3, num_left_chunks=0, input_layer="conv2d6"),
        dict(chunk_size=2, num_left_chunks=3, num_blocks=6, num_unique_blocks=2),
    ],
)
@torch.no_grad()
def test_the_state_reaches_the_cache_size_formula(options):
    """Fed a frame at a time, the state holds at most what ``cache_size``
    says between calls, and reaches it."""
    encoder = build(causal_conv=True, **options).eval()
    size = cache_size(encoder.build_options)
    window, stride = time_window(encoder.build_options["input_layer"])
    chunk, d, layers = options["chunk_size"], 16, encoder.plan.num_layers
    assert size.front_end == INPUT_SIZE * (stride * (chunk - 1) + window - 1)
    assert size.conv == layers * d * (5 - 1)
    assert size.attention_per_frame == layers * 2 * d
    assert size.left_frames == options["num_left_chunks"] * chunk
    state = encoder.init_streaming_state()
    largest = 0
    feats, _ = batch((300,))
    for t in range(300):
        _, state = encoder.forward_chunk(feats[:, t : t + 1], state)
        largest = max(largest, state.floats())
        # Per virtual layer, its own cache.
        assert len(state.layers) == layers
    assert largest == size.total


def test_an_unlimited_left_context_has_no_bound():
    size = cache_size(dict(build(**CHUNKED).build_options))
    assert size.left_frames is None and size.total is None
    with pytest.raises(ValueError, match=r"chunk_size \(0\) must be at least 1"):
        cache_size(build().build_options)
