"""``SharedConformerEncoder``: ESPnet's Conformer with weights reused at four levels.

(i) ``num_unique_blocks`` blocks serve ``num_blocks`` virtual layers,
(ii) ``share_across_layers`` makes one module instance serve every block,
(iii) ``tie_macaron_ffn`` / ``tie_attention_projections`` tie sub-components
inside a block, (iv) ``lowrank_rank`` factorizes projections, and
``lowrank_shared_factor`` shares one factor of each across blocks. With every
new option at its default the encoder *is* ESPnet's Conformer: same
``state_dict``, same outputs, and, for the same seed, the same initial weights.
"""

import inspect
from typing import List, Optional, Tuple, Union

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
from espnet_shared_conformer.modules import (
    Alias,
    ConformerBlock,
    ConvolutionModule,
    LayerNorms,
    LowRankLinear,
    RelPositionAttention,
    _exporting,
    resolve,
)
from espnet_shared_conformer.plan import SharingPlan

__all__ = ["SharedConformerEncoder"]

_POS_ENC = ("abs_pos", "scaled_abs_pos", "conv", "rel_pos", "legacy_rel_pos")
_SELF_ATTN = ("selfattn", "rel_selfattn", "legacy_rel_selfattn")
# Input layers that are ESPnet's Conv2dSubsampling*: subsampling_channels applies.
_CONV2D_INPUT_LAYERS = ("conv2d", "conv2d1", "conv2d2", "conv2d6", "conv2d8")
_INPUT_LAYERS = ("linear", *_CONV2D_INPUT_LAYERS, "embed", None)
_POSITIONWISE = ("linear", "conv1d", "conv1d-linear")
# A layer's LayerNorms, in the order ESPnet's EncoderLayer registers them.
_NORMS = ("norm_ff", "norm_mha", "norm_ff_macaron", "norm_conv", "norm_final")


