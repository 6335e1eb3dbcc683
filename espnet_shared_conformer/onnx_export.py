"""Export the encoder and the CTC head to ONNX, with shared weights stored once.

The graph maps features to CTC log-posteriors::

    feats (B, T, F) float32, feats_lengths (B,) int64
        -> log_probs (B, T', V) float32, out_lengths (B,) int64

with the batch and time axes dynamic. ``feats`` are the encoder's input, i.e.
the output of ESPnet's frontend (filterbanks); a ``global_mvn`` normalization
is included in the graph when given (its statistics are two small tensors),
any other normalization runs before the graph. Without a CTC head the graph
returns the encoder output ``(B, T', d)`` instead of ``log_probs``.

Choices, and why:

- **TorchScript exporter** (``torch.onnx.export(..., dynamo=False)``): torch
  2.11's default dynamo exporter needs ``onnxscript``, and it cannot trace the
  Python-side shape checks of ESPnet's layers without rewriting them; the
  TorchScript exporter traces them as they are, and dynamic axes work because
  every shape in the forward pass is read from tensors.
- **Positions computed in the graph**: ESPnet keeps its sinusoidal positional
  encodings as a plain tensor of ``max_pos_emb_len`` (5000) positions, which a
  trace would store as a constant bigger than a tiny model's weights, and fix
  the longest input. The exported copy computes the same sinusoids from the
  input length instead.
- **Initializers deduplicated by content**: after constant folding, a weight
  used from several places (a repeated block, a shared module or factor) can
  be stored once per use; :func:`deduplicate_initializers` keeps one copy of
  each distinct tensor, so the file grows with unique parameters, not with the
  virtual depth.
- **Padding mask from the lengths**: built with tensor operations, because
  ESPnet's ``make_pad_mask`` takes ``max(lengths)`` as a Python number, which
  a trace would freeze.

Usage::

    python -m espnet_shared_conformer.onnx_export --config exp/asr/config.yaml \\
        --model exp/asr/valid.acc.ave.pth --out exp/asr/encoder_ctc.onnx

prints the file size, the unique parameters' fp32 bytes and the largest
difference to PyTorch on two random inputs of different lengths. With
``--streaming`` (and ``--chunk_size`` / ``--num_left_chunks`` to override the
encoder's) it exports one chunk step of a streaming encoder instead, with its
caches as inputs and outputs, and a JSON sidecar beside it
(:mod:`~espnet_shared_conformer.onnx_streaming`), checked against the
encoder's ``forward_chunk``; :mod:`~espnet_shared_conformer.onnx_runtime`
runs it without torch. For a model with ESPnet's default frontend it also
writes that frontend as numbers (sizes, window, mel matrix, log; the
sidecar's ``frontend`` entry and ``model.frontend.npz``), so that
``StreamingRecognizer.from_onnx`` computes the features with numpy.
"""

import argparse
import copy
import hashlib
import io
import math
import os
import sys
import warnings
from typing import Any, Callable, Dict, Optional, Sequence, Tuple

import torch
from torch import nn

from espnet_shared_conformer._cli import add_model_arguments, command_parser
from espnet_shared_conformer.params import count_parameters

__all__ = [
    "EncoderCTC",
    "InGraphPositions",
    "check_onnx",
    "compact_names",
    "deduplicate_initializers",
    "export_onnx",
    "finish_graph",
    "get_parser",
    "graph_normalization",
    "main",
    "write_atomically",
]

INPUT_NAMES = ("feats", "feats_lengths")


