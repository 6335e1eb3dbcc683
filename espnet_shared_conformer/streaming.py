"""Streaming options: chunked attention, a causal convolution, and their caches.

:class:`StreamingOptions` defines each streaming option once, as
:class:`~espnet_shared_conformer.plan.SharingOptions` does the sharing ones;
:func:`chunk_attention_mask` and :func:`choose_chunk` give the attention mask
``forward`` uses; :class:`StreamingState` is what
``SharedConformerEncoder.forward_chunk`` carries from one piece of audio to
the next, and :func:`cache_size` how large it gets.

Terms: chunks are counted in output frames, after subsampling. With chunk
size ``C`` and ``N`` left chunks, output frame ``i`` attends to frame ``j``
when ``j``'s chunk is ``i``'s or one of the ``N`` before it (all before it
for ``N = -1``), as in WeNet's U2. Chunks are aligned to the utterance's
first frame.
"""

from dataclasses import dataclass, replace
from typing import Any, Mapping, Optional, Tuple

import torch
from torch import nn

from espnet_shared_conformer._compat import (
    PositionalEncoding,
    RelPositionalEncoding,
    ScaledPositionalEncoding,
)
from espnet_shared_conformer.plan import OptionGroup, option
from espnet_shared_conformer.subsampling import CONV2D_INPUT_LAYERS, time_window

__all__ = [
    "CacheSize",
    "LayerCache",
    "StreamingOptions",
    "StreamingState",
    "cache_size",
    "chunk_attention_mask",
    "choose_chunk",
    "encode_positions",
    "relative_positions",
]

# Positional encodings a chunk can compute from its own offset (relative ones
# only with rel_pos_type latest: ESPnet rewrites legacy ones into
# LegacyRelPositionalEncoding, whose positions are absolute).
_STREAMABLE_POSITIONS = ("rel_pos", "abs_pos", "scaled_abs_pos")
# U2's default largest dynamic chunk.
_MAX_DYNAMIC_CHUNK = 25


def _non_negative(name: str, value: int, choices: Tuple[str, ...]) -> None:
    if value < 0:
        raise ValueError(f"{name} ({value}) must not be negative")


def _at_least_one(name: str, value: int, choices: Tuple[str, ...]) -> None:
    if value < 1:
        raise ValueError(f"{name} ({value}) must be at least 1")


def _left_chunks(name: str, value: int, choices: Tuple[str, ...]) -> None:
    if value < -1:
        raise ValueError(f"{name} ({value}) must be -1 (unlimited) or at least 0")


