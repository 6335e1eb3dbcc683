"""Building blocks of the shared Conformer: aliases, low-rank projections, blocks.

Parameter names follow ESPnet's ``EncoderLayer`` (``self_attn``,
``feed_forward``, ``norm_mha``, ...) so that an encoder that shares nothing
has exactly the ``state_dict`` of ESPnet's ``ConformerEncoder``.
"""

import math
from typing import Callable, Dict, Optional, Tuple, Union

import torch
from torch import nn
from torch.nn import functional as F

from espnet_shared_conformer._compat import RelPositionMultiHeadedAttention
from espnet_shared_conformer.streaming import LayerCache

__all__ = [
    "Alias",
    "ConformerBlock",
    "ConvolutionModule",
    "LayerNorms",
    "LowRankLinear",
    "RelPositionAttention",
    "attend_chunk",
    "exporting",
    "resolve",
]


def exporting() -> bool:
    """True while TorchScript traces or scripts, or ONNX exports, this code.

    The faster paths branch on data (is anything padded?) and use strided
    views that the exporters cannot follow; exports take ESPnet's own
    computation instead.
    """
    return (
        torch.jit.is_tracing()
        or torch.jit.is_scripting()
        or torch.onnx.is_in_onnx_export()
    )


class Alias(nn.Module):
    """Stands in for a module that another module owns.

    Sharing a module by registering the same instance twice would list its
    parameters twice in ``state_dict`` (and a checkpoint would grow with the
    number of users). An alias holds no parameters: it looks its target up
    by name on the owner at every call. Looking it up late, rather than
    keeping a reference to the target, keeps sharing intact when the owner's
    child is swapped, as ``torch.ao.quantization.quantize_dynamic`` does.
    """

    def __init__(self, owner: nn.Module, name: str) -> None:
        super().__init__()
        # A plain attribute, not a registered child: the owner belongs to the
        # encoder's module tree already.
        object.__setattr__(self, "_owner", owner)
        self._name = name

    def resolve(self) -> nn.Module:
        """The module that really runs (following aliases of aliases)."""
        return resolve(getattr(self._owner, self._name))

    def forward(self, *args, **kwargs):
        return self.resolve()(*args, **kwargs)

    def __getattr__(self, name: str):
        try:
            return super().__getattr__(name)
        except AttributeError:
            if name.startswith("_"):
                raise
            # Read-through, so code that inspects e.g. `self_attn.h` still works.
            return getattr(self.resolve(), name)

    def extra_repr(self) -> str:
        return f"shares {type(self._owner).__name__}.{self._name}"


def resolve(module: nn.Module) -> nn.Module:
    """``module`` itself, or the module an :class:`Alias` stands for."""
    return module.resolve() if isinstance(module, Alias) else module


class LowRankLinear(nn.Module):
    """A rank-``r`` stand-in for ``nn.Linear(in_features, out_features)``.

    ``y = B (A x) + bias`` with ``A`` (r x in) in ``self.a`` and ``B``
    (out x r) in ``self.b``; the bias stays on the output side, outside the
    factors, so that a factor can be shared across layers while every layer
    keeps its own bias. The factors are bias-free ``nn.Linear`` modules so
    that dynamic int8 quantization treats them like any other linear layer.

    Input ``(..., in_features)``, output ``(..., out_features)``.
    """

    def __init__(
        self, in_features: int, out_features: int, rank: int, bias: bool = True
    ) -> None:
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.rank = rank
        self.a = nn.Linear(in_features, rank, bias=False)
        self.b = nn.Linear(rank, out_features, bias=False)
        self.bias = nn.Parameter(torch.empty(out_features)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # A keeps nn.Linear's default init, U(-1/sqrt(in), 1/sqrt(in)), i.e.
        # variance 1/(3 in). An entry of B A sums r products, so B drawn with
        # variance 1/r gives B A the variance 1/(3 in) of the dense layer it
        # replaces: activations keep their scale at any rank. (B with
        # nn.Linear's default, variance 1/(3 r), would shrink them by sqrt(3).)
        nn.init.kaiming_uniform_(self.a.weight, a=math.sqrt(5))
        bound = math.sqrt(3.0 / self.rank)
        nn.init.uniform_(self.b.weight, -bound, bound)
        if self.bias is not None:
            bound = 1.0 / math.sqrt(self.in_features)
            nn.init.uniform_(self.bias, -bound, bound)

    @classmethod
    def replacing(
        cls, dense: Union[nn.Linear, nn.Conv1d], rank: int
    ) -> "LowRankLinear":
        """A fresh low-rank layer with ``dense``'s shape, keeping its bias init.

        ``dense`` is an ``nn.Linear`` or a pointwise (kernel 1) ``nn.Conv1d``.
        """
        out_features, in_features = dense.weight.shape[:2]
        layer = cls(in_features, out_features, rank, bias=dense.bias is not None)
        if dense.bias is not None:
            with torch.no_grad():
                layer.bias.copy_(dense.bias)
        return layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # The factors' weights go to F.linear directly, without two module
        # calls (18.6 against 20.8 us a call at 4 frames, d = 256, rank 64).
        # A swapped-in factor (e.g. dynamically quantized) applies itself.
        a, b = resolve(self.a), resolve(self.b)
        h = F.linear(x, a.weight) if type(a) is nn.Linear else a(x)  # (..., r)
        if type(b) is nn.Linear:
            # One addmm instead of a matmul and a separate bias add.
            return F.linear(h, b.weight, self.bias)
        y = b(h)
        return y if self.bias is None else y + self.bias

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"rank={self.rank}, bias={self.bias is not None}"
        )


