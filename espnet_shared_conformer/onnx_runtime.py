"""Streaming on ONNX Runtime with numpy alone: no torch, no ESPnet.

An always-on device carries neither. :class:`OnnxStreamingEncoder` runs the
chunk step that ``python -m espnet_shared_conformer.onnx_export --streaming``
writes (:mod:`~espnet_shared_conformer.onnx_streaming`: one chunk of output
frames, every cache an input and an output) with the API of
``SharedConformerEncoder.init_streaming_state`` / ``forward_chunk``::

    encoder = OnnxStreamingEncoder("model.onnx")  # reads model.json beside it
    state = encoder.init_state()
    for feats in pieces:  # (n, F) features as they arrive, any n
        log_probs, state = encoder.forward_chunk(feats, state)  # (m, V)
    log_probs, state = encoder.forward_chunk(last, state, final=True)

The state buffers input frames until a whole chunk of output frames can be
computed; each call emits whole chunks only, and ``final=True`` flushes the
last, partial one (its input zero-padded to a chunk's window, the graph told
how many of its frames are real). The outputs equal PyTorch's
``forward_chunk`` (followed by the CTC head when the graph has one).

The JSON sidecar (:func:`sidecar_path`) says what the runtime needs to know
about the graph: chunk size, the subsampling's window and stride, the cache
tensors and their shapes, and, where the exporter knew them, the frame shift
and the token list. For a model with ESPnet's default frontend, its
``frontend`` entry and the ``.npz`` file beside the graph
(:func:`frontend_path`: the window and the ``LogMel``'s mel matrix) are
what :func:`read_frontend` turns into a
:class:`~espnet_shared_conformer.features.LogMelFrontend`, the features
computed with numpy; a global MVN is the graph's (``normalize``). The
sidecar is JSON (small, readable); the arrays are not, so they go into the
``.npz``. This module imports numpy and onnxruntime only, and the package's
``__init__`` imports nothing heavy, so that start-up stays short.
"""

import json
import os
from dataclasses import dataclass, replace
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import onnxruntime as ort

from espnet_shared_conformer.features import LogMelFrontend

__all__ = [
    "FEATS",
    "OFFSET",
    "SIDECAR_FORMAT",
    "SIDECAR_VERSION",
    "VALID",
    "OnnxStreamingEncoder",
    "OnnxStreamingState",
    "frontend_path",
    "read_frontend",
    "read_sidecar",
    "sidecar_path",
]

#: The graph's inputs besides the caches (their shapes: onnx_streaming's docstring).
FEATS, OFFSET, VALID = "feats", "offset", "valid"
#: What the sidecar's "format" holds, and the version this runtime reads.
SIDECAR_FORMAT = "espnet_shared_conformer.onnx_streaming"
SIDECAR_VERSION = 1


def sidecar_path(path: str) -> str:
    """The sidecar of the graph ``path``: ``model.onnx`` -> ``model.json``."""
    return os.path.splitext(path)[0] + ".json"


def frontend_path(path: str) -> str:
    """The frontend's arrays of the graph ``path``: ``model.onnx`` ->
    ``model.frontend.npz``."""
    return os.path.splitext(path)[0] + ".frontend.npz"


