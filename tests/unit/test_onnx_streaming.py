"""The ONNX chunk step: its stream equals PyTorch's, weights stored once, and
a runtime that loads neither torch nor ESPnet."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import numpy as np
import pytest
import torch

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from espnet_shared_conformer.onnx_export import main  # noqa: E402
from espnet_shared_conformer.onnx_runtime import (  # noqa: E402
    OnnxStreamingEncoder,
    sidecar_path,
)
from espnet_shared_conformer.onnx_streaming import (  # noqa: E402
    check_streaming_onnx,
    export_streaming_onnx,
)
from espnet_shared_conformer.params import count_parameters  # noqa: E402

from espnet_shared_conformer.subsampling import time_window  # noqa: E402

from conftest import INPUT_SIZE, batch, build, build_espnet  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
VOCAB = 11
# 155 input frames: 38 output frames, a multiple of none of the chunks but 1.
FRAMES = 155
REPEATED_SHARED_FACTOR = dict(
    num_blocks=6,
    num_unique_blocks=2,
    share_across_layers=["conv"],
    tie_macaron_ffn=True,
    lowrank_rank=4,
    lowrank_shared_factor="in",
)


class _Ctc(torch.nn.Module):
    """Stands in for ESPnet's CTC: only its output layer goes into the graph."""

    def __init__(self, d: int, vocab: int) -> None:
        super().__init__()
        self.ctc_lo = torch.nn.Linear(d, vocab)


def _pieces(total: int, seed: int) -> List[int]:
    """Random piece lengths adding up to ``total``, empty and 1-frame ones too."""
    g = torch.Generator().manual_seed(seed)
    pieces = [0, 1]
    while sum(pieces) < total:
        pieces.append(int(torch.randint(0, 24, (1,), generator=g)))
    pieces[-1] -= sum(pieces) - total
    return pieces


@torch.no_grad()
def _torch_stream(
    encoder, ctc, feats: torch.Tensor, pieces: Sequence[int], chunk: int, left: int
) -> List[torch.Tensor]:
    """What each ``forward_chunk`` call returns, through the CTC head."""
    state = encoder.init_streaming_state(feats.size(0), chunk, left)
    outputs, start = [], 0
    for i, length in enumerate(pieces):
        out, state = encoder.forward_chunk(
            feats[:, start : start + length], state, final=i == len(pieces) - 1
        )
        outputs.append(torch.log_softmax(ctc.ctc_lo(out), dim=-1))
        start += length
    return outputs


def _onnx_stream(
    path: str, feats: np.ndarray, pieces: Sequence[int]
) -> List[np.ndarray]:
    """What each ``OnnxStreamingEncoder.forward_chunk`` call returns."""
    runtime = OnnxStreamingEncoder(path)
    state = runtime.init_state(batch=feats.shape[0])
    outputs, start = [], 0
    for i, length in enumerate(pieces):
        out, state = runtime.forward_chunk(
            feats[:, start : start + length], state, final=i == len(pieces) - 1
        )
        outputs.append(out)
        start += length
    return outputs


def _assert_streams_agree(
    encoder, path: str, ctc, chunk: int, left: int, frames: int = FRAMES
) -> None:
    """Two different streams of ``frames`` input frames, in random pieces
    (empty and 1-frame ones too), the last with final=True."""
    feats, _ = batch((frames, frames), seed=chunk)
    feats[1] = batch((frames,), seed=chunk + 1)[0][0]
    pieces = _pieces(frames, seed=chunk + left)
    expected = _torch_stream(encoder, ctc, feats, pieces, chunk, left)
    got = _onnx_stream(path, feats.numpy(), pieces)
    # Call by call the same frames: whole chunks, then the flushed rest.
    assert [g.shape for g in got] == [tuple(e.shape) for e in expected]
    window, stride = time_window(encoder.build_options["input_layer"])
    assert sum(g.shape[1] for g in got) == (frames - window) // stride + 1
    streamed = torch.from_numpy(np.concatenate(got, axis=1))
    torch.testing.assert_close(streamed, torch.cat(expected, 1), atol=1e-4, rtol=0)


@pytest.mark.parametrize("chunk, left", [(1, 3), (4, 0), (4, 2), (5, 1)])
def test_onnx_stream_equals_pytorch_stream(tmp_path, chunk, left):
    """Repeated blocks, a shared conv module and a shared low-rank factor,
    relative positions (rel_pos_type latest); 38 output frames, a multiple of
    no chunk here but 1."""
    encoder = build(
        seed=3, causal_conv=True, chunk_size=chunk, num_left_chunks=left,
        **REPEATED_SHARED_FACTOR,
    ).eval()  # fmt: skip
    ctc = _Ctc(16, VOCAB)
    path = str(tmp_path / "step.onnx")
    spec = export_streaming_onnx(encoder, path, ctc=ctc)
    assert spec["chunk_size"] == chunk and spec["left_frames"] == chunk * left
    _assert_streams_agree(encoder, path, ctc, chunk, left)


ARCHITECTURES = {
    "abs-pos-qk-norm": dict(
        pos_enc_layer_type="abs_pos", selfattention_layer_type="selfattn", qk_norm=True
    ),
    "scaled-abs-pos": dict(
        pos_enc_layer_type="scaled_abs_pos", selfattention_layer_type="selfattn"
    ),
    "post-norm-per-layer-norms": dict(
        normalize_before=False, num_blocks=6, num_unique_blocks=2, per_layer_norms=True
    ),
    "no-macaron-no-conv": dict(macaron_style=False, use_cnn_module=False),
    "conv2d6-narrow-out-factor": dict(
        input_layer="conv2d6",
        subsampling_channels=8,
        lowrank_rank=4,
        lowrank_shared_factor="out",
        num_unique_blocks=2,
    ),
}


@pytest.mark.parametrize("options", ARCHITECTURES.values(), ids=ARCHITECTURES.keys())
def test_onnx_stream_equals_pytorch_stream_for_other_architectures(tmp_path, options):
    causal = options.get("use_cnn_module", True)
    encoder = build(
        seed=4, chunk_size=3, num_left_chunks=2, causal_conv=causal, **options
    ).eval()
    ctc = _Ctc(16, VOCAB)
    path = str(tmp_path / "step.onnx")
    spec = export_streaming_onnx(encoder, path, ctc=ctc)
    names = [cache["input"] for cache in spec["caches"]]
    assert names == ["key_cache", "value_cache", "conv_cache"][: 3 if causal else 2]
    # Some 200 output frames: absolute positions follow the stream's offset.
    _assert_streams_agree(encoder, path, ctc, 3, 2, frames=4 * FRAMES + 200)