@dataclass(frozen=True)
class StreamingOptions(OptionGroup):
    """The streaming options of ``SharedConformerEncoder``, all off by default.

    Each field is one option, as ``encoder_conf`` spells it, with its default
    and, as metadata, its ``help`` and ``check`` (see
    :func:`~espnet_shared_conformer.plan.option`). Construction checks each
    option and their combinations, raising ``ValueError`` naming them;
    :meth:`check_fits` checks them against the Conformer's own options.
    With every option at its default the encoder computes what ESPnet's
    Conformer does.
    """

    causal_conv: bool = option(
        False,
        "the depthwise convolution reads the current and past frames only "
        "(input left-padded by cnn_module_kernel - 1 zeros)",
        shares=False,
    )
    chunk_size: int = option(
        0,
        "attention in chunks of this many frames after subsampling, each "
        "seeing itself and chunks before it, in training and evaluation; "
        "0: full context. forward_chunk's default chunk",
        _non_negative,
        shares=False,
    )
    dynamic_chunk_training: bool = option(
        False,
        "in training, each batch draws its chunk: full context for half the "
        "batches, else 1..max_dynamic_chunk; evaluation uses chunk_size",
        shares=False,
    )
    max_dynamic_chunk: int = option(
        _MAX_DYNAMIC_CHUNK,
        "largest chunk dynamic_chunk_training draws",
        _at_least_one,
        shares=False,
    )
    num_left_chunks: int = option(
        -1,
        "chunks to the left each chunk attends to (-1: all); bounds the "
        "streaming cache",
        _left_chunks,
        shares=False,
    )
    dynamic_left_chunks: bool = option(
        False,
        "in training, each chunked batch also draws its left chunks "
        "(0 to all); evaluation uses num_left_chunks",
        shares=False,
    )

    def __post_init__(self) -> None:
        self._check_fields()
        if self.dynamic_left_chunks and not self.dynamic_chunk_training:
            raise ValueError(
                "dynamic_left_chunks (True) needs dynamic_chunk_training: left "
                "chunks are drawn with the chunk size"
            )
        dynamic = self.dynamic_chunk_training
        if self.max_dynamic_chunk != _MAX_DYNAMIC_CHUNK and not dynamic:
            raise ValueError(
                f"max_dynamic_chunk ({self.max_dynamic_chunk}) needs "
                "dynamic_chunk_training: nothing else draws a chunk size"
            )
        if self.num_left_chunks != -1 and not self.chunking:
            raise ValueError(
                f"num_left_chunks ({self.num_left_chunks}) needs chunk_size > 0 or "
                "dynamic_chunk_training: without chunks there are no left chunks"
            )

    @property
    def chunking(self) -> bool:
        """Whether attention is ever chunked (in training or evaluation)."""
        return self.chunk_size > 0 or self.dynamic_chunk_training

    def _chunking_option(self) -> str:
        """The option that turns chunking on, with its value, for messages."""
        if self.chunk_size > 0:
            return f"chunk_size ({self.chunk_size})"
        return "dynamic_chunk_training (True)"

    def check_fits(self, conformer: Mapping[str, Any]) -> None:
        """Raise ``ValueError`` where these options contradict the Conformer's.

        ``conformer`` holds the encoder's other constructor arguments
        (``input_layer``, ``pos_enc_layer_type``, ...), every one present.
        Chunks must be computable one after the other: every module reads
        the current and past frames only, and positions follow from a
        chunk's offset.
        """
        cnn = conformer["use_cnn_module"]
        if self.causal_conv and not cnn:
            raise ValueError(
                "causal_conv (True) needs use_cnn_module: there is no convolution "
                "to make causal"
            )
        if not self.chunking:
            return
        chunking = self._chunking_option()
        if cnn and not self.causal_conv:
            raise ValueError(
                f"{chunking} needs causal_conv: the symmetric convolution reads "
                f"{conformer['cnn_module_kernel'] // 2} frames of the next chunk"
            )
        input_layer = conformer["input_layer"]
        if input_layer not in CONV2D_INPUT_LAYERS:
            raise ValueError(
                f"{chunking} needs a convolutional subsampling; input_layer "
                f"({input_layer!r}) is none of {list(CONV2D_INPUT_LAYERS)}"
            )
        positions = conformer["pos_enc_layer_type"]
        rel_pos_type = conformer["rel_pos_type"]
        if positions not in _STREAMABLE_POSITIONS or (
            positions == "rel_pos" and rel_pos_type != "latest"
        ):
            raise ValueError(
                f"{chunking} needs positions a chunk computes from its offset: "
                "pos_enc_layer_type 'rel_pos' with rel_pos_type 'latest', 'abs_pos' "
                f"or 'scaled_abs_pos', not pos_enc_layer_type ({positions!r}) with "
                f"rel_pos_type ({rel_pos_type!r})"
            )
        if conformer["zero_triu"] and positions == "rel_pos":
            raise ValueError(
                f"{chunking} contradicts zero_triu (True), which zeroes position "
                "scores by place in the whole utterance"
            )
        positionwise = conformer["positionwise_layer_type"]
        if positionwise != "linear":
            raise ValueError(
                f"{chunking} needs positionwise_layer_type 'linear'; "
                f"{positionwise!r} convolves over time and reads the next chunk"
            )
        if conformer["ctc_trim"]:
            raise ValueError(
                f"{chunking} contradicts ctc_trim (True), which drops frames and "
                "so moves the chunk boundaries"
            )


def chunk_attention_mask(
    time: int,
    chunk_size: int,
    num_left_chunks: int = -1,
    device: Optional[torch.device] = None,
) -> torch.Tensor:
    """(T, T) bool, True where query frame i may attend to key frame j.

    Frame t is in chunk ``t // chunk_size``; i sees j when j's chunk is i's
    or one of the ``num_left_chunks`` before it (any before it for -1).
    Built from ``arange(T)`` alone, so that an exported graph keeps T dynamic.
    """
    chunk = torch.arange(time, device=device) // chunk_size
    behind = chunk[:, None] - chunk[None, :]  # (T, T): key's chunks behind query's
    visible = behind >= 0
    if num_left_chunks >= 0:
        # Not &=: the ONNX exporter has no in-place and.
        visible = visible & (behind <= num_left_chunks)
    return visible


