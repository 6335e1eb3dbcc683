"""Export one streaming chunk step to ONNX, its caches as inputs and outputs.

For a chunk of ``C`` output frames, ``N`` left chunks (``L = N C`` cached
frames), ``V`` virtual layers, ``H`` heads of ``d_k`` channels, model
dimension ``d``, convolution kernel ``k`` and a subsampling whose output frame
reads ``R`` input frames in steps of ``S`` (conv2d: 7 and 4), the graph is::

    feats        (B, S (C - 1) + R, F) float32  the chunk's input frames
    offset       (B,) int64   output frames of the stream before the chunk
    valid        (B,) int64   real frames of the chunk's C (C but in a last one)
    key_cache    (V, B, H, L, d_k) float32  each virtual layer's keys and
    value_cache  (V, B, H, L, d_k) float32  values of the last L frames
    conv_cache   (V, B, k - 1, d) float32   its depthwise convolution's last
                                            k - 1 inputs (absent without one)
      -> log_probs (B, C, vocab) float32 (encoder_out (B, C, d) without CTC),
         next_key_cache, next_value_cache, next_conv_cache: the same shapes

with the batch axis dynamic and every other one fixed. Consecutive chunks of
a stream overlap by ``R - S`` input frames; all caches start at zeros.
:mod:`~espnet_shared_conformer.onnx_runtime` buffers the input and runs the
graph, with numpy and onnxruntime only; :func:`export_streaming_onnx` writes
the graph and the JSON sidecar that runtime reads.

Choices, and why:

- **Fixed-size caches, masked.** ONNX Runtime runs fixed shapes best, and an
  on-device runtime wants a known memory bound, so the caches always hold
  ``L`` frames and need ``num_left_chunks >= 0``. The newest frames sit at
  the end; ``offset`` tells how many slots hold real frames (``min(offset,
  L)``), and the attention masks the others, as the masked forward's first
  chunks see fewer left chunks. The conv cache needs no mask: its zeros are
  the causal left padding the whole-utterance forward has.
- **The last, partial chunk** runs padded to a whole chunk, with ``valid``
  its real frames: the padded frames are masked as keys, and neither the
  subsampling, the causal convolution nor any per-frame module lets them
  reach a real frame. Their outputs and the caches after it are meaningless
  (the stream ends there).
- **Positions**: relative ones are the same ``L + 2C - 1`` distances for
  every chunk (a small constant of the graph); absolute ones follow the
  offset and are computed in the graph, as the whole-utterance export does.
- **Weights stored once**: the step is unrolled over the virtual layers;
  initializers are deduplicated by content as the whole-utterance export's
  are, so the file follows the unique parameters, while the caches (inputs,
  not weights) follow the virtual depth.
"""

import copy
import io
import json
import os
import warnings
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn

from espnet_shared_conformer.features import LogMelFrontend
from espnet_shared_conformer.onnx_export import (
    InGraphPositions,
    finish_graph,
    graph_normalization,
    write_atomically,
)
from espnet_shared_conformer.onnx_runtime import (
    FEATS,
    OFFSET,
    SIDECAR_FORMAT,
    SIDECAR_VERSION,
    VALID,
    OnnxStreamingEncoder,
    frontend_path,
    sidecar_path,
)
from espnet_shared_conformer.streaming import (
    LayerCache,
    encode_positions,
    relative_positions,
)
from espnet_shared_conformer.subsampling import (
    positional_encoding,
    subsample_features,
    time_window,
)

__all__ = ["ChunkStep", "check_streaming_onnx", "export_streaming_onnx"]

# (graph input, graph output) of each cache, in the graph's order.
_KEYS = ("key_cache", "next_key_cache")
_VALUES = ("value_cache", "next_value_cache")
_CONVS = ("conv_cache", "next_conv_cache")


