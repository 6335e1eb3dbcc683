"""ESPnet's convolutional subsampling, narrowed, masked and run piecewise.

``subsampling_channels`` gives ESPnet's ``Conv2dSubsampling*`` fewer channels
than ``output_size`` (at d = 144 its 144-channel 3x3 convolution costs a third
of the encoder's forward FLOPs); :func:`subsampled_mask` computes the mask
after subsampling from each utterance's own length; :func:`time_window` and
:func:`subsample_features` let streaming run it on overlapping windows of the
input.
"""

from typing import Tuple

import torch
from torch import nn

__all__ = [
    "CONV2D_INPUT_LAYERS",
    "narrow_subsampling",
    "positional_encoding",
    "subsample_features",
    "subsampled_mask",
    "time_window",
]

# (kernel, stride) of the time-axis convolutions of each input_layer's
# subsampling (none pads the time axis).
_TIME_CONVS = {
    "conv2d": ((3, 2), (3, 2)),
    "conv2d1": ((3, 1), (3, 1)),
    "conv2d2": ((3, 2), (3, 1)),
    "conv2d6": ((3, 2), (5, 3)),
    "conv2d8": ((3, 2), (3, 2), (3, 2)),
}
# The input_layer that builds each of ESPnet's subsampling classes.
_INPUT_LAYER = {
    "Conv2dSubsampling": "conv2d",
    "Conv2dSubsampling1": "conv2d1",
    "Conv2dSubsampling2": "conv2d2",
    "Conv2dSubsampling6": "conv2d6",
    "Conv2dSubsampling8": "conv2d8",
}

#: ``input_layer`` values that build one of ESPnet's ``Conv2dSubsampling*``.
CONV2D_INPUT_LAYERS = tuple(_TIME_CONVS)


def time_window(input_layer: str) -> Tuple[int, int]:
    """``(R, S)``: output frame t of ``input_layer``'s subsampling reads input
    frames ``S t`` to ``S t + R - 1`` and nothing else.

    Each unpadded convolution (kernel k, stride s) widens the window by
    ``k - 1`` of its input frames, which lie ``S`` input frames apart for the
    stride ``S`` of the convolutions before it: conv2d reads 7 frames in
    steps of 4.
    """
    window, stride = 1, 1
    for kernel, conv_stride in _TIME_CONVS[input_layer]:
        window += (kernel - 1) * stride
        stride *= conv_stride
    return window, stride


def subsampled_mask(
    embed: nn.Module, masks: torch.Tensor, out_time: int
) -> torch.Tensor:
    """The (B, 1, T') mask after subsampling, from each utterance's own length.

    ``masks`` (B, 1, T) is True on real frames. ESPnet 202511 slices the
    padded batch's mask instead, which makes a short utterance's output length
    depend on its batch mates; 202611 computes it this way.
    """
    lengths = masks.squeeze(1).sum(-1)
    for kernel, stride in _TIME_CONVS[_INPUT_LAYER[type(embed).__name__]]:
        lengths = torch.div(lengths - kernel, stride, rounding_mode="floor") + 1
    lengths = lengths.clamp(min=0, max=out_time)
    return (torch.arange(out_time, device=masks.device)[None, :] < lengths[:, None])[
        :, None, :
    ]


def _out_linear(embed: nn.Module) -> nn.Linear:
    """The projection to ``output_size`` of ESPnet's ``Conv2dSubsampling*``.

    202611 has ``out`` a Linear (positions in ``pos_enc``); 202511 a
    Sequential(Linear, positional encoding).
    """
    return embed.out[0] if isinstance(embed.out, nn.Sequential) else embed.out


def positional_encoding(embed: nn.Module) -> nn.Module:
    """The positional encoding module that ends ``embed``'s forward."""
    if isinstance(embed.out, nn.Sequential):
        return embed.out[1]
    return embed.pos_enc


def subsample_features(embed: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``embed``'s forward without its positional encoding: (B, L, D) to (B, T, d).

    ``embed`` is one of ESPnet's ``Conv2dSubsampling*``; the positions are
    left to the caller, which knows where in the utterance ``x`` starts.
    """
    x = embed.conv(x.unsqueeze(1))  # (B, channels, T, bins)
    b, c, t, f = x.size()
    return _out_linear(embed)(x.transpose(1, 2).reshape(b, t, c * f))


def narrow_subsampling(embed: nn.Module, channels: int) -> None:
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
    linear = _out_linear(embed)
    bins = linear.in_features // linear.out_features
    narrowed = nn.Linear(channels * bins, linear.out_features)
    if isinstance(embed.out, nn.Sequential):
        embed.out[0] = narrowed
    else:
        embed.out = narrowed
