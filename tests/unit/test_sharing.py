"""Shared weights are one tensor, used by every layer that shares them."""

import copy
import io
from collections import defaultdict

import pytest
import torch

from espnet_shared_conformer.modules import Alias

from conftest import batch, build, load_unrolled, unrolled_entries, unshared_twin

# Every sharing level alone, then combinations of all four.
SHARING = {
    "repeat-cyclic": dict(num_blocks=6, num_unique_blocks=2),
    "repeat-consecutive": dict(
        num_blocks=6, num_unique_blocks=3, repeat_schedule="consecutive"
    ),
    "repeat-list": dict(
        num_blocks=5, num_unique_blocks=2, repeat_schedule=[0, 1, 1, 0, 1]
    ),
    "share-mhsa": dict(share_across_layers=["mhsa"]),
    "share-all": dict(share_across_layers=["ffn_macaron", "mhsa", "conv", "ffn"]),
    "tie-macaron": dict(tie_macaron_ffn=True),
    "tie-macaron-shared-ffn": dict(tie_macaron_ffn=True, share_across_layers=["ffn"]),
    "tie-qk": dict(tie_attention_projections="qk"),
    "tie-qkv": dict(tie_attention_projections="qkv"),
    "lowrank": dict(lowrank_rank=4),
    "lowrank-mhsa-in": dict(
        lowrank_rank=4, lowrank_modules=["mhsa"], lowrank_shared_factor="in"
    ),
    "lowrank-out": dict(lowrank_rank=4, lowrank_shared_factor="out"),
    "per-layer-norms": dict(num_blocks=6, num_unique_blocks=2, per_layer_norms=True),
    "all-levels": dict(
        num_blocks=8,
        num_unique_blocks=2,
        share_across_layers=["conv"],
        tie_macaron_ffn=True,
        tie_attention_projections="qk",
        lowrank_rank=4,
        lowrank_shared_factor="in",
        per_layer_norms=True,
    ),
    "all-levels-abs-pos-no-macaron": dict(
        num_blocks=6,
        num_unique_blocks=3,
        repeat_schedule="consecutive",
        share_across_layers=["ffn"],
        tie_attention_projections="qkv",
        lowrank_rank=3,
        lowrank_shared_factor="out",
        macaron_style=False,
        pos_enc_layer_type="abs_pos",
        selfattention_layer_type="selfattn",
    ),
}
CASES = pytest.mark.parametrize("options", SHARING.values(), ids=SHARING.keys())


@CASES
def test_each_unique_tensor_listed_once(options):
    encoder = build(**options)
    state = encoder.state_dict()
    pointers = [t.data_ptr() for t in state.values()]
    assert len(pointers) == len(set(pointers))
    params = list(encoder.parameters())
    assert sum(p.numel() for p in params) == sum(
        t.numel()
        for name, t in state.items()
        if "running_" not in name and "num_batches" not in name
    )


@CASES
def test_sharing_encoder_has_fewer_parameters_than_its_twin(options):
    encoder = build(**options)
    ours = sum(p.numel() for p in encoder.parameters())
    theirs = sum(p.numel() for p in unshared_twin(encoder).parameters())
    if options is SHARING["lowrank"]:  # the twin keeps the low rank
        assert ours == theirs
    else:
        assert ours < theirs


@CASES
def test_same_function_as_unrolled_copies(options):
    """The shared encoder computes what an unshared one holding copies computes."""
    encoder = build(**options).eval()
    twin = load_unrolled(encoder).eval()
    x, lengths = batch()
    with torch.no_grad():
        assert torch.allclose(encoder(x, lengths)[0], twin(x, lengths)[0], atol=1e-5)


