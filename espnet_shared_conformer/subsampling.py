"""ESPnet's convolutional subsampling, narrowed and given per-utterance masks.

``subsampling_channels`` gives ESPnet's ``Conv2dSubsampling*`` fewer channels
than ``output_size`` (at d = 144 its 144-channel 3x3 convolution costs a third
of the encoder's forward FLOPs); :func:`subsampled_mask` computes the mask
after subsampling from each utterance's own length.
"""

import torch
from torch import nn

__all__ = ["CONV2D_INPUT_LAYERS", "narrow_subsampling", "subsampled_mask"]

#: ``input_layer`` values that build one of ESPnet's ``Conv2dSubsampling*``.
CONV2D_INPUT_LAYERS = ("conv2d", "conv2d1", "conv2d2", "conv2d6", "conv2d8")

# (kernel, stride) of the time-axis convolutions of ESPnet's subsampling layers.
_TIME_CONVS = {
    "Conv2dSubsampling": ((3, 2), (3, 2)),
    "Conv2dSubsampling1": ((3, 1), (3, 1)),
    "Conv2dSubsampling2": ((3, 2), (3, 1)),
    "Conv2dSubsampling6": ((3, 2), (5, 3)),
    "Conv2dSubsampling8": ((3, 2), (3, 2), (3, 2)),
}


def subsampled_mask(
    embed: nn.Module, masks: torch.Tensor, out_time: int
) -> torch.Tensor:
    """The (B, 1, T') mask after subsampling, from each utterance's own length.

    ``masks`` (B, 1, T) is True on real frames. ESPnet 202511 slices the
    padded batch's mask instead, which makes a short utterance's output length
    depend on its batch mates; 202611 computes it this way.
    """
    lengths = masks.squeeze(1).sum(-1)
    for kernel, stride in _TIME_CONVS[type(embed).__name__]:
        lengths = torch.div(lengths - kernel, stride, rounding_mode="floor") + 1
    lengths = lengths.clamp(min=0, max=out_time)
    return (torch.arange(out_time, device=masks.device)[None, :] < lengths[:, None])[
        :, None, :
    ]


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