class RelPositionAttention(RelPositionMultiHeadedAttention):
    """ESPnet's relative-position attention (``rel_pos_type: latest``), faster.

    The same parameters and the same result as the ESPnet class it extends,
    with less memory traffic around the score matrices, which at rank 64 cost
    about as much as the projections:

    - the relative shift is a strided view of the position scores (row ``i``
      starts ``T - 1 - i`` entries in), where ESPnet pads them with a zero
      column, copies and slices;
    - ``1 / sqrt(d_k)`` scales the two query tensors (T x d) rather than the
      score matrix (H x T x T); with d_k a power of 4 this is exact;

    ``use_sdpa``, ``zero_triu`` and exports keep ESPnet's computation. Blocks
    take ESPnet's module over with :meth:`adopt`, so the weights, their
    initialisation and the ``state_dict`` are untouched.
    """

    @classmethod
    def adopt(cls, module: nn.Module) -> nn.Module:
        """Make ESPnet's ``module`` run this class's forward, if it is one."""
        if type(module) is RelPositionMultiHeadedAttention:
            module.__class__ = cls
        return module

    def forward(
        self,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        pos_emb: torch.Tensor,
        mask: Optional[torch.Tensor],
    ) -> torch.Tensor:
        """ESPnet's signature: (B, T1, d) x3, (1 or B, 2 T1 - 1, d), (B, 1|T1, T2)."""
        if getattr(self, "use_sdpa", False) or self.zero_triu or exporting():
            return super().forward(query, key, value, pos_emb, mask)
        q, k, v = self.forward_qkv(query, key, value)  # (B, H, T, d_k)
        return self.attend(q, k, v, pos_emb, mask)

    def attend(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        pos_emb: torch.Tensor,
        mask: Optional[torch.Tensor],
    ) -> torch.Tensor:
        """Attention of projected queries (B, H, T1, d_k) on keys and values
        (B, H, T2, d_k), T2 >= T1, the queries being the last T1 key frames.

        ``pos_emb`` (1 or B, T1 + T2 - 1, d) embeds relative positions
        T2 - 1 ... -(T1 - 1), i.e. from the first key seen by the last query
        to the last key seen by the first query; ``mask`` (B, 1|T1, T2).
        Returns (B, T1, d).
        """
        q = q.transpose(1, 2)  # (B, T1, H, d_k)
        p = self.linear_pos(pos_emb).view(pos_emb.size(0), -1, self.h, self.d_k)
        scale = 1.0 / math.sqrt(self.d_k)
        q_u = ((q + self.pos_bias_u) * scale).transpose(1, 2)
        q_v = ((q + self.pos_bias_v) * scale).transpose(1, 2)
        # (B, H, T1, T1 + T2 - 1): query i against every relative position
        matrix_bd = torch.matmul(q_v, p.permute(0, 2, 3, 1)).contiguous()
        scores = torch.matmul(q_u, k.transpose(-2, -1)).add_(_rel_shift(matrix_bd))
        padded = None
        if mask is not None:
            padded = mask.unsqueeze(1).eq(0)  # (B, 1, 1|T1, T2)
            scores.masked_fill_(padded, torch.finfo(scores.dtype).min)
        attn = torch.softmax(scores, dim=-1)
        if padded is not None:
            attn = attn.masked_fill(padded, 0.0)
        self.attn = attn  # as ESPnet keeps it, for attention plots
        x = torch.matmul(self.dropout(attn), v)  # (B, H, T1, d_k)
        x = x.transpose(1, 2).reshape(x.size(0), -1, self.h * self.d_k)
        return self.linear_out(x)