def read_frontend(
    path: str, spec: Optional[Mapping[str, Any]] = None
) -> LogMelFrontend:
    """The features the graph ``path`` reads, as numpy computes them: its
    sidecar's ``frontend`` entry and :func:`frontend_path`'s arrays.

    ``spec``: the sidecar, if read already. ``ValueError`` naming the file
    for a graph exported without them (before they were written: export it
    again), for one whose model has no default frontend, and for data that
    do not fit together.
    """
    sidecar = sidecar_path(path)
    spec = read_sidecar(path) if spec is None else spec
    if "frontend" not in spec:
        raise ValueError(
            f"{sidecar}: no frontend data (the graph was exported before "
            "onnx_export wrote them); export it again with "
            "python -m espnet_shared_conformer.onnx_export --streaming"
        )
    description = spec["frontend"]
    if description is None:
        raise ValueError(
            f"{sidecar}: frontend null: the graph's model has no ESPnet default "
            "frontend (it reads features computed elsewhere, e.g. Kaldi fbank), "
            "and only that frontend's log-mel is computed without torch"
        )
    if spec.get("normalize_outside"):
        raise ValueError(
            f"{sidecar}: normalize_outside ({spec['normalize_outside']}): the "
            "model normalizes with statistics of the whole utterance, which a "
            "stream cannot (train with global_mvn)"
        )
    arrays = os.path.join(os.path.dirname(path), description.get("arrays", ""))
    try:
        with np.load(arrays) as saved:
            loaded = {name: saved[name] for name in saved.files}
    except (OSError, ValueError) as e:
        raise ValueError(
            f"{arrays}: cannot read the frontend's arrays ({e}); export the "
            "graph again with python -m espnet_shared_conformer.onnx_export "
            "--streaming"
        ) from None
    try:
        frontend = LogMelFrontend.from_saved(description, loaded)
    except ValueError as e:
        raise ValueError(f"{sidecar} and {arrays}: {e}") from None
    if frontend.dim != spec["input_size"]:
        raise ValueError(
            f"{sidecar}: the frontend's {frontend.dim} mel bins are not the "
            f"graph's input_size ({spec['input_size']})"
        )
    return frontend


def read_sidecar(path: str) -> Dict[str, Any]:
    """The sidecar of the graph ``path``, checked to be one this runtime reads."""
    with open(sidecar_path(path), encoding="utf-8") as f:
        spec = json.load(f)
    if spec.get("format") != SIDECAR_FORMAT:
        raise ValueError(
            f"{sidecar_path(path)}: format ({spec.get('format')!r}) is not "
            f"{SIDECAR_FORMAT!r}; export with onnx_export --streaming"
        )
    if spec.get("version") != SIDECAR_VERSION:
        raise ValueError(
            f"{sidecar_path(path)}: version ({spec.get('version')!r}) is not "
            f"{SIDECAR_VERSION}, the one this runtime reads"
        )
    return spec


@dataclass(frozen=True)
class OnnxStreamingState:
    """What :meth:`OnnxStreamingEncoder.forward_chunk` carries between calls.

    Each call returns a new one; the old one stays valid.
    """

    frames: np.ndarray  # (B, n, F) float32: input the front end still needs
    offset: int  # output frames emitted so far
    caches: Mapping[str, np.ndarray]  # graph input name -> its cache tensor
    finished: bool = False  # a call with final=True has flushed the stream