class ChunkStep(nn.Module):
    """One chunk of a stream: input frames and caches -> output and caches.

    The exported graph (see the module's docstring). Holds a deep copy of
    the encoder in eval mode, the CTC head's output layer and, optionally,
    ``global_mvn``; computes what ``SharedConformerEncoder.forward_chunk``
    computes for one chunk.

    Args:
        encoder: A ``SharedConformerEncoder`` that streams (``causal_conv``,
            positions a chunk computes from its offset, ...).
        chunk_size: Output frames per chunk; None: the encoder's own.
        num_left_chunks: Chunks each chunk attends to on its left, at least
            0 (the caches have a fixed size); None: the encoder's own.
        ctc: ESPnet's ``CTC`` module, or None to output the encoder's frames.
        normalize: ESPnet's ``GlobalMVN``, or None.

    Raises ``ValueError`` naming the option where the encoder cannot stream
    or the left context is unlimited.
    """

    def __init__(
        self,
        encoder: nn.Module,
        chunk_size: Optional[int] = None,
        num_left_chunks: Optional[int] = None,
        ctc: Optional[nn.Module] = None,
        normalize: Optional[nn.Module] = None,
    ) -> None:
        super().__init__()
        if not hasattr(encoder, "init_streaming_state"):
            raise ValueError(
                f"encoder ({type(encoder).__name__}) does not stream: export a "
                "SharedConformerEncoder with causal_conv and chunk_size"
            )
        # The encoder's own checks, with the same messages as forward_chunk's.
        state = encoder.init_streaming_state(1, chunk_size, num_left_chunks)
        if state.num_left_chunks < 0:
            raise ValueError(
                f"num_left_chunks ({state.num_left_chunks}) must be at least 0 to "
                "export a chunk step: its caches have a fixed size, and -1 lets "
                "them grow with the stream"
            )
        self.encoder = copy.deepcopy(encoder).eval()
        self.ctc_lo = copy.deepcopy(ctc.ctc_lo) if ctc is not None else None
        self.normalize = graph_normalization(normalize)
        self.chunk_size = state.chunk_size
        self.num_left_chunks = state.num_left_chunks
        self.left_frames = state.num_left_chunks * state.chunk_size
        options = self.encoder.build_options
        self.input_layer = options["input_layer"]
        self.window, self.stride = time_window(self.input_layer)
        self.input_frames = self.stride * (self.chunk_size - 1) + self.window
        # One stream's caches of one virtual layer: (H, L, d_k) keys and as
        # many values; (k - 1, d) convolution inputs, or None.
        first = state.layers[0]
        self.num_layers = len(state.layers)
        self._attention_shape = (first.key.size(1), self.left_frames, first.key.size(3))
        self._conv_shape = None if first.conv is None else tuple(first.conv.shape[1:])
        pos_enc = positional_encoding(self.encoder.embed)
        # Relative positions: the same distances for every chunk, the rows of
        # ESPnet's table they need (its whole table would outweigh a tiny
        # model). Absolute ones follow the offset, computed in the graph.
        pos_emb = relative_positions(
            pos_enc, self.left_frames, self.chunk_size, state.frames
        )
        self.register_buffer("pos_emb", pos_emb, persistent=False)
        self.absolute = None if pos_emb is not None else InGraphPositions(pos_enc)
        self.eval()

    def cache_shapes(self) -> List[Tuple[str, str, List[Optional[int]]]]:
        """(graph input, graph output, shape with None for the batch axis)
        of each cache, in the graph's order."""
        layers = self.num_layers
        shapes = [
            (*_KEYS, [layers, None, *self._attention_shape]),
            (*_VALUES, [layers, None, *self._attention_shape]),
        ]
        if self._conv_shape is not None:
            shapes.append((*_CONVS, [layers, None, *self._conv_shape]))
        return shapes

    def example_inputs(self, batch: int = 1) -> Tuple[torch.Tensor, ...]:
        """Random ``feats``, a mid-stream ``offset``, whole chunks and zero
        caches: inputs to trace the graph with."""
        options = self.encoder.build_options
        caches = [
            torch.zeros([batch if n is None else n for n in shape])
            for _, _, shape in self.cache_shapes()
        ]
        return (
            torch.randn(batch, self.input_frames, options["input_size"]),
            torch.full((batch,), self.left_frames + 3, dtype=torch.long),
            torch.full((batch,), self.chunk_size, dtype=torch.long),
            *caches,
        )

    def forward(
        self,
        feats: torch.Tensor,
        offset: torch.Tensor,
        valid: torch.Tensor,
        key_cache: torch.Tensor,
        value_cache: torch.Tensor,
        conv_cache: Optional[torch.Tensor] = None,
    ) -> Tuple[torch.Tensor, ...]:
        """The chunk's output (B, C, vocab or d) and the next caches, in the
        order of the arguments (shapes: the module's docstring)."""
        encoder = self.encoder
        if self.normalize is not None:
            if self.normalize.norm_means:
                feats = feats - self.normalize.mean.to(feats.dtype)
            if self.normalize.norm_vars:
                feats = feats / self.normalize.std.to(feats.dtype)
        x = subsample_features(encoder.embed, feats)  # (B, C, d)
        if self.absolute is None:
            x = encode_positions(positional_encoding(encoder.embed), x, 0)
        else:
            steps = torch.arange(self.chunk_size, dtype=x.dtype, device=x.device)
            x = self.absolute.add_absolute(x, offset[:, None].to(x.dtype) + steps)
        layers = tuple(
            LayerCache(
                key_cache[i],
                value_cache[i],
                None if conv_cache is None else conv_cache[i],
            )
            for i in range(self.num_layers)
        )
        out, layers = encoder.encode_chunk(
            x, self.pos_emb, layers, self.left_frames, self._mask(offset, valid)
        )
        if self.ctc_lo is not None:
            out = torch.log_softmax(self.ctc_lo(out), dim=-1)
        caches = [
            torch.stack([layer.key for layer in layers]),
            torch.stack([layer.value for layer in layers]),
        ]
        if conv_cache is not None:
            caches.append(torch.stack([layer.conv for layer in layers]))
        return (out, *caches)

    def _mask(self, offset: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """(B, 1, L + C): True on the cache slots that hold a frame of this
        stream (the last ``min(offset, L)``) and the chunk's real frames."""
        left = self.left_frames
        slot = torch.arange(left + self.chunk_size, device=offset.device)
        cached = torch.clamp(offset, max=left)[:, None]  # (B, 1)
        visible = (slot >= left - cached) & (slot < left + valid[:, None])
        return visible[:, None, :]

    def sidecar(self) -> Dict[str, Any]:
        """What a runtime needs to know about the graph (the JSON sidecar)."""
        output = "log_probs" if self.ctc_lo is not None else "encoder_out"
        return {
            "format": SIDECAR_FORMAT,
            "version": SIDECAR_VERSION,
            "input_size": self.encoder.build_options["input_size"],
            "chunk_size": self.chunk_size,
            "num_left_chunks": self.num_left_chunks,
            "left_frames": self.left_frames,
            "subsampling": {
                "input_layer": self.input_layer,
                "window": self.window,
                "stride": self.stride,
            },
            "input_frames": self.input_frames,
            "output": output,
            "output_size": (
                self.ctc_lo.out_features
                if self.ctc_lo is not None
                else self.encoder.output_size()
            ),
            "normalize": "global_mvn" if self.normalize is not None else None,
            "caches": [
                {"input": name, "output": next_name, "shape": shape}
                for name, next_name, shape in self.cache_shapes()
            ],
        }


def export_streaming_onnx(
    encoder: nn.Module,
    path: str,
    ctc: Optional[nn.Module] = None,
    normalize: Optional[nn.Module] = None,
    chunk_size: Optional[int] = None,
    num_left_chunks: Optional[int] = None,
    opset: int = 17,
    metadata: Optional[Mapping[str, Any]] = None,
    frontend: Optional[LogMelFrontend] = None,
) -> Dict[str, Any]:
    """Export one chunk step (:class:`ChunkStep`) to ``path`` and its sidecar
    beside it (``onnx_runtime.sidecar_path``).

    ``metadata`` adds entries to the sidecar (the exporting command adds
    ``frame_shift`` and ``token_list``). ``frontend``: the model's default
    frontend as numbers (``LogMelFrontend.of_module``), for a recognizer
    without torch: its scalars go into the sidecar's ``frontend`` entry, its
    window and mel matrix into ``onnx_runtime.frontend_path`` (``.npz``);
    None writes ``"frontend": null`` (the graph's features come from
    elsewhere). Traced on a batch of 2; the batch axis is dynamic. Every
    file is written to a temporary name and renamed, the sidecar last.
    Returns the sidecar, with ``duplicates_removed``.
    """
    import onnx

    step = ChunkStep(encoder, chunk_size, num_left_chunks, ctc, normalize)
    spec = step.sidecar()
    caches = spec["caches"]
    input_names = [FEATS, OFFSET, VALID] + [c["input"] for c in caches]
    output_names = [spec["output"]] + [c["output"] for c in caches]
    dynamic_axes = {name: {0: "batch"} for name in input_names[:3] + output_names[:1]}
    dynamic_axes.update({name: {1: "batch"} for name in input_names[3:]})
    dynamic_axes.update({name: {1: "batch"} for name in output_names[1:]})
    buffer = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        # Tracing warns about every Python-side shape check in ESPnet's layers.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            step,
            step.example_inputs(batch=2),
            buffer,
            input_names=input_names,
            output_names=output_names,
            dynamic_axes=dynamic_axes,
            opset_version=opset,
            do_constant_folding=True,
            dynamo=False,
        )
    model, removed = finish_graph(buffer.getvalue())
    spec.update(metadata or {})
    spec["frontend"] = None
    write_atomically(path, lambda tmp: onnx.save(model, tmp))
    if frontend is not None:
        arrays = frontend_path(path)
        write_atomically(arrays, lambda tmp: _write_npz(frontend.arrays(), tmp))
        spec["frontend"] = {
            **frontend.description(),
            "arrays": os.path.basename(arrays),
        }
    spec["duplicates_removed"] = removed
    write_atomically(sidecar_path(path), lambda tmp: _write_json(spec, tmp))
    return spec