def choose_chunk(
    options: StreamingOptions, time: int, training: bool
) -> Optional[Tuple[int, int]]:
    """``(chunk_size, num_left_chunks)`` of a forward over ``time`` frames,
    or None for full context.

    In training with ``dynamic_chunk_training`` a batch gets full context
    with probability 1/2 (so the model also decodes at full context), else a
    chunk drawn uniformly from 1..``max_dynamic_chunk`` and, with
    ``dynamic_left_chunks``, left chunks from 0 to all. The draws use
    torch's global generator, so a seeded run repeats them. Otherwise the
    static ``chunk_size``, 0 meaning full context.
    """
    if training and options.dynamic_chunk_training:
        if torch.rand(()).item() < 0.5:
            return None
        chunk = int(torch.randint(1, options.max_dynamic_chunk + 1, ()))
        left = options.num_left_chunks
        if options.dynamic_left_chunks:
            # Past (time - 1) // chunk, every chunk already sees them all.
            left = int(torch.randint(0, (time - 1) // chunk + 1, ()))
        return chunk, left
    if options.chunk_size > 0:
        return options.chunk_size, options.num_left_chunks
    return None


def encode_positions(pos_enc: nn.Module, x: torch.Tensor, offset: int) -> torch.Tensor:
    """What ESPnet's positional encoding ``pos_enc`` does to the subsampled
    frames ``x`` (B, T, d), had the utterance begun ``offset`` frames earlier.

    Relative encodings scale ``x`` by sqrt(d) (positions go to the attention);
    absolute ones add the sinusoids of positions ``offset ... offset + T - 1``
    as ESPnet's forward adds those from 0, from the same table.
    """
    if type(pos_enc) is RelPositionalEncoding:
        return pos_enc.dropout(x * pos_enc.xscale)
    # Exact types: ESPnet's legacy relative encoding subclasses PositionalEncoding.
    if type(pos_enc) not in (PositionalEncoding, ScaledPositionalEncoding):
        raise ValueError(f"{type(pos_enc).__name__} positions do not stream")
    if pos_enc.reverse:
        raise ValueError("reversed positions (reverse=True) do not stream")
    pos_enc.extend_pe(x.new_empty(1, offset + x.size(1)))
    pe = pos_enc.pe[:, offset : offset + x.size(1)]
    if type(pos_enc) is ScaledPositionalEncoding:
        return pos_enc.dropout(x + pos_enc.alpha * pe)
    return pos_enc.dropout(x * pos_enc.xscale + pe)


def relative_positions(
    pos_enc: nn.Module, cached: int, chunk: int, like: torch.Tensor
) -> Optional[torch.Tensor]:
    """The relative positional embedding of a chunk after ``cached`` frames.

    (1, cached + 2 chunk - 1, d): ESPnet's ``RelPositionalEncoding``
    sinusoids, from its own table, for distances ``cached + chunk - 1`` (the
    chunk's last query to the first cached key) down to ``-(chunk - 1)``, in
    the order its forward gives them for a whole utterance. None for absolute
    positions. ``like`` gives dtype and device.
    """
    if type(pos_enc) is not RelPositionalEncoding:
        return None
    farthest = cached + chunk - 1
    pos_enc.extend_pe(like.new_empty(1, farthest + 1))
    center = pos_enc.pe.size(1) // 2  # distance 0
    return pos_enc.dropout(pos_enc.pe[:, center - farthest : center + chunk])


@dataclass(frozen=True)
class LayerCache:
    """What one virtual layer keeps between chunks, for each stream (row).

    Blocks repeated at several depths share weights, never caches: each
    virtual layer sees its own inputs.
    """

    key: torch.Tensor  # (B, H, L, d_k): projected keys of the last L frames
    value: torch.Tensor  # (B, H, L, d_k): their projected values
    conv: Optional[torch.Tensor]  # (B, kernel - 1, d): depthwise input; or None

    def trimmed(self, frames: int) -> "LayerCache":
        """Keep the keys and values of the last ``frames`` frames (-1: all)."""
        if frames < 0 or self.key.size(2) <= frames:
            return self
        start = self.key.size(2) - frames
        return replace(self, key=self.key[:, :, start:], value=self.value[:, :, start:])


@dataclass(frozen=True)
class StreamingState:
    """What ``forward_chunk`` carries from one call to the next.

    Build it with ``SharedConformerEncoder.init_streaming_state``; each
    ``forward_chunk`` returns the next one (the old one stays valid, so a
    caller can go back to it).
    """

    chunk_size: int  # output frames each step emits
    num_left_chunks: int  # chunks each chunk attends to on its left; -1: all
    frames: torch.Tensor  # (B, n, input_size): input the front end still needs
    offset: int  # output frames emitted so far
    layers: Tuple[LayerCache, ...]  # one per virtual layer
    finished: bool = False  # a call with final=True has flushed the stream

    def floats(self) -> int:
        """Floats held now, caches and buffered input (the figure
        :func:`cache_size` bounds)."""
        total = self.frames[0].numel()
        for layer in self.layers:
            total += layer.key[0].numel() + layer.value[0].numel()
            if layer.conv is not None:
                total += layer.conv[0].numel()
        return total


@dataclass(frozen=True)
class CacheSize:
    """Floats one stream's :class:`StreamingState` holds between calls, at most.

    ``attention_per_frame`` floats per cached frame of keys and values (2 d
    per virtual layer), for ``left_frames`` frames (``num_left_chunks``
    times ``chunk_size``; None: unlimited, the cache then grows with the
    stream); ``conv`` for the depthwise convolutions' left context;
    ``front_end`` for the input frames waiting for the next chunk.
    """

    chunk_size: int
    num_left_chunks: int
    attention_per_frame: int
    left_frames: Optional[int]
    conv: int
    front_end: int

    @property
    def total(self) -> Optional[int]:
        """All of it; None when the attention cache is unbounded."""
        if self.left_frames is None:
            return None
        return self.attention_per_frame * self.left_frames + self.conv + self.front_end


def cache_size(
    conf: Mapping[str, Any],
    chunk_size: Optional[int] = None,
    num_left_chunks: Optional[int] = None,
) -> CacheSize:
    """The most a stream's state holds between ``forward_chunk`` calls.

    ``conf`` holds the encoder's options (``build_options``: ``input_size``,
    ``output_size``, ``num_blocks``, ``use_cnn_module``,
    ``cnn_module_kernel``, ``input_layer``, ``chunk_size``,
    ``num_left_chunks``); ``chunk_size`` and ``num_left_chunks`` override
    its own. In floats per stream, with ``V`` virtual layers, ``d``
    ``output_size``, ``k`` ``cnn_module_kernel``, chunk ``C``, ``N`` left
    chunks, ``D`` ``input_size`` and a subsampling whose output frame reads
    ``R`` input frames in steps of ``S`` (conv2d: 7 and 4)::

        V * (2 d N C + d (k - 1)) + D (S (C - 1) + R - 1)

    keys and values of the N C frames a chunk looks back on, the
    convolution's left context, and the input held until the next chunk can
    be computed (one frame short of the ``S (C - 1) + R`` that chunk needs).
    The weights are shared across virtual layers; the caches are not, so
    they grow with ``V``, not with the unique blocks.
    """
    chunk = conf["chunk_size"] if chunk_size is None else chunk_size
    left = conf["num_left_chunks"] if num_left_chunks is None else num_left_chunks
    if chunk < 1:
        raise ValueError(f"chunk_size ({chunk}) must be at least 1 to stream")
    if left < -1:
        raise ValueError(f"num_left_chunks ({left}) must be -1 (unlimited) or >= 0")
    if conf["input_layer"] not in CONV2D_INPUT_LAYERS:
        raise ValueError(
            f"input_layer ({conf['input_layer']!r}) does not stream; it must be one "
            f"of {list(CONV2D_INPUT_LAYERS)}"
        )
    d, layers = conf["output_size"], conf["num_blocks"]
    conv = layers * d * (conf["cnn_module_kernel"] - 1) if conf["use_cnn_module"] else 0
    window, stride = time_window(conf["input_layer"])
    return CacheSize(
        chunk_size=chunk,
        num_left_chunks=left,
        attention_per_frame=layers * 2 * d,
        left_frames=None if left < 0 else left * chunk,
        conv=conv,
        front_end=conf["input_size"] * (stride * (chunk - 1) + window - 1),
    )