class OnnxStreamingEncoder:
    """Encodes streams chunk by chunk with an exported chunk step.

    Args:
        path: The ``.onnx`` file; its sidecar (:func:`sidecar_path`) lies beside.
        threads: ONNX Runtime's intra-op threads.
        providers: ONNX Runtime's execution providers, in order of preference.

    Attributes:
        spec: The sidecar's contents (``chunk_size``, ``num_left_chunks``,
            ``input_size``, ``output_size``, ``frame_shift``, ``token_list``,
            ...).
    """

    def __init__(
        self,
        path: str,
        threads: int = 1,
        providers: Sequence[str] = ("CPUExecutionProvider",),
    ) -> None:
        if threads < 1:
            raise ValueError(f"threads ({threads}) must be at least 1")
        self.spec = read_sidecar(path)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(path, options, providers=list(providers))
        self.chunk_size: int = self.spec["chunk_size"]
        self.input_size: int = self.spec["input_size"]
        self.output_size: int = self.spec["output_size"]
        self._window: int = self.spec["subsampling"]["window"]
        #: Input frames per output frame (the subsampling's step).
        self.stride: int = self.spec["subsampling"]["stride"]
        self._input_frames: int = self.spec["input_frames"]
        self._caches: List[Mapping[str, Any]] = self.spec["caches"]
        self._outputs = [self.spec["output"]] + [c["output"] for c in self._caches]

    def init_state(self, batch: int = 1) -> OnnxStreamingState:
        """The state of ``batch`` streams that have seen nothing yet: empty
        input buffer, zero caches (the graph masks the slots not filled)."""
        if batch < 1:
            raise ValueError(f"batch ({batch}) must be at least 1")
        caches = {}
        for cache in self._caches:
            # The sidecar writes the batch axis as null.
            shape = [batch if size is None else size for size in cache["shape"]]
            caches[cache["input"]] = np.zeros(shape, np.float32)
        return OnnxStreamingState(
            frames=np.zeros((batch, 0, self.input_size), np.float32),
            offset=0,
            caches=caches,
        )

    def forward_chunk(
        self, feats: np.ndarray, state: OnnxStreamingState, final: bool = False
    ) -> Tuple[np.ndarray, OnnxStreamingState]:
        """Encode the next ``feats`` of each stream.

        ``feats``: (n, F) for a state of one stream, or (B, n, F); any
        ``n >= 0``. The graph's own input: features, normalized unless the
        sidecar's ``normalize`` says the graph does it. Returns the frames
        now computable, (m, V) or (B, m, V) as ``feats`` has it, with ``m`` a
        multiple of the chunk size unless ``final``, and the next state.
        """
        if state.finished:
            raise ValueError(
                "this stream was flushed (final=True); start the next one with "
                "init_state()"
            )
        single = np.ndim(feats) == 2
        batch = state.frames.shape[0]
        if single:
            feats = np.asarray(feats)[None]
        if feats.ndim != 3 or feats.shape[::2] != (batch, self.input_size):
            expected = f"(frames, {self.input_size}) or " if batch == 1 else ""
            raise ValueError(
                f"feats {np.shape(feats)[single:]} must be {expected}(batch {batch}, "
                f"frames, input_size {self.input_size})"
            )
        frames = np.concatenate((state.frames, feats.astype(np.float32)), axis=1)
        window, stride, chunk = self._window, self.stride, self.chunk_size
        total = frames.shape[1]
        # Output frame t reads input frames stride*t ... stride*t + window - 1.
        ready = (total - window) // stride + 1 if total >= window else 0
        count = ready if final else ready - ready % chunk
        outputs, caches, offset = [], state.caches, state.offset
        for start in range(0, count, chunk):
            valid = min(chunk, count - start)
            out, caches = self._step(frames[:, stride * start :], offset, valid, caches)
            outputs.append(out[:, :valid])
            offset += valid
        if outputs:
            out = np.concatenate(outputs, axis=1)
        else:
            out = np.zeros((batch, 0, self.output_size), np.float32)
        state = replace(
            state,
            frames=frames[:, stride * count :],
            offset=offset,
            caches=caches,
            finished=final,
        )
        return (out[0] if single else out), state

    def _step(
        self,
        frames: np.ndarray,
        offset: int,
        valid: int,
        caches: Mapping[str, np.ndarray],
    ) -> Tuple[np.ndarray, Dict[str, np.ndarray]]:
        """One run of the graph on the chunk whose input starts ``frames``
        (B, >= its window unless it is the last); ``valid`` of its output
        frames are real."""
        batch = frames.shape[0]
        window = frames[:, : self._input_frames]
        short = self._input_frames - window.shape[1]
        if short:  # the last, partial chunk: its padded frames are masked
            window = np.pad(window, ((0, 0), (0, short), (0, 0)))
        inputs = {
            FEATS: np.ascontiguousarray(window),
            OFFSET: np.full((batch,), offset, np.int64),
            VALID: np.full((batch,), valid, np.int64),
            **caches,
        }
        results = self.session.run(self._outputs, inputs)
        new = {c["input"]: r for c, r in zip(self._caches, results[1:], strict=True)}
        return results[0], new

    @property
    def token_list(self) -> Optional[List[str]]:
        """The model's tokens (index -> token), when the exporter knew them."""
        return self.spec.get("token_list")