class SharedConformerEncoder(AbsEncoder):
    """Conformer encoder with repeated blocks, shared modules and low-rank factors.

    Takes every argument of ``espnet2.asr.encoder.conformer_encoder.
    ConformerEncoder`` (same names, same defaults) plus:

    Args:
        num_unique_blocks: Unique blocks ``U`` serving the ``num_blocks`` (``V``)
            virtual layers; None means ``V`` (no repetition).
        repeat_schedule: ``"cyclic"`` (layer i runs block ``i % U``),
            ``"consecutive"`` (block ``i * U // V``), or a list of ``V``
            block indices using every block at least once.
        share_across_layers: Module kinds (``ffn_macaron``, ``mhsa``, ``conv``,
            ``ffn``) of which one instance serves every block.
        tie_macaron_ffn: Each block's macaron FFN is its second FFN.
        tie_attention_projections: ``"qk"``: the key projection is the query
            projection; ``"qkv"``: the value projection too.
        lowrank_rank: Rank ``r`` of the factorized projections ``W = B A``.
        lowrank_modules: Module kinds whose projections are factorized (None:
            all the block has): FFN ``w_1``/``w_2``, attention q/k/v/out/pos,
            the two pointwise convolutions; never the depthwise convolution.
        lowrank_shared_factor: ``"in"``: every block uses one ``A`` per
            projection position; ``"out"``: one ``B``; biases stay per block.
        per_layer_norms: Every virtual layer owns its LayerNorms even where
            blocks repeat.
        subsampling_channels: Channels of the convolutional subsampling
            (``input_layer`` conv2d, conv2d1, conv2d2, conv2d6 or conv2d8);
            None: ``output_size``, as ESPnet has it. At d = 144 the 144-channel
            3x3 convolution costs a third of the encoder's forward FLOPs;
            64 channels cut a CPU training step by 10-15%.

    Every impossible or contradictory option raises ``ValueError`` here, when
    the model is built.
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
        num_unique_blocks: Optional[int] = None,
        repeat_schedule: Union[str, List[int]] = "cyclic",
        share_across_layers: List[str] = [],
        tie_macaron_ffn: bool = False,
        tie_attention_projections: str = "none",
        lowrank_rank: Optional[int] = None,
        lowrank_modules: Optional[List[str]] = None,
        lowrank_shared_factor: str = "none",
        per_layer_norms: bool = False,
        subsampling_channels: Optional[int] = None,
    ):
        arguments = locals()
        options = {name: arguments[name] for name in _argument_names()}
        super().__init__()
        # The arguments as given: what a copy, a report or a converter rebuilds from.
        self.build_options = options
        _check_conformer_options(
            input_size=input_size,
            output_size=output_size,
            attention_heads=attention_heads,
            num_blocks=num_blocks,
            input_layer=input_layer,
            positionwise_layer_type=positionwise_layer_type,
            rel_pos_type=rel_pos_type,
            pos_enc_layer_type=pos_enc_layer_type,
            selfattention_layer_type=selfattention_layer_type,
            use_cnn_module=use_cnn_module,
            cnn_module_kernel=cnn_module_kernel,
            interctc_layer_idx=interctc_layer_idx,
            layer_drop_rate=layer_drop_rate,
            use_sdpa=use_sdpa,
            subsampling_channels=subsampling_channels,
        )
        if isinstance(stochastic_depth_rate, float):
            stochastic_depth_rate = [stochastic_depth_rate] * num_blocks
        if len(stochastic_depth_rate) != num_blocks:
            raise ValueError(
                f"stochastic_depth_rate ({stochastic_depth_rate}) has "
                f"{len(stochastic_depth_rate)} entries; it needs one per virtual "
                f"layer, num_blocks ({num_blocks})"
            )
        if not all(0.0 <= p < 1.0 for p in stochastic_depth_rate):
            raise ValueError(
                f"stochastic_depth_rate ({stochastic_depth_rate}) must lie in [0, 1)"
            )

        self.plan = plan = SharingPlan.from_options(
            num_blocks=num_blocks,
            output_size=output_size,
            linear_units=linear_units,
            macaron_style=macaron_style,
            use_cnn_module=use_cnn_module,
            positionwise_layer_type=positionwise_layer_type,
            relative_attention=selfattention_layer_type != "selfattn",
            num_unique_blocks=num_unique_blocks,
            repeat_schedule=repeat_schedule,
            share_across_layers=share_across_layers,
            tie_macaron_ffn=tie_macaron_ffn,
            tie_attention_projections=tie_attention_projections,
            lowrank_rank=lowrank_rank,
            lowrank_modules=lowrank_modules,
            lowrank_shared_factor=lowrank_shared_factor,
            per_layer_norms=per_layer_norms,
        )

        # ESPnet builds the embedding and U full, independent blocks exactly as
        # its own Conformer would (so with nothing shared the initial weights
        # equal ConformerEncoder's for the same seed); the blocks below adopt
        # the modules they own from it and alias the rest.
        sdpa = {"use_sdpa": use_sdpa} if ESPNET_HAS_SDPA else {}
        template = ConformerEncoder(
            input_size=input_size,
            output_size=output_size,
            attention_heads=attention_heads,
            linear_units=linear_units,
            num_blocks=plan.num_unique_blocks,
            dropout_rate=dropout_rate,
            positional_dropout_rate=positional_dropout_rate,
            attention_dropout_rate=attention_dropout_rate,
            input_layer=input_layer,
            normalize_before=normalize_before,
            concat_after=concat_after,
            positionwise_layer_type=positionwise_layer_type,
            positionwise_conv_kernel_size=positionwise_conv_kernel_size,
            macaron_style=macaron_style,
            rel_pos_type=rel_pos_type,
            pos_enc_layer_type=pos_enc_layer_type,
            selfattention_layer_type=selfattention_layer_type,
            activation_type=activation_type,
            use_cnn_module=use_cnn_module,
            zero_triu=zero_triu,
            cnn_module_kernel=cnn_module_kernel,
            padding_idx=padding_idx,
            max_pos_emb_len=max_pos_emb_len,
            qk_norm=qk_norm,
            use_flash_attn=use_flash_attn,
            **sdpa,
        )
        self._output_size = output_size
        self.embed = template.embed
        if subsampling_channels is not None:
            _narrow_subsampling(self.embed, subsampling_channels)
        self._embed_takes_mask = check_short_utt(self.embed, 1)[0]
        self.normalize_before = normalize_before
        self._norm_names = _norm_names(macaron_style, use_cnn_module)
        self.encoders = nn.ModuleList()
        for block in range(plan.num_unique_blocks):
            self.encoders.append(self._adopt_block(template.encoders[block], block))
        if per_layer_norms:
            self.layer_norms = nn.ModuleList(
                LayerNorms({name: LayerNorm(output_size) for name in self._norm_names})
                for _ in range(plan.num_layers)
            )
        if normalize_before:
            self.after_norm = template.after_norm

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
            )
        _fuse_swish(module)
        if kind == "mhsa":
            module = RelPositionAttention.adopt(module)
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
            masks = _subsampled_mask(
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
        for layer, block_index in enumerate(plan.schedule):
            if drop is not None and drop[layer]:
                continue
            block = self.encoders[block_index]
            norms = self.layer_norms[layer] if plan.per_layer_norms else block
            x = block(x, pos_emb, layer_masks, norms, self.stochastic_depth_rate[layer])

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


def _layer_masks(masks: torch.Tensor) -> Optional[torch.Tensor]:
    """The mask the layers get: None when nothing is padded, on the CPU.

    The attention and convolution modules then skip their masking, which
    would change nothing. The question is asked once per forward, on the CPU
    only: on a GPU reading the answer back would stall the stream, and the
    masking costs little there. Exports keep the mask, so that their graph
    masks whatever it is given.
    """
    if masks.device.type == "cpu" and not _exporting() and bool(masks.all()):
        return None
    return masks


# (kernel, stride) of the time-axis convolutions of ESPnet's subsampling layers.
_SUBSAMPLING_CONVS = {
    "Conv2dSubsampling": ((3, 2), (3, 2)),
    "Conv2dSubsampling1": ((3, 1), (3, 1)),
    "Conv2dSubsampling2": ((3, 2), (3, 1)),
    "Conv2dSubsampling6": ((3, 2), (5, 3)),
    "Conv2dSubsampling8": ((3, 2), (3, 2), (3, 2)),
}


def _subsampled_mask(
    embed: nn.Module, masks: torch.Tensor, out_time: int
) -> torch.Tensor:
    """The (B, 1, T') mask after subsampling, from each utterance's own length.

    ESPnet 202511 slices the padded batch's mask instead, which makes a short
    utterance's output length depend on its batch mates; 202611 computes it
    this way.
    """
    lengths = masks.squeeze(1).sum(-1)
    for kernel, stride in _SUBSAMPLING_CONVS[type(embed).__name__]:
        lengths = torch.div(lengths - kernel, stride, rounding_mode="floor") + 1
    lengths = lengths.clamp(min=0, max=out_time)
    return (torch.arange(out_time, device=masks.device)[None, :] < lengths[:, None])[
        :, None, :
    ]


def _argument_names() -> Tuple[str, ...]:
    return tuple(inspect.signature(SharedConformerEncoder.__init__).parameters)[1:]


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


def _narrow_subsampling(embed: nn.Module, channels: int) -> None:
    """Give ESPnet's ``Conv2dSubsampling*`` ``embed`` ``channels`` channels.

    Every ``Conv2d`` keeps its kernel and stride; the first still reads the
    one input plane. The projection to ``output_size`` then reads ``channels``
    x (frequency bins left), the count ESPnet's forward flattens. Fresh layers
    take PyTorch's default initialization, as ESPnet's own do.
    """
    for index, layer in enumerate(embed.conv):
        if isinstance(layer, nn.Conv2d):
            embed.conv[index] = nn.Conv2d(
                layer.in_channels if layer.in_channels == 1 else channels,
                channels,
                layer.kernel_size,
                layer.stride,
            )
    # 202611 has `out` a Linear (positions in `pos_enc`); 202511 also a
    # Sequential(Linear, positional encoding).
    sequential = isinstance(embed.out, nn.Sequential)
    linear = embed.out[0] if sequential else embed.out
    bins = linear.in_features // linear.out_features
    narrowed = nn.Linear(channels * bins, linear.out_features)
    if sequential:
        embed.out[0] = narrowed
    else:
        embed.out = narrowed


def _norm_names(macaron_style: bool, use_cnn_module: bool) -> Tuple[str, ...]:
    skip = set()
    if not macaron_style:
        skip.add("norm_ff_macaron")
    if not use_cnn_module:
        skip.update(("norm_conv", "norm_final"))
    return tuple(n for n in _NORMS if n not in skip)


def _check_conformer_options(
    *,
    input_size: int,
    output_size: int,
    attention_heads: int,
    num_blocks: int,
    input_layer: Optional[str],
    positionwise_layer_type: str,
    rel_pos_type: str,
    pos_enc_layer_type: str,
    selfattention_layer_type: str,
    use_cnn_module: bool,
    cnn_module_kernel: int,
    interctc_layer_idx: List[int],
    layer_drop_rate: float,
    use_sdpa: bool,
    subsampling_channels: Optional[int],
) -> None:
    """Raise ``ValueError`` for Conformer options ESPnet would assert on or reject."""
    if output_size < 1:
        raise ValueError(f"output_size ({output_size}) must be positive")
    if attention_heads < 1 or output_size % attention_heads:
        raise ValueError(
            f"output_size ({output_size}) is not a multiple of attention_heads "
            f"({attention_heads})"
        )
    if input_layer not in _INPUT_LAYERS:
        raise ValueError(
            f"input_layer ({input_layer!r}) must be one of {list(_INPUT_LAYERS)}"
        )
    if input_layer is None and input_size != output_size:
        raise ValueError(
            f"input_layer (None) feeds the input straight to the blocks, so "
            f"input_size ({input_size}) must equal output_size ({output_size})"
        )
    if subsampling_channels is not None:
        if input_layer not in _CONV2D_INPUT_LAYERS:
            raise ValueError(
                f"subsampling_channels ({subsampling_channels}) sets the channels of "
                f"a convolutional subsampling; input_layer ({input_layer!r}) has "
                f"none (use one of {list(_CONV2D_INPUT_LAYERS)})"
            )
        if subsampling_channels < 1:
            raise ValueError(
                f"subsampling_channels ({subsampling_channels}) must be positive"
            )
    if positionwise_layer_type not in _POSITIONWISE:
        raise ValueError(
            f"positionwise_layer_type ({positionwise_layer_type!r}) must be one of "
            f"{list(_POSITIONWISE)}"
        )
    if rel_pos_type not in ("legacy", "latest"):
        raise ValueError(
            f"rel_pos_type ({rel_pos_type!r}) must be 'legacy' or 'latest'"
        )
    if pos_enc_layer_type not in _POS_ENC:
        raise ValueError(
            f"pos_enc_layer_type ({pos_enc_layer_type!r}) must be one of "
            f"{list(_POS_ENC)}"
        )
    if selfattention_layer_type not in _SELF_ATTN:
        raise ValueError(
            f"selfattention_layer_type ({selfattention_layer_type!r}) must be one of "
            f"{list(_SELF_ATTN)}"
        )
    if (
        rel_pos_type == "latest"
        and "legacy" in pos_enc_layer_type + selfattention_layer_type
    ):
        raise ValueError(
            f"rel_pos_type ('latest') contradicts pos_enc_layer_type "
            f"({pos_enc_layer_type!r}) / selfattention_layer_type "
            f"({selfattention_layer_type!r}): drop the 'legacy_' types"
        )
    relative_pos = pos_enc_layer_type.endswith("rel_pos")
    relative_attn = selfattention_layer_type.endswith("rel_selfattn")
    if relative_pos != relative_attn:
        raise ValueError(
            f"pos_enc_layer_type ({pos_enc_layer_type!r}) and "
            f"selfattention_layer_type ({selfattention_layer_type!r}) disagree: "
            "relative positions need relative self-attention and vice versa"
        )
    if use_cnn_module and (cnn_module_kernel < 1 or cnn_module_kernel % 2 == 0):
        raise ValueError(
            f"cnn_module_kernel ({cnn_module_kernel}) must be odd ('same' padding)"
        )
    bad = [i for i in interctc_layer_idx if not 0 < i < num_blocks]
    if bad:
        raise ValueError(
            f"interctc_layer_idx ({interctc_layer_idx}) has layers {bad} outside "
            f"1..{num_blocks - 1}: it counts virtual layers, num_blocks ({num_blocks})"
        )
    if not 0.0 <= layer_drop_rate < 1.0:
        raise ValueError(f"layer_drop_rate ({layer_drop_rate}) must lie in [0, 1)")
    if use_sdpa and not ESPNET_HAS_SDPA:
        raise ValueError(
            "use_sdpa (True) needs ESPnet 202611 or newer; this ESPnet's attention "
            "has no SDPA path"
        )