class InGraphPositions(nn.Module):
    """ESPnet's sinusoidal positional encoding, computed from the input length.

    Replaces ``PositionalEncoding``, ``ScaledPositionalEncoding``,
    ``LegacyRelPositionalEncoding`` and ``RelPositionalEncoding`` (in eval
    mode: no dropout) with the same numbers, without a stored table.
    :meth:`add_absolute` also serves the streaming chunk step, whose
    positions start at a stream's offset.
    """

    KINDS = {
        "PositionalEncoding": "abs",
        "ScaledPositionalEncoding": "scaled",
        "LegacyRelPositionalEncoding": "legacy_rel",
        "RelPositionalEncoding": "rel",
    }

    def __init__(self, original: nn.Module) -> None:
        super().__init__()
        self.kind = self.KINDS[type(original).__name__]
        self.d_model = original.d_model
        self.xscale = original.xscale
        if self.kind == "scaled":
            self.alpha = original.alpha
        # The legacy relative encoding counts down from its table's length.
        self.table_len = original.pe.size(1) if self.kind == "legacy_rel" else 0
        div_term = torch.exp(
            torch.arange(0, self.d_model, 2, dtype=torch.float32)
            * -(math.log(10000.0) / self.d_model)
        )
        self.register_buffer("div_term", div_term, persistent=False)

    def _encode(self, positions: torch.Tensor) -> torch.Tensor:
        """Positions (...) -> (..., d): sin on even, cos on odd channels."""
        angles = positions[..., None] * self.div_term  # (..., d/2)
        pe = torch.stack((angles.sin(), angles.cos()), dim=-1)  # (..., d/2, 2)
        return pe.flatten(-2)

    def add_absolute(self, x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """An absolute encoding of frames ``x`` (B, T, d) at ``positions``
        (T,) or (B, T), float: what ESPnet's forward gives from position 0."""
        if self.kind == "abs":
            return x * self.xscale + self._encode(positions)
        assert self.kind == "scaled", f"{self.kind} positions are relative"
        return x + self.alpha * self._encode(positions)

    def forward(self, x: torch.Tensor):
        # 0, 1, ..., T-1 from the data, so the trace keeps T dynamic.
        steps = torch.ones_like(x[0, :, 0]).cumsum(0) - 1  # (T,)
        if self.kind in ("abs", "scaled"):
            return self.add_absolute(x, steps)
        if self.kind == "legacy_rel":
            return x * self.xscale, self._encode((self.table_len - 1) - steps)[None]
        # Relative positions T-1, ..., 1, 0, -1, ..., -(T-1): (1, 2T-1, d).
        positions = torch.cat((steps[-1] - steps, -steps[1:]))
        return x * self.xscale, self._encode(positions)[None]


def _replace_positions(module: nn.Module) -> int:
    """Swap every ESPnet sinusoidal encoding under ``module``; return how many."""
    swapped = 0
    for name, child in list(module.named_children()):
        if type(child).__name__ in InGraphPositions.KINDS:
            setattr(module, name, InGraphPositions(child))
            swapped += 1
        else:
            swapped += _replace_positions(child)
    return swapped


def graph_normalization(normalize: Optional[nn.Module]) -> Optional[nn.Module]:
    """A copy of ESPnet's ``normalize`` module for a graph to apply, or None.

    Only ``GlobalMVN`` goes into a graph (its statistics are two small
    tensors); any other raises ``ValueError``.
    """
    if normalize is None:
        return None
    if type(normalize).__name__ != "GlobalMVN":
        raise ValueError(
            f"normalize ({type(normalize).__name__}) cannot go into the graph: "
            "only global_mvn can; normalize the features before the graph"
        )
    return copy.deepcopy(normalize)


class EncoderCTC(nn.Module):
    """Features -> CTC log-posteriors (or encoder output): the exported graph.

    Holds a deep copy of the encoder (eval mode, positions computed in the
    graph), the CTC head's output layer and, optionally, ``global_mvn``.

    Args:
        encoder: An ESPnet encoder (``SharedConformerEncoder`` or ESPnet's
            ``ConformerEncoder``, possibly quantized).
        ctc: ESPnet's ``CTC`` module, or None to return the encoder output.
        normalize: ESPnet's ``GlobalMVN``, or None.
    """

    def __init__(
        self,
        encoder: nn.Module,
        ctc: Optional[nn.Module] = None,
        normalize: Optional[nn.Module] = None,
    ) -> None:
        super().__init__()
        self.normalize = graph_normalization(normalize)
        self.encoder = copy.deepcopy(encoder).eval()
        _replace_positions(self.encoder)
        self.ctc_lo = copy.deepcopy(ctc.ctc_lo) if ctc is not None else None
        self.eval()

    def forward(
        self, feats: torch.Tensor, feats_lengths: torch.Tensor
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """feats (B, T, F), feats_lengths (B,) -> (B, T', V or d), (B,)."""
        time = torch.ones_like(feats[0, :, 0]).cumsum(0) - 1  # (T,)
        pad = time[None, :] >= feats_lengths[:, None].to(time.dtype)  # (B, T)
        if self.normalize is not None:
            if self.normalize.norm_means:
                feats = feats - self.normalize.mean.to(feats.dtype)
            feats = feats.masked_fill(pad[:, :, None], 0.0)
            if self.normalize.norm_vars:
                feats = feats / self.normalize.std.to(feats.dtype)
        out, out_lengths, _ = self.encoder(feats, feats_lengths, masks=pad)
        if isinstance(out, tuple):  # intermediate CTC outputs: keep the last
            out = out[0]
        if self.ctc_lo is not None:
            out = torch.log_softmax(self.ctc_lo(out), dim=-1)
        return out, out_lengths


def deduplicate_initializers(model) -> int:
    """Keep one initializer per distinct tensor content; return how many went.

    ``model`` is an ``onnx.ModelProto``, changed in place: nodes that read a
    duplicate read the kept copy instead.
    """
    from onnx import numpy_helper

    graph = model.graph
    kept: Dict[Tuple, str] = {}
    rename: Dict[str, str] = {}
    survivors = []
    for init in graph.initializer:
        array = numpy_helper.to_array(init)
        digest = hashlib.sha256(array.tobytes()).hexdigest()
        key = (init.data_type, tuple(init.dims), digest)
        if key in kept:
            rename[init.name] = kept[key]
        else:
            kept[key] = init.name
            survivors.append(init)
    if not rename:
        return 0
    del graph.initializer[:]
    graph.initializer.extend(survivors)
    for node in graph.node:
        for i, name in enumerate(node.input):
            if name in rename:
                node.input[i] = rename[name]
    return len(rename)


def compact_names(model) -> None:
    """Drop node names and shorten intermediate tensor names, in place.

    The traced graph is unrolled over the virtual layers and names every node
    and value by its module path ("/encoder/encoders.0/self_attn/MatMul_3"):
    for a tiny model those names outweigh the weights. Graph inputs, outputs
    and initializers keep their names.
    """
    graph = model.graph
    outputs = {v.name for v in graph.output}
    keep = {v.name for v in graph.input} | outputs
    keep |= {init.name for init in graph.initializer}
    rename: Dict[str, str] = {}
    # The exporter reads a weight used from several places through Identity
    # nodes; read the initializer directly (ONNX Runtime's int8 quantizer only
    # quantizes a MatMul whose weight is an initializer).
    initializers = {init.name for init in graph.initializer}
    identities = [
        n
        for n in graph.node
        if n.op_type == "Identity"
        and n.input[0] in initializers
        and n.output[0] not in outputs
    ]
    for node in identities:
        rename[node.output[0]] = node.input[0]
        graph.node.remove(node)
    for node in graph.node:  # topologically sorted: uses follow definitions
        node.name = ""
        node.doc_string = ""
        for i, name in enumerate(node.input):
            if name in rename:
                node.input[i] = rename[name]
        for i, name in enumerate(node.output):
            if name and name not in keep:
                rename[name] = node.output[i] = f"t{len(rename):x}"
    del graph.value_info[:]


def export_onnx(
    encoder: nn.Module,
    path: str,
    ctc: Optional[nn.Module] = None,
    normalize: Optional[nn.Module] = None,
    opset: int = 17,
    example_frames: int = 64,
) -> int:
    """Export features -> CTC log-posteriors (see :class:`EncoderCTC`) to ``path``.

    Batch and time are dynamic; the graph is traced on a random batch of
    ``example_frames`` frames. Initializers are deduplicated by content and
    internal names shortened (:func:`compact_names`).

    Returns:
        The number of duplicate initializers removed.
    """
    import onnx

    wrapper = EncoderCTC(encoder, ctc, normalize)
    input_size = _input_size(encoder)
    feats = torch.randn(1, example_frames, input_size)
    lengths = torch.tensor([example_frames], dtype=torch.long)
    buffer = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        # Tracing warns about every Python-side shape check in ESPnet's layers.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            wrapper,
            (feats, lengths),
            buffer,
            input_names=list(INPUT_NAMES),
            output_names=[
                "log_probs" if ctc is not None else "encoder_out",
                "out_lengths",
            ],
            dynamic_axes={
                "feats": {0: "batch", 1: "frames"},
                "feats_lengths": {0: "batch"},
                "log_probs" if ctc is not None else "encoder_out": {
                    0: "batch",
                    1: "out_frames",
                },
                "out_lengths": {0: "batch"},
            },
            opset_version=opset,
            do_constant_folding=True,
            dynamo=False,
        )
    model, removed = finish_graph(buffer.getvalue())
    write_atomically(path, lambda tmp: onnx.save(model, tmp))
    return removed


def finish_graph(traced: bytes) -> Tuple[Any, int]:
    """What both exporters do to a traced graph: load it, keep one copy of
    each initializer (:func:`deduplicate_initializers`), shorten its names
    (:func:`compact_names`), check it. Returns the ``onnx.ModelProto`` and
    the number of duplicate initializers removed."""
    import onnx

    model = onnx.load_from_string(traced)
    removed = deduplicate_initializers(model)
    compact_names(model)
    onnx.checker.check_model(model)
    return model, removed


def write_atomically(path: str, write: Callable[[str], None]) -> None:
    """``write(tmp)`` to ``path + ".tmp"``, then rename it to ``path``: a
    reader never sees half a file."""
    tmp = f"{path}.tmp"
    write(tmp)
    os.replace(tmp, path)


def _input_size(encoder: nn.Module) -> int:
    options = getattr(encoder, "build_options", None)
    if options is not None:
        return int(options["input_size"])
    first = next(
        m for m in encoder.embed.modules() if isinstance(m, (nn.Linear, nn.Conv2d))
    )
    if isinstance(first, nn.Linear):
        return first.in_features
    # Conv2dSubsampling: the frequency axis shrinks through the convs to the
    # linear layer's input; invert that is not unique, so require options.
    raise ValueError(
        "cannot tell the input size of this encoder: pass a SharedConformerEncoder "
        "(which keeps build_options)"
    )


def check_onnx(
    path: str,
    wrapper: nn.Module,
    lengths: Sequence[Sequence[int]] = ((50, 37), (131, 90)),
    seed: int = 0,
    threads: int = 1,
) -> float:
    """Largest absolute difference between onnxruntime and ``wrapper``.

    Runs one random padded batch per entry of ``lengths`` (batches of
    different lengths check the dynamic axes); output lengths must match
    exactly, outputs are compared on the real frames.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    input_size = session.get_inputs()[0].shape[2]
    g = torch.Generator().manual_seed(seed)
    worst = 0.0
    for batch_lengths in lengths:
        lens = torch.tensor(batch_lengths, dtype=torch.long)
        feats = torch.randn(len(lens), int(lens.max()), input_size, generator=g)
        feats = feats * (
            torch.arange(feats.size(1))[None, :, None] < lens[:, None, None]
        )
        with torch.no_grad():
            expected, expected_lengths = wrapper(feats, lens)
        got, got_lengths = session.run(
            None, {"feats": feats.numpy(), "feats_lengths": lens.numpy()}
        )
        if (
            got.shape != tuple(expected.shape)
            or not (got_lengths == expected_lengths.numpy()).all()
        ):
            raise AssertionError(
                f"onnxruntime gives shape {got.shape}, lengths {got_lengths.tolist()}; "
                f"PyTorch {tuple(expected.shape)}, {expected_lengths.tolist()}"
            )
        for b, n in enumerate(expected_lengths.tolist()):
            diff = (torch.from_numpy(got[b, :n]) - expected[b, :n]).abs().max()
            worst = max(worst, float(diff))
    return worst


def get_parser() -> argparse.ArgumentParser:
    parser = command_parser(
        "onnx_export",
        "Export an ESPnet ASR model's encoder and CTC head "
        "(features -> CTC log-posteriors) to ONNX, with dynamic batch and time "
        "axes and shared weights stored once; check it against PyTorch.",
    )
    add_model_arguments(parser)
    parser.add_argument("--out", required=True, help="ONNX file to write")
    parser.add_argument("--opset", type=int, default=17)
    parser.add_argument(
        "--no_ctc", action="store_true", help="export the encoder output instead"
    )
    parser.add_argument(
        "--tolerance", type=float, default=1e-3, help="largest difference accepted"
    )
    streaming = parser.add_argument_group(
        "streaming",
        "--streaming exports one chunk step instead, its caches as inputs and "
        "outputs (onnx_streaming), and a JSON sidecar beside it (model.onnx -> "
        "model.json) for onnx_runtime.OnnxStreamingEncoder",
    )
    streaming.add_argument(
        "--streaming", action="store_true", help="export the streaming chunk step"
    )
    streaming.add_argument(
        "--chunk_size",
        type=int,
        default=None,
        help="output frames per chunk (default: the encoder's chunk_size)",
    )
    streaming.add_argument(
        "--num_left_chunks",
        type=int,
        default=None,
        help="chunks each chunk sees on its left, >= 0 (default: the encoder's)",
    )
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = get_parser()
    args = parser.parse_args(argv)
    for name in ("chunk_size", "num_left_chunks"):
        if getattr(args, name) is not None and not args.streaming:
            parser.error(f"--{name} ({getattr(args, name)}) needs --streaming")

    from espnet2.tasks.asr import ASRTask

    from espnet_shared_conformer._registry import register

    register()
    model = ASRTask.build_model_from_file(args.config, args.model, "cpu")[0].eval()
    ctc = None if args.no_ctc else model.ctc
    normalize = getattr(model, "normalize", None)
    if normalize is not None and type(normalize).__name__ != "GlobalMVN":
        print(
            f"note: {type(normalize).__name__} is not in the graph; feed it "
            "normalized features",
            file=sys.stderr,
        )
        normalize = None
    if args.streaming:
        try:
            removed, diff, what = _export_streaming(args, model, ctc, normalize)
        except ValueError as e:  # the model cannot stream as asked
            parser.error(str(e))
    else:
        removed = export_onnx(model.encoder, args.out, ctc, normalize, args.opset)
        wrapper = EncoderCTC(model.encoder, ctc, normalize)
        diff = check_onnx(args.out, wrapper)
        what = ""
    parts = [model.encoder] + ([model.ctc] if ctc is not None else [])
    size = os.path.getsize(args.out)
    unique = 4 * count_parameters(*parts)  # fp32 bytes
    print(
        f"wrote {args.out}{what}: {size:,} bytes; unique parameters at fp32 "
        f"{unique:,} bytes ({size / unique:.2f}x); {removed} duplicate initializers "
        f"removed; largest difference to PyTorch {diff:.2e}"
    )
    if diff > args.tolerance:
        print(f"error: difference {diff:.2e} above {args.tolerance}", file=sys.stderr)
        return 1
    return 0


def _export_streaming(
    args: argparse.Namespace,
    model: nn.Module,
    ctc: Optional[nn.Module],
    normalize: Optional[nn.Module],
) -> Tuple[int, float, str]:
    """``--streaming``: the chunk step, its sidecar and the frontend's data,
    checked against the encoder's ``forward_chunk``. Returns the duplicates
    removed, the largest difference and what to add to the report."""
    from espnet_shared_conformer.features import LogMelFrontend
    from espnet_shared_conformer.onnx_runtime import sidecar_path
    from espnet_shared_conformer.onnx_streaming import (
        check_streaming_onnx,
        export_streaming_onnx,
    )

    frontend = getattr(model, "frontend", None)
    features = None
    if frontend is not None:
        try:
            features = LogMelFrontend.of_module(frontend)
        except ValueError as e:
            print(f"note: no frontend data written: {e}", file=sys.stderr)
    outside = getattr(model, "normalize", None)
    metadata = {
        "frame_shift": _frame_shift(frontend),
        "token_list": list(model.token_list) if ctc is not None else None,
        # A normalization the graph does not do (utterance_mvn): a stream
        # cannot, and the runtime says so.
        "normalize_outside": (
            type(outside).__name__
            if outside is not None and normalize is None
            else None
        ),
    }
    spec = export_streaming_onnx(
        model.encoder,
        args.out,
        ctc,
        normalize,
        args.chunk_size,
        args.num_left_chunks,
        args.opset,
        metadata,
        features,
    )
    diff = check_streaming_onnx(args.out, model.encoder, ctc, normalize)
    what = (
        f" (chunk step: {spec['chunk_size']} frames, {spec['num_left_chunks']} "
        f"left chunks) and {sidecar_path(args.out)}"
    )
    if spec["frontend"] is not None:
        what += f" (+ {spec['frontend']['arrays']})"
    return spec["duplicates_removed"], diff, what


def _frame_shift(frontend: Optional[nn.Module]) -> Optional[float]:
    """Seconds between feature frames of ESPnet's default frontend, else None."""
    hop = getattr(frontend, "hop_length", None)
    logmel = getattr(frontend, "logmel", None)
    rate = getattr(logmel, "mel_options", {}).get("sr")
    if hop is None or rate is None:
        return None
    return hop / rate


if __name__ == "__main__":
    sys.exit(main())
