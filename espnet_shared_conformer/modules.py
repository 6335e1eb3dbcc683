"""Building blocks of the shared Conformer: aliases, low-rank projections, blocks.

Parameter names follow ESPnet's ``EncoderLayer`` (``self_attn``,
``feed_forward``, ``norm_mha``, ...) so that an encoder that shares nothing
has exactly the ``state_dict`` of ESPnet's ``ConformerEncoder``.
"""

import math
from typing import Dict, Optional, Union

import torch
from torch import nn
from torch.nn import functional as F

__all__ = [
    "Alias",
    "ConformerBlock",
    "ConvolutionModule",
    "LayerNorms",
    "LowRankLinear",
    "resolve",
]


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
        h = self.a(x)  # (..., r)
        b = resolve(self.b)
        if type(b) is nn.Linear:
            # One addmm instead of a matmul and a separate bias add.
            return F.linear(h, b.weight, self.bias)
        # A swapped-in module (e.g. dynamically quantized) applies itself.
        y = b(h)
        return y if self.bias is None else y + self.bias

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"rank={self.rank}, bias={self.bias is not None}"
        )


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
    """

    def __init__(
        self,
        pointwise_conv1: nn.Module,
        depthwise_conv: nn.Conv1d,
        norm: nn.Module,
        pointwise_conv2: nn.Module,
        activation: nn.Module,
    ) -> None:
        super().__init__()
        self.pointwise_conv1 = pointwise_conv1
        self.depthwise_conv = depthwise_conv
        self.norm = norm
        self.pointwise_conv2 = pointwise_conv2
        self.activation = activation

    def forward(
        self, x: torch.Tensor, mask_pad: Optional[torch.Tensor] = None
    ) -> torch.Tensor:
        """Map ``x`` (B, T, d) to (B, T, d); ``mask_pad`` (B, 1, T): True if real."""
        x = F.glu(_pointwise(self.pointwise_conv1, x), dim=-1)  # (B, T, d)
        if mask_pad is not None:
            x = x.masked_fill(~mask_pad.transpose(1, 2).bool(), 0.0)
        # When blocks repeat, this BatchNorm sees every depth that runs the
        # block, so its running statistics average over those depths.
        x = self.depthwise_conv(x.transpose(1, 2))  # (B, d, T)
        x = self.activation(self.norm(x)).transpose(1, 2)  # (B, T, d)
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
        mask: torch.Tensor,
        norms: nn.Module,
        stochastic_depth_rate: float = 0.0,
    ) -> torch.Tensor:
        """One Conformer layer.

        Args:
            x: (B, T, d).
            pos_emb: Relative positional embedding (1, 2T-1, d) or (1, T, d),
                or None with absolute positions.
            mask: (B, 1, T), True on real frames.
            norms: The module holding this layer's LayerNorms (the block
                itself, or a :class:`LayerNorms`).
            stochastic_depth_rate: Probability of skipping the layer in training.

        Returns:
            (B, T, d).
        """
        coeff = 1.0
        if self.training and stochastic_depth_rate > 0:
            if torch.rand(1).item() < stochastic_depth_rate:
                return x
            coeff = 1.0 / (1 - stochastic_depth_rate)

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
        if pos_emb is not None:
            x_att = self.self_attn(x, x, x, pos_emb, mask)
        else:
            x_att = self.self_attn(x, x, x, mask)
        if self.concat_linear is not None:
            x = residual + coeff * self.concat_linear(torch.cat((x, x_att), dim=-1))
        else:
            x = residual + coeff * self.dropout(x_att)
        if not pre:
            x = norms.norm_mha(x)

        if self.conv_module is not None:
            residual = x
            if pre:
                x = norms.norm_conv(x)
            x = residual + coeff * self.dropout(self.conv_module(x, mask))
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
            return x + scale * self.dropout(module(norm(x)))
        return norm(x + scale * self.dropout(module(x)))