def _write_npz(arrays: Mapping[str, np.ndarray], path: str) -> None:
    # A file object: np.savez would add ".npz" to the temporary name.
    with open(path, "wb") as f:
        np.savez(f, **arrays)


def _write_json(data: Mapping[str, Any], path: str) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=1)
        f.write("\n")


def check_streaming_onnx(
    path: str,
    encoder: nn.Module,
    ctc: Optional[nn.Module] = None,
    normalize: Optional[nn.Module] = None,
    frames: Sequence[int] = (157, 61),
    seed: int = 0,
    threads: int = 1,
) -> float:
    """Largest absolute difference between the exported chunk step, run by
    :class:`~espnet_shared_conformer.onnx_runtime.OnnxStreamingEncoder`, and
    the encoder's own ``forward_chunk``, streaming the same features.

    One stream of each length in ``frames`` (the first in a batch of two),
    fed in random pieces and flushed with ``final=True``; ``encoder``,
    ``ctc`` and ``normalize`` are what the graph was exported from. Raises
    ``AssertionError`` when the two emit different numbers of frames.
    """
    runtime = OnnxStreamingEncoder(path, threads)
    spec = runtime.spec
    g = torch.Generator().manual_seed(seed)
    worst = 0.0
    for i, length in enumerate(frames):
        feats = torch.randn(2 if i == 0 else 1, length, spec["input_size"], generator=g)
        pieces = _random_pieces(length, g)
        expected = _torch_stream(encoder, ctc, normalize, spec, feats, pieces)
        state = runtime.init_state(feats.size(0))
        got, start = [], 0
        for j, piece in enumerate(pieces):
            out, state = runtime.forward_chunk(
                feats[:, start : start + piece].numpy(), state, j == len(pieces) - 1
            )
            got.append(out)
            start += piece
        streamed = torch.from_numpy(np.concatenate(got, axis=1))
        if streamed.shape != expected.shape:
            raise AssertionError(
                f"onnxruntime streams {tuple(streamed.shape)}, PyTorch "
                f"{tuple(expected.shape)}"
            )
        worst = max(worst, float((streamed - expected).abs().max()))
    return worst