def attend_chunk(
    attn: nn.Module,
    x: torch.Tensor,
    pos_emb: Optional[torch.Tensor],
    key_cache: torch.Tensor,
    value_cache: torch.Tensor,
    mask: Optional[torch.Tensor] = None,
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Self-attention of a chunk ``x`` (B, C, d) on cached frames and itself.

    ``attn`` is a :class:`RelPositionAttention` (then ``pos_emb``, (1, L +
    2C - 1, d), embeds relative positions L + C - 1 ... -(C - 1)) or ESPnet's
    ``MultiHeadedAttention`` (``pos_emb`` None: positions were added to the
    input); the caches (B, H, L, d_k) hold the projected keys and values of
    the L frames before the chunk. ``mask`` (B, 1, L + C), True on keys every
    query of the chunk may see; None: all of them (the caller then keeps only
    visible frames). A fixed-size cache, as an exported chunk step has, masks
    the slots not filled yet and the padding of a last, partial chunk.
    Returns the output (B, C, d) and the keys and values of all L + C frames.
    """
    attn = resolve(attn)
    q, k, v = attn.forward_qkv(x, x, x)  # (B, H, C, d_k)
    k = torch.cat((key_cache, k), dim=2)  # (B, H, L + C, d_k)
    v = torch.cat((value_cache, v), dim=2)
    if pos_emb is not None:
        return attn.attend(q, k, v, pos_emb, mask), k, v
    scores = torch.matmul(q, k.transpose(-2, -1)) / math.sqrt(attn.d_k)
    return attn.forward_attention(v, scores, mask), k, v


def _rel_shift(matrix_bd: torch.Tensor) -> torch.Tensor:
    """ESPnet's ``rel_shift`` as a view: (B, H, T1, W) to (B, H, T1, T2).

    Row i of ``matrix_bd`` scores query i against the W = T1 + T2 - 1
    relative positions T2 - 1 ... -(T1 - 1), the queries being the last T1
    of the T2 keys (T1 = T2 = T for a whole utterance). Entry (i, j) is
    ``matrix_bd[..., i, T1 - 1 - i + j]``, the score of relative position
    ``T2 - T1 + i - j``: moving one row down moves the window one column
    left, so the view steps ``W - 1`` elements per row. ``matrix_bd`` is
    contiguous. Exports take ESPnet's zero-pad-and-reshape instead, which
    the exporters follow: after a zero column on the left, the (T1, W + 1)
    entries read as (W + 1, T1), less their first row, then as (T1, W), put
    entry (i, T1 - 1 - i + j) at (i, j).
    """
    batch, heads, time, width = matrix_bd.shape
    if exporting():
        padded = F.pad(matrix_bd, (1, 0))  # (B, H, T1, W + 1)
        padded = padded.view(batch, heads, width + 1, time)[:, :, 1:]
        return padded.reshape(batch, heads, time, width)[..., : width - time + 1]
    stride = matrix_bd.stride()
    return matrix_bd.as_strided(
        (batch, heads, time, width - time + 1),
        (stride[0], stride[1], stride[2] - 1, 1),
        matrix_bd.storage_offset() + time - 1,
    )


def _depthwise(conv: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Apply the depthwise ``conv`` to ``x`` (B, T, d); returns (B, d, T).

    ``x`` seen as (B, d, 1, T) is a channels-last image, which oneDNN convolves
    where it lies; ``Conv1d`` on the transposed view reorders it to and from
    channels-first first, and costs ~10x more (0.08 against 0.85 ms for
    d = 256, T = 249, kernel 31, 2 threads).
    """
    if type(conv) is not nn.Conv1d or exporting():
        return conv(x.transpose(1, 2))
    y = F.conv2d(
        x.transpose(1, 2).unsqueeze(2),
        conv.weight.unsqueeze(2),
        conv.bias,
        stride=(1, conv.stride[0]),
        padding=(0, conv.padding[0]),
        dilation=(1, conv.dilation[0]),
        groups=conv.groups,
    )
    return y.squeeze(2)


def _normalize(norm: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Apply ``norm`` (ESPnet's ``BatchNorm1d``) to ``x`` (B, d, T).

    ``_depthwise`` returns the (B, d, T) view of a channels-last image, which
    BatchNorm1d's kernels walk with strides (46 us for d = 256, T = 249, 2
    threads). Seen as the (B, d, 1, T) image again, the same running
    statistics apply in one pass (15 us). Training (batch statistics and
    their update) keeps the module's own forward.
    """
    if (
        type(norm) is not nn.BatchNorm1d
        or norm.training
        or norm.running_mean is None
        or exporting()
    ):
        return norm(x)
    y = F.batch_norm(
        x.unsqueeze(2),
        norm.running_mean,
        norm.running_var,
        norm.weight,
        norm.bias,
        training=False,
        eps=norm.eps,
    )
    return y.squeeze(2)


def _pointwise(layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Apply a kernel-1 convolution, dense or low-rank, to ``x`` (B, T, C)."""
    if isinstance(layer, nn.Conv1d):
        # A kernel-1 Conv1d is a linear map over channels; applying it as one
        # keeps the time-major layout and saves two transposes.
        return F.linear(x, layer.weight.squeeze(-1), layer.bias)
    return layer(x)


class ConvolutionModule(nn.Module):
    """The Conformer convolution module, with ESPnet's parameter names.

    pointwise conv (d -> 2d) -> GLU -> depthwise conv -> BatchNorm ->
    activation -> pointwise conv (d -> d). The pointwise convolutions may be
    ``nn.Conv1d`` (kernel 1, as ESPnet has them) or :class:`LowRankLinear`.

    Padded frames are zeroed before the depthwise convolution, so the last
    real frames of an utterance see the same neighbourhood alone and inside a
    padded batch (ESPnet 202611 does the same; 202511 does not).

    ``causal``: the depthwise convolution reads frames t - k + 1 ... t only.
    Its weights stay ESPnet's (the same shape and initialization); its own
    padding is set to 0 and the input is left-padded by ``k - 1`` zeros
    instead, which :meth:`forward_chunk` replaces by the previous chunk's
    last ``k - 1`` frames.
    """

    def __init__(
        self,
        pointwise_conv1: nn.Module,
        depthwise_conv: nn.Conv1d,
        norm: nn.Module,
        pointwise_conv2: nn.Module,
        activation: nn.Module,
        causal: bool = False,
    ) -> None:
        super().__init__()
        self.pointwise_conv1 = pointwise_conv1
        self.depthwise_conv = depthwise_conv
        self.norm = norm
        self.pointwise_conv2 = pointwise_conv2
        self.activation = activation
        self.causal = causal
        self.left_context = depthwise_conv.kernel_size[0] - 1 if causal else 0
        if causal:
            depthwise_conv.padding = (0,)

    def forward(
        self, x: torch.Tensor, mask_pad: Optional[torch.Tensor] = None
    ) -> torch.Tensor:
        """Map ``x`` (B, T, d) to (B, T, d); ``mask_pad`` (B, 1, T): True if real."""
        x = F.glu(_pointwise(self.pointwise_conv1, x), dim=-1)  # (B, T, d)
        if mask_pad is not None:
            x = x.masked_fill(~mask_pad.transpose(1, 2).bool(), 0.0)
        if self.causal:
            x = F.pad(x, (0, 0, self.left_context, 0))  # (B, k - 1 + T, d)
        return self._convolve(x)

    def forward_chunk(
        self, x: torch.Tensor, cache: torch.Tensor
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """A causal module on a chunk ``x`` (B, C, d) after the frames whose
        depthwise input ``cache`` (B, k - 1, d) holds (zeros at the start).

        Returns the output (B, C, d) and the cache for the next chunk.
        """
        assert self.causal, "only a causal convolution runs chunk by chunk"
        x = F.glu(_pointwise(self.pointwise_conv1, x), dim=-1)  # (B, C, d)
        x = torch.cat((cache, x), dim=1)  # (B, k - 1 + C, d)
        return self._convolve(x), x[:, x.size(1) - self.left_context :]

    def _convolve(self, x: torch.Tensor) -> torch.Tensor:
        """Depthwise convolution to the end: (B, T + padding, d) to (B, T, d)."""
        # When blocks repeat, this BatchNorm sees every depth that runs the
        # block, so its running statistics average over those depths.
        x = _depthwise(self.depthwise_conv, x)  # (B, d, T)
        x = self.activation(_normalize(self.norm, x)).transpose(1, 2)  # (B, T, d)
        return _pointwise(self.pointwise_conv2, x)


class LayerNorms(nn.Module):
    """The LayerNorms of one Conformer layer, named as in ESPnet's EncoderLayer.

    A block owns these unless ``per_layer_norms`` gives every virtual layer
    its own set.
    """

    def __init__(self, norms: Dict[str, nn.Module]) -> None:
        super().__init__()
        for name, norm in norms.items():
            setattr(self, name, norm)


class ConformerBlock(nn.Module):
    """One Conformer block whose modules may be aliases of other blocks' modules.

    Runs exactly ESPnet's ``EncoderLayer`` computation (macaron FFN, MHSA,
    convolution, FFN, final norm; pre- or post-norm; stochastic depth), but
    takes the LayerNorms and the stochastic-depth rate per call, so that a
    block repeated at several depths can use per-depth norms and rates.

    Args:
        size: Model dimension ``d``.
        self_attn: ESPnet multi-head attention (or an alias of one).
        feed_forward: Second FFN.
        feed_forward_macaron: First, half-step FFN; or the name of this
            block's attribute it is tied to (``"feed_forward"``); or None.
        conv_module: :class:`ConvolutionModule` (or alias), or None.
        norms: This block's own LayerNorms (``norm_mha``, ...), or None when
            every virtual layer brings its own.
        dropout_rate: Dropout on each residual branch.
        normalize_before: Pre-norm (True) or post-norm.
        concat_linear: ``nn.Linear(2 d, d)`` for ESPnet's ``concat_after``.
    """

    def __init__(
        self,
        size: int,
        self_attn: nn.Module,
        feed_forward: nn.Module,
        feed_forward_macaron: Union[nn.Module, str, None],
        conv_module: Optional[nn.Module],
        norms: Optional[Dict[str, nn.Module]],
        dropout_rate: float,
        normalize_before: bool = True,
        concat_linear: Optional[nn.Linear] = None,
    ) -> None:
        super().__init__()
        self.size = size
        self.self_attn = self_attn
        self.feed_forward = feed_forward
        if isinstance(feed_forward_macaron, str):
            feed_forward_macaron = Alias(self, feed_forward_macaron)
        self.feed_forward_macaron = feed_forward_macaron
        self.conv_module = conv_module
        for name, norm in (norms or {}).items():
            setattr(self, name, norm)
        self.dropout = nn.Dropout(dropout_rate)
        self.normalize_before = normalize_before
        self.concat_linear = concat_linear
        self.ff_scale = 0.5 if feed_forward_macaron is not None else 1.0

    def forward(
        self,
        x: torch.Tensor,
        pos_emb: Optional[torch.Tensor],
        mask: Optional[torch.Tensor],
        norms: nn.Module,
        stochastic_depth_rate: float = 0.0,
        attention_mask: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        """One Conformer layer.

        Args:
            x: (B, T, d).
            pos_emb: Relative positional embedding (1, 2T-1, d) or (1, T, d),
                or None with absolute positions.
            mask: (B, 1, T), True on real frames; None: nothing padded.
            norms: The module holding this layer's LayerNorms (the block
                itself, or a :class:`LayerNorms`).
            stochastic_depth_rate: Probability of skipping the layer in training.
            attention_mask: (B or 1, T, T), True where frame i may attend to
                frame j (chunked attention, padding included); None: ``mask``.
                The convolution always takes ``mask``.

        Returns:
            (B, T, d).
        """
        coeff = 1.0
        if self.training and stochastic_depth_rate > 0:
            if torch.rand(1).item() < stochastic_depth_rate:
                return x
            coeff = 1.0 / (1 - stochastic_depth_rate)
        if attention_mask is None:
            attention_mask = mask

        def attend(h: torch.Tensor) -> torch.Tensor:
            if pos_emb is not None:
                return self.self_attn(h, h, h, pos_emb, attention_mask)
            return self.self_attn(h, h, h, attention_mask)

        def convolve(h: torch.Tensor) -> torch.Tensor:
            return self.conv_module(h, mask)

        return self._layer(x, norms, coeff, attend, convolve)

    def forward_chunk(
        self,
        x: torch.Tensor,
        pos_emb: Optional[torch.Tensor],
        norms: nn.Module,
        cache: LayerCache,
        mask: Optional[torch.Tensor] = None,
    ) -> Tuple[torch.Tensor, LayerCache]:
        """The layer on a chunk ``x`` (B, C, d) after the frames ``cache`` holds.

        The same computation as :meth:`forward` on the whole stream with a
        chunk mask, for the chunk's rows, in evaluation. ``pos_emb`` and
        ``mask`` (the keys each query may see) as :func:`attend_chunk` takes
        them. Returns the output (B, C, d) and the cache with the chunk added
        (keys and values of every frame given: the caller trims them to the
        left context).
        """
        new = {}

        def attend(h: torch.Tensor) -> torch.Tensor:
            y, new["key"], new["value"] = attend_chunk(
                self.self_attn, h, pos_emb, cache.key, cache.value, mask
            )
            return y

        def convolve(h: torch.Tensor) -> torch.Tensor:
            y, new["conv"] = resolve(self.conv_module).forward_chunk(h, cache.conv)
            return y

        x = self._layer(x, norms, 1.0, attend, convolve)
        return x, LayerCache(new["key"], new["value"], new.get("conv"))

    def _layer(
        self,
        x: torch.Tensor,
        norms: nn.Module,
        coeff: float,
        attend: Callable[[torch.Tensor], torch.Tensor],
        convolve: Callable[[torch.Tensor], torch.Tensor],
    ) -> torch.Tensor:
        """The layer's computation, self-attention and convolution given as
        functions of their normalized input, so that whole utterances and
        chunks with caches run the same residual structure."""
        pre = self.normalize_before
        if self.feed_forward_macaron is not None:
            x = self._residual(
                x,
                self.feed_forward_macaron,
                norms.norm_ff_macaron,
                coeff * self.ff_scale,
            )

        residual = x
        if pre:
            x = norms.norm_mha(x)
        x_att = attend(x)
        if self.concat_linear is not None:
            x_att = self.concat_linear(torch.cat((x, x_att), dim=-1))
        else:
            x_att = self.dropout(x_att)
        x = _add_scaled(residual, x_att, coeff)
        if not pre:
            x = norms.norm_mha(x)

        if self.conv_module is not None:
            residual = x
            if pre:
                x = norms.norm_conv(x)
            x = _add_scaled(residual, self.dropout(convolve(x)), coeff)
            if not pre:
                x = norms.norm_conv(x)

        x = self._residual(x, self.feed_forward, norms.norm_ff, coeff * self.ff_scale)
        if self.conv_module is not None:
            x = norms.norm_final(x)
        return x

    def _residual(
        self, x: torch.Tensor, module: nn.Module, norm: nn.Module, scale: float
    ) -> torch.Tensor:
        if self.normalize_before:
            return _add_scaled(x, self.dropout(module(norm(x))), scale)
        return norm(_add_scaled(x, self.dropout(module(x)), scale))


def _add_scaled(x: torch.Tensor, y: torch.Tensor, scale: float) -> torch.Tensor:
    """``x + scale * y`` in one pass (ESPnet's layer takes two, even for 1.0)."""
    return torch.add(x, y, alpha=scale)