@CASES
def test_gradients_from_every_layer_reach_the_shared_tensor(options):
    """A shared tensor's gradient is the sum of its copies' gradients."""
    encoder = build(**options)
    twin = load_unrolled(encoder)
    x, lengths = batch()
    encoder(x, lengths)[0].pow(2).mean().backward()
    twin(x, lengths)[0].pow(2).mean().backward()

    twin_params = dict(twin.named_parameters())
    summed = defaultdict(lambda: 0)
    users = defaultdict(int)
    for path, tensor in unrolled_entries(encoder, twin):
        if path in twin_params:
            summed[id(tensor)] = summed[id(tensor)] + twin_params[path].grad
            users[id(tensor)] += 1
    for name, param in encoder.named_parameters():
        assert users[id(param)] >= 1, f"{name} is used by no layer"
        assert torch.allclose(param.grad, summed[id(param)], atol=1e-6), name
    if options is not SHARING["lowrank"]:
        assert max(users.values()) > 1  # something really is shared


@CASES
def test_state_dict_round_trip_keeps_outputs_and_sharing(options):
    encoder = build(seed=1, **options).eval()
    buffer = io.BytesIO()
    torch.save(encoder.state_dict(), buffer)
    buffer.seek(0)
    loaded = build(seed=2, **options).eval()
    loaded.load_state_dict(torch.load(buffer), strict=True)

    x, lengths = batch()
    with torch.no_grad():
        assert torch.equal(encoder(x, lengths)[0], loaded(x, lengths)[0])

    # Updating block 0's tensors after loading changes exactly the layers
    # that use them, wherever they are.
    entries = list(unrolled_entries(loaded, unshared_twin(loaded)))
    before = {path: tensor.detach().clone() for path, tensor in entries}
    owned = {id(p) for p in loaded.encoders[0].parameters()}
    with torch.no_grad():
        for param in loaded.encoders[0].parameters():
            param.add_(1.0)
    for path, tensor in entries:
        assert torch.equal(tensor, before[path] + float(id(tensor) in owned)), path
    users = sum(id(tensor) in owned for _, tensor in entries)
    if options is not SHARING["lowrank"]:
        assert users > len(owned)


def test_checkpoint_size_follows_unique_parameters_not_depth():
    def size(**options):
        buffer = io.BytesIO()
        torch.save(build(**options).state_dict(), buffer)
        return buffer.getbuffer().nbytes

    shallow = size(num_blocks=4, num_unique_blocks=2)
    deep = size(num_blocks=16, num_unique_blocks=2)
    unshared = size(num_blocks=16)
    assert deep < shallow * 1.01
    assert unshared > 5 * deep


def test_deepcopy_and_pickle_keep_sharing():
    encoder = build(**SHARING["all-levels"])
    for clone in (
        copy.deepcopy(encoder),
        torch.load(_pickled(encoder), weights_only=False),
    ):
        blocks = clone.encoders
        assert blocks[1].conv_module.resolve() is blocks[0].conv_module
        a0 = blocks[0].self_attn.linear_q.a
        assert blocks[1].self_attn.linear_q.a.resolve() is a0
        assert clone.plan == encoder.plan


def _pickled(module):
    buffer = io.BytesIO()
    torch.save(module, buffer)
    buffer.seek(0)
    return buffer


def test_aliases_survive_module_swaps():
    """Dynamic int8 quantization swaps linear layers; shared users follow."""
    encoder = build(**SHARING["all-levels"]).eval()
    quantized = torch.ao.quantization.quantize_dynamic(
        encoder, {torch.nn.Linear}, torch.qint8
    )
    block0, block1 = quantized.encoders
    assert isinstance(block1.self_attn.linear_q.a, Alias)
    assert block1.self_attn.linear_q.a.resolve() is block0.self_attn.linear_q.a
    assert not isinstance(block0.self_attn.linear_q.a, torch.nn.Linear)  # swapped
    x, lengths = batch()
    with torch.no_grad():
        reference = encoder(x, lengths)[0]
        approx = quantized(x, lengths)[0]
    assert torch.allclose(reference, approx, atol=0.1)
