"""The encoder on a CUDA device: the same results as on the CPU.

Runs where CUDA is present and skips elsewhere. On the CPU the encoder skips
its masking when nothing is padded (``encoder._layer_masks``); on a GPU it
always masks, because asking whether anything is padded would read a value
back and stall the stream. These tests hold the GPU path against the CPU one,
forward and backward, and pin what dynamic int8 quantization does there.
"""

import copy
from typing import Iterator, Tuple

import pytest
import torch
from torch import nn

from espnet_shared_conformer import encoder as encoder_module

from conftest import batch, build, build_espnet

pytestmark = pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs a CUDA device"
)

CUDA = torch.device("cuda")

#: Every sharing level, the convolution module (BatchNorm) included.
SHARED = dict(
    num_unique_blocks=2,
    share_across_layers=["conv"],
    tie_macaron_ffn=True,
    tie_attention_projections="qk",
    lowrank_rank=8,
    lowrank_shared_factor="in",
    per_layer_norms=True,
)
PADDED, FULL = (40, 33, 19), (40, 40, 40)


@pytest.fixture(autouse=True)
def _full_precision() -> Iterator[None]:
    """fp32 on the GPU as on the CPU: TF32 would keep 10 mantissa bits."""
    saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def _run(
    encoder: nn.Module, x: torch.Tensor, lengths: torch.Tensor
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Forward (B, T', d) and output lengths (B,); backward of a masked loss."""
    out, out_lengths, _ = encoder(x, lengths)
    valid = torch.arange(out.size(1), device=out.device)[None, :] < out_lengths[:, None]
    (out * valid[..., None]).pow(2).sum().backward()
    return out * valid[..., None], out_lengths


def _assert_same_run(cpu: nn.Module, gpu: nn.Module, lengths: Tuple[int, ...]) -> None:
    x, lens = batch(lengths)
    want, want_lengths = _run(cpu, x, lens)
    got, got_lengths = _run(gpu, x.to(CUDA), lens.to(CUDA))
    assert torch.equal(got_lengths.cpu(), want_lengths)
    torch.testing.assert_close(got.cpu(), want, rtol=1e-4, atol=1e-5)
    for (name, p_cpu), p_gpu in zip(
        cpu.named_parameters(), gpu.parameters(), strict=True
    ):
        torch.testing.assert_close(
            p_gpu.grad.cpu(),
            p_cpu.grad,
            rtol=1e-4,
            atol=1e-5,
            msg=lambda m, name=name: f"{name}: {m}",
        )
    for (name, b_cpu), b_gpu in zip(cpu.named_buffers(), gpu.buffers(), strict=True):
        torch.testing.assert_close(
            b_gpu.cpu(),
            b_cpu,
            rtol=1e-4,
            atol=1e-5,
            msg=lambda m, name=name: f"{name}: {m}",
        )


def test_padding_is_never_read_back_on_cuda() -> None:
    masks = torch.ones(2, 1, 5, dtype=torch.bool, device=CUDA)
    # Any host-device synchronization in here is an error, not a stall.
    torch.cuda.set_sync_debug_mode("error")
    try:
        got = encoder_module._layer_masks(masks)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert got is masks


@pytest.mark.parametrize("mode", ["train", "eval"])
@pytest.mark.parametrize("lengths", [FULL, PADDED], ids=["full", "padded"])
def test_shared_encoder_on_cuda_equals_cpu(mode: str, lengths) -> None:
    """Forward, gradients and BatchNorm statistics; on a full batch the CPU
    takes the unmasked fast path and the GPU masks."""
    cpu = build(**SHARED).train(mode == "train")
    gpu = copy.deepcopy(cpu).to(CUDA)
    _assert_same_run(cpu, gpu, lengths)


def test_padded_batch_on_cuda_equals_each_utterance_alone() -> None:
    encoder = build(**SHARED).eval().to(CUDA)
    x, lengths = batch(PADDED)
    with torch.no_grad():
        out, out_lengths, _ = encoder(x.to(CUDA), lengths.to(CUDA))
        for i, length in enumerate(PADDED):
            alone, alone_length, _ = encoder(
                x[i : i + 1, :length].to(CUDA), lengths[i : i + 1].to(CUDA)
            )
            n = int(alone_length)
            assert int(out_lengths[i]) == n
            torch.testing.assert_close(out[i, :n], alone[0], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_chunked_encoder_on_cuda_equals_cpu(mode: str) -> None:
    """The chunk mask built on the device, with the padding mask."""
    streaming = dict(causal_conv=True, chunk_size=3, num_left_chunks=1)
    cpu = build(**SHARED, **streaming).train(mode == "train")
    _assert_same_run(cpu, copy.deepcopy(cpu).to(CUDA), PADDED)


@torch.no_grad()
def test_streaming_on_cuda_equals_the_cpu_masked_forward() -> None:
    """Caches and buffered input live on the model's device."""
    streaming = dict(causal_conv=True, chunk_size=3, num_left_chunks=1)
    cpu = build(**SHARED, **streaming).eval()
    gpu = copy.deepcopy(cpu).to(CUDA)
    x, lengths = batch((155,))
    want = cpu(x, lengths)[0]
    state = gpu.init_streaming_state()
    assert state.layers[0].key.device.type == "cuda"
    outputs = []
    for i, piece in enumerate(x.to(CUDA).split(37, dim=1)):
        out, state = gpu.forward_chunk(piece, state, final=i == 4)
        outputs.append(out)
    torch.testing.assert_close(
        torch.cat(outputs, dim=1).cpu(), want, rtol=1e-4, atol=1e-5
    )


def test_unshared_encoder_on_cuda_is_espnets() -> None:
    """With nothing shared, the faster modules equal ESPnet's on the GPU too."""
    ref = build_espnet(seed=7).eval().to(CUDA)
    ours = build(seed=3).eval().to(CUDA)
    ours.load_state_dict(ref.state_dict(), strict=True)
    x, lengths = batch(PADDED)
    x, lengths = x.to(CUDA), lengths.to(CUDA)
    want, want_lengths = _run(ref, x, lengths)
    got, got_lengths = _run(ours, x, lengths)
    assert torch.equal(got_lengths, want_lengths)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
    for (name, p_ref), p_ours in zip(
        ref.named_parameters(), ours.parameters(), strict=True
    ):
        torch.testing.assert_close(
            p_ours.grad,
            p_ref.grad,
            rtol=1e-4,
            atol=1e-5,
            msg=lambda m, name=name: f"{name}: {m}",
        )


def test_dynamic_int8_on_cuda_is_refused_or_equal() -> None:
    """PyTorch's dynamic int8 kernels are CPU kernels. A quantized encoder moved
    to the GPU must either refuse, naming the CUDA backend, or give the CPU's
    int8 result; never something else. (The package's own loaders refuse
    ``quantize_asr_model`` with a CUDA device before loading anything.)"""
    encoder = build(**SHARED).eval()
    quantized = torch.ao.quantization.quantize_dynamic(
        encoder, {nn.Linear}, dtype=torch.qint8
    )
    x, lengths = batch(PADDED)
    with torch.no_grad():
        want, want_lengths, _ = quantized(x, lengths)
        on_gpu = copy.deepcopy(quantized).to(CUDA)
        try:
            got, got_lengths, _ = on_gpu(x.to(CUDA), lengths.to(CUDA))
        except (NotImplementedError, RuntimeError) as error:
            assert "cuda" in str(error).lower(), str(error)
            return
    assert torch.equal(got_lengths.cpu(), want_lengths)
    torch.testing.assert_close(got.cpu(), want, rtol=1e-3, atol=1e-3)