def _random_pieces(total: int, generator: torch.Generator) -> List[int]:
    """Piece lengths adding up to ``total``: 0 to 30 frames each."""
    pieces: List[int] = []
    while sum(pieces) < total:
        pieces.append(int(torch.randint(0, 31, (1,), generator=generator)))
    pieces[-1] -= sum(pieces) - total
    return pieces


@torch.no_grad()
def _torch_stream(
    encoder: nn.Module,
    ctc: Optional[nn.Module],
    normalize: Optional[nn.Module],
    spec: Mapping[str, Any],
    feats: torch.Tensor,
    pieces: Sequence[int],
) -> torch.Tensor:
    """PyTorch's ``forward_chunk`` over ``feats`` in ``pieces``, then the CTC
    head: what the graph's stream should give."""
    if normalize is not None:
        lengths = torch.full((feats.size(0),), feats.size(1))
        # GlobalMVN normalizes in place: the graph gets the features as given.
        feats = normalize(feats.clone(), lengths)[0]
    state = encoder.init_streaming_state(
        feats.size(0), spec["chunk_size"], spec["num_left_chunks"]
    )
    outputs, start = [], 0
    for i, piece in enumerate(pieces):
        out, state = encoder.forward_chunk(
            feats[:, start : start + piece], state, final=i == len(pieces) - 1
        )
        outputs.append(out)
        start += piece
    out = torch.cat(outputs, dim=1)
    if ctc is not None:
        out = torch.log_softmax(ctc.ctc_lo(out), dim=-1)
    return out
