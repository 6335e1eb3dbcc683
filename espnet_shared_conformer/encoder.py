"""``SharedConformerEncoder``: ESPnet's Conformer with weights reused at four levels.

(i) ``num_unique_blocks`` blocks serve ``num_blocks`` virtual layers,
(ii) ``share_across_layers`` makes one module instance serve every block,
(iii) ``tie_macaron_ffn`` / ``tie_attention_projections`` tie sub-components
inside a block, (iv) ``lowrank_rank`` factorizes projections, and
``lowrank_shared_factor`` shares one factor of each across blocks. The
streaming options (:class:`~espnet_shared_conformer.streaming.StreamingOptions`)
add chunked attention, a causal convolution and a chunk-by-chunk forward.
With every new option at its default the encoder *is* ESPnet's Conformer:
same ``state_dict``, same outputs, and, for the same seed, the same initial
weights.
"""

import dataclasses
import inspect
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import torch
from espnet2.asr.ctc import CTC
from espnet2.asr.encoder.abs_encoder import AbsEncoder
from torch import nn
from typeguard import typechecked

from espnet_shared_conformer._compat import (
    ESPNET_HAS_SDPA,
    ConformerEncoder,
    LayerNorm,
    Swish,
    TooShortUttError,
    check_short_utt,
    make_pad_mask,
    trim_by_ctc_posterior,
)
from espnet_shared_conformer.conformer_options import check_conformer_options
from espnet_shared_conformer.modules import (
    Alias,
    ConformerBlock,
    ConvolutionModule,
    LayerNorms,
    LowRankLinear,
    RelPositionAttention,
    exporting,
    resolve,
)
from espnet_shared_conformer.plan import SharingOptions, SharingPlan
from espnet_shared_conformer.streaming import (
    LayerCache,
    StreamingOptions,
    StreamingState,
    choose_chunk,
    chunk_attention_mask,
    encode_positions,
    relative_positions,
)
from espnet_shared_conformer.subsampling import (
    narrow_subsampling,
    positional_encoding,
    subsample_features,
    subsampled_mask,
    time_window,
)

__all__ = ["SharedConformerEncoder", "default_options"]

# A layer's LayerNorms, in the order ESPnet's EncoderLayer registers them.
_NORMS = ("norm_ff", "norm_mha", "norm_ff_macaron", "norm_conv", "norm_final")
# Options ESPnet's template (U blocks) does not get: the encoder applies them
# itself, per virtual layer, or (subsampling_channels) they are not ESPnet's.
_NOT_FOR_TEMPLATE = (
    "interctc_layer_idx",
    "interctc_use_conditioning",
    "ctc_trim",
    "stochastic_depth_rate",
    "layer_drop_rate",
    "subsampling_channels",
)
# The sharing and streaming options' defaults, for the constructor's signature.
_DEFAULT = SharingOptions()
_STREAMING = StreamingOptions()


class SharedConformerEncoder(AbsEncoder):
    """Conformer encoder with repeated blocks, shared modules and low-rank factors.

    Takes every argument of ``espnet2.asr.encoder.conformer_encoder.
    ConformerEncoder`` (same names, same defaults), the sharing options as
    keywords (``num_unique_blocks`` to ``per_layer_norms``: the fields of
    :class:`~espnet_shared_conformer.plan.SharingOptions`, which documents
    and checks each one), the streaming options likewise (``causal_conv`` to
    ``dynamic_left_chunks``: :class:`~espnet_shared_conformer.streaming.
    StreamingOptions`), and:

    Args:
        subsampling_channels: Channels of the convolutional subsampling
            (``input_layer`` conv2d, conv2d1, conv2d2, conv2d6 or conv2d8);
            None: ``output_size``, as ESPnet has it. At d = 144 the 144-channel
            3x3 convolution costs a third of the encoder's forward FLOPs;
            64 channels cut a CPU training step by 10-15%.

    Every impossible or contradictory option raises ``ValueError`` here, when
    the model is built.

    Streaming: with ``chunk_size`` C, ``forward`` lets each output frame
    attend to its own chunk of C frames and ``num_left_chunks`` chunks before
    it; ``forward_chunk`` computes the same output piece by piece, in
    evaluation, for a causal model (``causal_conv``)::

        state = encoder.init_streaming_state(batch=1)  # empty caches
        out, state = encoder.forward_chunk(feats, state)  # any number of frames
        ...
        out, state = encoder.forward_chunk(last_feats, state, final=True)

    ``feats`` (B, n, input_size) are what ``forward`` takes (normalized
    features), any ``n >= 0``, the same for every stream of the batch. The
    state buffers input frames until a whole chunk of output frames can be
    computed, and emits only whole chunks; ``final=True`` flushes the last,
    partial one. Chunk c of the output equals rows cC ... cC + C - 1 of
    ``forward`` on the whole utterance (with ``chunk_size`` C). Per virtual
    layer the state caches the projected keys and values of the last
    ``num_left_chunks * C`` frames (all frames for -1: the memory then grows
    with the stream) and the depthwise convolution's last ``kernel - 1``
    input frames; weights are shared across virtual layers, caches are not
    (``streaming.cache_size`` gives the size). A model trained with
    ``dynamic_chunk_training`` streams at any chunk size:
    ``init_streaming_state`` takes ``chunk_size`` and ``num_left_chunks``.
    """

    @typechecked
    def __init__(
        self,
        input_size: int,
        output_size: int = 256,
        attention_heads: int = 4,
        linear_units: int = 2048,
        num_blocks: int = 6,
        dropout_rate: float = 0.1,
        positional_dropout_rate: float = 0.1,
        attention_dropout_rate: float = 0.0,
        input_layer: Optional[str] = "conv2d",
        normalize_before: bool = True,
        concat_after: bool = False,
        positionwise_layer_type: str = "linear",
        positionwise_conv_kernel_size: int = 3,
        macaron_style: bool = False,
        rel_pos_type: str = "legacy",
        pos_enc_layer_type: str = "rel_pos",
        selfattention_layer_type: str = "rel_selfattn",
        activation_type: str = "swish",
        use_cnn_module: bool = True,
        zero_triu: bool = False,
        cnn_module_kernel: int = 31,
        padding_idx: int = -1,
        interctc_layer_idx: List[int] = [],
        interctc_use_conditioning: bool = False,
        ctc_trim: bool = False,
        stochastic_depth_rate: Union[float, List[float]] = 0.0,
        layer_drop_rate: float = 0.0,
        max_pos_emb_len: int = 5000,
        qk_norm: bool = False,
        use_flash_attn: bool = True,
        use_sdpa: bool = False,
        subsampling_channels: Optional[int] = None,
        # The sharing options, spelt out (not **kwargs) so that ESPnet's
        # --print_config lists them with their defaults; a test keeps names,
        # order and defaults equal to SharingOptions' fields. Lists are
        # Sequences here: YAML gives lists, SharingOptions keeps tuples.
        *,
        num_unique_blocks: Optional[int] = _DEFAULT.num_unique_blocks,
        repeat_schedule: Union[str, Sequence[int]] = _DEFAULT.repeat_schedule,
        share_across_layers: Sequence[str] = _DEFAULT.share_across_layers,
        tie_macaron_ffn: bool = _DEFAULT.tie_macaron_ffn,
        tie_attention_projections: str = _DEFAULT.tie_attention_projections,
        lowrank_rank: Optional[int] = _DEFAULT.lowrank_rank,
        lowrank_modules: Optional[Sequence[str]] = _DEFAULT.lowrank_modules,
        lowrank_shared_factor: str = _DEFAULT.lowrank_shared_factor,
        per_layer_norms: bool = _DEFAULT.per_layer_norms,
        # The streaming options, spelt out for the same reason; a test keeps
        # them equal to StreamingOptions' fields.
        causal_conv: bool = _STREAMING.causal_conv,
        chunk_size: int = _STREAMING.chunk_size,
        dynamic_chunk_training: bool = _STREAMING.dynamic_chunk_training,
        max_dynamic_chunk: int = _STREAMING.max_dynamic_chunk,
        num_left_chunks: int = _STREAMING.num_left_chunks,
        dynamic_left_chunks: bool = _STREAMING.dynamic_left_chunks,
    ):
        arguments = locals()
        conformer = {name: arguments[name] for name in _conformer_argument_names()}
        super().__init__()
        self.sharing = SharingOptions(
            **{name: arguments[name] for name in SharingOptions.names()}
        )
        self.streaming = StreamingOptions(
            **{name: arguments[name] for name in StreamingOptions.names()}
        )
        # The arguments as given: what a copy, a report or a converter rebuilds from.
        self.build_options = {
            **conformer,
            **self.sharing.to_conf(),
            **self.streaming.to_conf(),
        }
        check_conformer_options(conformer)
        self.streaming.check_fits(conformer)
        self.plan = plan = SharingPlan.build(self.sharing, conformer)

        # ESPnet builds the embedding and U full, independent blocks exactly as
        # its own Conformer would (so with nothing shared the initial weights
        # equal ConformerEncoder's for the same seed); the blocks below adopt
        # the modules they own from it and alias the rest.
        template_options = {
            k: v for k, v in conformer.items() if k not in _NOT_FOR_TEMPLATE
        }
        template_options["num_blocks"] = plan.num_unique_blocks
        if not ESPNET_HAS_SDPA:
            del template_options["use_sdpa"]
        template = ConformerEncoder(**template_options)
        self._output_size = output_size
        self.embed = template.embed
        if subsampling_channels is not None:
            narrow_subsampling(self.embed, subsampling_channels)
        self._embed_takes_mask = check_short_utt(self.embed, 1)[0]
        self.normalize_before = normalize_before
        self._norm_names = _norm_names(macaron_style, use_cnn_module)
        self.encoders = nn.ModuleList()
        for block in range(plan.num_unique_blocks):
            self.encoders.append(self._adopt_block(template.encoders[block], block))
        if plan.per_layer_norms:
            self.layer_norms = nn.ModuleList(
                LayerNorms({name: LayerNorm(output_size) for name in self._norm_names})
                for _ in range(plan.num_layers)
            )
        if normalize_before:
            self.after_norm = template.after_norm

        if isinstance(stochastic_depth_rate, float):
            stochastic_depth_rate = [stochastic_depth_rate] * num_blocks
        self.stochastic_depth_rate = list(stochastic_depth_rate)
        self.layer_drop_rate = layer_drop_rate
        self.interctc_layer_idx = interctc_layer_idx
        self.interctc_use_conditioning = interctc_use_conditioning
        # ESPnetASRModel sets this to a Linear(vocab, d) when conditioning is on.
        self.conditioning_layer = None
        self.ctc_trim = ctc_trim

    def _adopt_block(self, layer: nn.Module, block: int) -> ConformerBlock:
        """Turn block ``block`` of ESPnet's template into a (possibly sharing) block."""
        plan = self.plan
        modules = {}
        for kind in plan.kinds:
            source_kind, source_block = plan.source(kind, block)
            if source_block == block and source_kind != kind:
                # Tied to a sibling (the macaron FFN): the block aliases it itself.
                modules[kind] = plan.attribute(source_kind)
            elif source_block != block:
                modules[kind] = Alias(
                    self.encoders[source_block], plan.attribute(source_kind)
                )
            else:
                modules[kind] = self._adopt_module(layer, kind, block)

        return ConformerBlock(
            size=self._output_size,
            self_attn=modules["mhsa"],
            feed_forward=modules["ffn"],
            feed_forward_macaron=modules.get("ffn_macaron"),
            conv_module=modules.get("conv"),
            norms=None
            if plan.per_layer_norms
            else {name: getattr(layer, name) for name in self._norm_names},
            dropout_rate=layer.dropout.p,
            normalize_before=layer.normalize_before,
            concat_linear=layer.concat_linear if layer.concat_after else None,
        )

    def _adopt_module(self, layer: nn.Module, kind: str, block: int) -> nn.Module:
        """Take an ESPnet layer's ``kind`` module, tied and factorized as planned."""
        plan = self.plan
        module = getattr(layer, plan.attribute(kind))
        if kind == "conv":
            module = ConvolutionModule(
                module.pointwise_conv1,
                module.depthwise_conv,
                module.norm,
                module.pointwise_conv2,
                module.activation,
                causal=self.streaming.causal_conv,
            )
        _fuse_swish(module)
        if kind == "mhsa":
            module = RelPositionAttention.adopt(module)
            if self.streaming.chunking and getattr(module, "use_flash_attn", False):
                # ESPnet's flash-attention path keeps only the last row of a
                # (B, T, T) mask as a key padding mask: it would drop the chunks.
                module.use_flash_attn = False
            for name in plan.tied_projections():
                setattr(module, name, Alias(module, "linear_q"))
        if plan.is_lowrank(kind):
            self._factorize(module, kind, block)
        return module

    def _factorize(self, module: nn.Module, kind: str, block: int) -> None:
        """Replace ``module``'s projections of ``kind`` by low-rank ones."""
        plan = self.plan
        rank = plan.lowrank_rank
        owner_block = plan.factor_owner(block)
        shared = {"in": "a", "out": "b"}.get(plan.lowrank_shared_factor)
        for projection in plan.projections(kind):
            layer = LowRankLinear.replacing(getattr(module, projection.name), rank)
            if shared is not None and owner_block != block:
                owner = _find(self.encoders[owner_block], kind, plan, projection.name)
                setattr(layer, shared, Alias(owner, shared))
            setattr(module, projection.name, layer)

    def output_size(self) -> int:
        return self._output_size

    def forward(
        self,
        xs_pad: torch.Tensor,
        ilens: torch.Tensor,
        prev_states: torch.Tensor = None,
        masks: torch.Tensor = None,
        ctc: CTC = None,
        return_all_hs: bool = False,
    ) -> Tuple[torch.Tensor, torch.Tensor, Optional[torch.Tensor]]:
        """Encode a padded batch.

        Args:
            xs_pad: Input features (B, L, input_size).
            ilens: Input lengths (B,).
            prev_states: Not used.
            masks: Optional padding mask (B, L), True on padded frames.
            ctc: CTC module, for intermediate CTC with conditioning or trimming.
            return_all_hs: Also return every virtual layer's output.

        Returns:
            Output (B, T, d), or ``(output, intermediate_outs)`` when
            intermediate CTC layers or ``return_all_hs`` are set; output
            lengths (B,); None.
        """
        if masks is None:
            masks = (~make_pad_mask(ilens)[:, None, :]).to(xs_pad.device)
        else:
            masks = ~masks[:, None, :]

        x, pos_emb, masks = self.subsample(xs_pad, masks)
        x, masks, intermediate_outs = self.encode_subsampled(
            x, pos_emb, masks, ctc=ctc, return_all_hs=return_all_hs
        )
        olens = masks.squeeze(1).sum(1)
        if intermediate_outs:
            return (x, intermediate_outs), olens, None
        return x, olens, None

    def subsample(
        self, xs_pad: torch.Tensor, masks: torch.Tensor
    ) -> Tuple[torch.Tensor, Optional[torch.Tensor], torch.Tensor]:
        """The front end: features (B, L, D) and mask (B, 1, L) to the first
        layer's input (B, T, d), its positional embedding (None for absolute
        positions) and mask (B, 1, T).
        """
        if self._embed_takes_mask:
            too_short, limit = check_short_utt(self.embed, xs_pad.size(1))
            if too_short:
                raise TooShortUttError(
                    f"has {xs_pad.size(1)} frames and is too short for subsampling "
                    f"(it needs more than {limit} frames), return empty results",
                    xs_pad.size(1),
                    limit,
                )
            xs, _ = self.embed(xs_pad, masks)
            masks = subsampled_mask(
                self.embed,
                masks,
                xs[0].size(1) if isinstance(xs, tuple) else xs.size(1),
            )
        else:
            xs = self.embed(xs_pad)
        x, pos_emb = xs if isinstance(xs, tuple) else (xs, None)
        return x, pos_emb, masks

    def encode_subsampled(
        self,
        x: torch.Tensor,
        pos_emb: Optional[torch.Tensor],
        masks: torch.Tensor,
        ctc: CTC = None,
        return_all_hs: bool = False,
    ) -> Tuple[torch.Tensor, torch.Tensor, List]:
        """The virtual layers and final norm on the front end's output.

        Returns the output (B, T, d), the mask (shorter where intermediate CTC
        trims frames) and the intermediate outputs ``forward`` returns.
        Split from ``forward`` so that the blocks can be timed without the
        front end (``benchmarks/bench_encoder.py``).
        """
        plan = self.plan
        drop = None
        if self.training and self.layer_drop_rate > 0:
            drop = torch.rand(plan.num_layers) < self.layer_drop_rate
        intermediate_outs = []
        layer_masks = _layer_masks(masks)
        attention_masks = None
        chunk = choose_chunk(self.streaming, x.size(1), self.training)
        if chunk is not None:
            visible = chunk_attention_mask(x.size(1), *chunk, device=x.device)
            # (B or 1, T, T): the chunks, and no padded frame as a key.
            attention_masks = (
                visible[None] if layer_masks is None else layer_masks & visible
            )
        for layer, block_index in enumerate(plan.schedule):
            if drop is not None and drop[layer]:
                continue
            block = self.encoders[block_index]
            norms = self.layer_norms[layer] if plan.per_layer_norms else block
            x = block(
                x,
                pos_emb,
                layer_masks,
                norms,
                self.stochastic_depth_rate[layer],
                attention_masks,
            )

            if return_all_hs and not self.interctc_layer_idx:
                intermediate_outs.append(x)
            elif layer + 1 in self.interctc_layer_idx:
                encoder_out = self.after_norm(x) if self.normalize_before else x
                intermediate_outs.append((layer + 1, encoder_out))
                if self.interctc_use_conditioning:
                    x = x + self.conditioning_layer(ctc.softmax(encoder_out))
                if self.ctc_trim and ctc is not None:
                    x, masks, pos_emb = trim_by_ctc_posterior(
                        x, ctc.softmax(encoder_out), masks, pos_emb
                    )
                    layer_masks = _layer_masks(masks)

        if self.normalize_before:
            x = self.after_norm(x)
        return x, masks, intermediate_outs

    # -- chunk by chunk -----------------------------------------------------

    def init_streaming_state(
        self,
        batch: int = 1,
        chunk_size: Optional[int] = None,
        num_left_chunks: Optional[int] = None,
    ) -> StreamingState:
        """The state of ``batch`` streams that have seen nothing yet.

        ``chunk_size`` and ``num_left_chunks`` default to the options' own;
        the chunk must be at least 1 (``forward_chunk`` emits whole chunks).
        Raises ``ValueError`` naming the option where this model cannot
        stream (a symmetric convolution, legacy relative positions, ...).
        """
        if chunk_size is None:
            chunk_size = self.streaming.chunk_size
        if num_left_chunks is None:
            num_left_chunks = self.streaming.num_left_chunks
        options = dataclasses.replace(
            self.streaming, chunk_size=chunk_size, num_left_chunks=num_left_chunks
        )
        if options.chunk_size < 1:
            raise ValueError(
                f"chunk_size ({options.chunk_size}) must be at least 1 to stream: "
                "forward_chunk emits whole chunks (pass chunk_size here or set it "
                "in the encoder's options)"
            )
        if batch < 1:
            raise ValueError(f"batch ({batch}) must be at least 1")
        options.check_fits(self.build_options)
        if self.interctc_use_conditioning:
            raise ValueError(
                "interctc_use_conditioning (True) needs the CTC module at every "
                "intermediate layer, which forward_chunk does not take"
            )
        reference = next(self.parameters())  # dtype and device of the caches
        d, heads = self._output_size, self.build_options["attention_heads"]
        empty = reference.new_zeros(batch, heads, 0, d // heads)
        layers = []
        for block_index in self.plan.schedule:
            conv = resolve(self.encoders[block_index].conv_module)
            layers.append(
                LayerCache(
                    key=empty,
                    value=empty,
                    # Zeros: the causal left padding at the stream's start.
                    conv=None
                    if conv is None
                    else reference.new_zeros(batch, conv.left_context, d),
                )
            )
        return StreamingState(
            chunk_size=options.chunk_size,
            num_left_chunks=options.num_left_chunks,
            frames=reference.new_zeros(batch, 0, self.build_options["input_size"]),
            offset=0,
            layers=tuple(layers),
        )

    def forward_chunk(
        self, feats: torch.Tensor, state: StreamingState, final: bool = False
    ) -> Tuple[torch.Tensor, StreamingState]:
        """Encode the next ``feats`` (B, n, input_size) of each stream.

        Returns the output frames now computable, (B, m, d) with ``m`` a
        multiple of the chunk size (any ``m`` when ``final``), and the next
        state. See the class docstring; call it in evaluation mode (and under
        ``torch.no_grad()`` unless the caches should keep the graph).
        """
        if self.training:
            raise RuntimeError("forward_chunk runs in evaluation mode: call eval()")
        if state.finished:
            raise ValueError(
                "this stream was flushed (final=True); start the next one with "
                "init_streaming_state()"
            )
        expected = (state.frames.size(0), state.frames.size(2))
        if feats.dim() != 3 or (feats.size(0), feats.size(2)) != expected:
            raise ValueError(
                f"feats {tuple(feats.shape)} must be (batch {expected[0]}, frames, "
                f"input_size {expected[1]})"
            )
        frames = torch.cat((state.frames, feats), dim=1)
        window, stride = time_window(self.build_options["input_layer"])
        chunk = state.chunk_size
        ready = (
            (frames.size(1) - window) // stride + 1 if frames.size(1) >= window else 0
        )
        count = ready if final else ready - ready % chunk
        outputs, layers = [], state.layers
        if count:
            # Output frame t reads input frames stride*t ... stride*t + window - 1.
            x = subsample_features(
                self.embed, frames[:, : stride * (count - 1) + window]
            )
            x = encode_positions(positional_encoding(self.embed), x, state.offset)
            frames = frames[:, stride * count :]
            left = state.num_left_chunks
            keep = -1 if left < 0 else left * chunk
            for start in range(0, count, chunk):
                piece = x[:, start : start + chunk]
                pos_emb = relative_positions(
                    positional_encoding(self.embed),
                    layers[0].key.size(2),
                    piece.size(1),
                    piece,
                )
                y, layers = self.encode_chunk(piece, pos_emb, layers, keep)
                outputs.append(y)
        if outputs:
            out = torch.cat(outputs, dim=1)
        else:
            out = feats.new_zeros(feats.size(0), 0, self._output_size)
        return out, dataclasses.replace(
            state,
            frames=frames,
            offset=state.offset + count,
            layers=layers,
            finished=final,
        )

    def encode_chunk(
        self,
        x: torch.Tensor,
        pos_emb: Optional[torch.Tensor],
        layers: Tuple[LayerCache, ...],
        keep: int,
        mask: Optional[torch.Tensor] = None,
    ) -> Tuple[torch.Tensor, Tuple[LayerCache, ...]]:
        """The virtual layers and final norm on one chunk (B, C, d), positions
        encoded, after the L frames ``layers`` cache; each layer keeps its
        last ``keep`` frames (-1: all).

        ``pos_emb``: the relative positional embedding
        (``streaming.relative_positions`` for L cached frames), or None for
        absolute positions. ``mask`` (B, 1, L + C): True on the cached and
        chunk frames the chunk's queries may see; None: all of them, as
        ``forward_chunk`` trims its caches to what is visible. The exported
        chunk step (:mod:`~espnet_shared_conformer.onnx_streaming`) has
        fixed-size caches, and masks instead.
        """
        plan = self.plan
        new_layers = []
        for layer, block_index in enumerate(plan.schedule):
            block = self.encoders[block_index]
            norms = self.layer_norms[layer] if plan.per_layer_norms else block
            x, cache = block.forward_chunk(x, pos_emb, norms, layers[layer], mask)
            new_layers.append(cache.trimmed(keep))
        if self.normalize_before:
            x = self.after_norm(x)
        return x, tuple(new_layers)


def _layer_masks(masks: torch.Tensor) -> Optional[torch.Tensor]:
    """The mask the layers get: None when nothing is padded, on the CPU.

    The attention and convolution modules then skip their masking, which
    would change nothing. The question is asked once per forward, on the CPU
    only: on a GPU reading the answer back would stall the stream, and the
    masking costs little there. Exports keep the mask, so that their graph
    masks whatever it is given.
    """
    if masks.device.type == "cpu" and not exporting() and bool(masks.all()):
        return None
    return masks


def _conformer_argument_names() -> Tuple[str, ...]:
    """The constructor's arguments before the sharing and streaming options
    (which are keyword-only): ESPnet's and ``subsampling_channels``."""
    parameters = inspect.signature(SharedConformerEncoder.__init__).parameters
    return tuple(
        name
        for name, p in parameters.items()
        if p.kind is p.POSITIONAL_OR_KEYWORD and name != "self"
    )


def default_options() -> Dict[str, Any]:
    """Every option of the encoder but ``input_size``, at its default.

    ESPnet's Conformer options with ESPnet's defaults, ``subsampling_channels``,
    the sharing and the streaming options: what an ``encoder_conf`` leaves out.
    """
    parameters = inspect.signature(SharedConformerEncoder.__init__).parameters
    conformer = {
        name: parameters[name].default
        for name in _conformer_argument_names()
        if name != "input_size"
    }
    return {**conformer, **SharingOptions().to_conf(), **StreamingOptions().to_conf()}


def _fuse_swish(module: nn.Module) -> None:
    """Give ``module`` ``nn.SiLU`` where ESPnet put its ``Swish``.

    The same function, x * sigmoid(x), in one fused pass (and one in the
    backward) instead of two: the FFNs apply it to (T, linear_units) tensors.
    """
    for name, child in module.named_children():
        if type(child) is Swish:
            setattr(module, name, nn.SiLU())


def _find(block: ConformerBlock, kind: str, plan: SharingPlan, name: str) -> nn.Module:
    """The projection ``name`` of the ``kind`` module that ``block`` runs."""
    return getattr(resolve(getattr(block, plan.attribute(kind))), name)


def _norm_names(macaron_style: bool, use_cnn_module: bool) -> Tuple[str, ...]:
    skip = set()
    if not macaron_style:
        skip.add("norm_ff_macaron")
    if not use_cnn_module:
        skip.update(("norm_conv", "norm_final"))
    return tuple(n for n in _NORMS if n not in skip)
