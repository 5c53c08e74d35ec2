"""VGG16-half feature extractor: conv1_1 .. conv4_3 of VGG16 with halved widths.

Same layout as the first 23 layers of torchvision's ``vgg16.features`` (three 2x2 max
pools, conv4_3 at 1/8 resolution), with 3x3 convolutions that may be dilated.
"""

from __future__ import annotations

import torch
from torch import nn

# Convolutions per VGG16 block, conv1_x .. conv4_x.
BLOCK_DEPTHS = (2, 2, 3, 3)


def conv3x3(in_ch: int, out_ch: int, dilation: int = 1) -> nn.Conv2d:
    """3x3 convolution that keeps the spatial size for any dilation."""
    return nn.Conv2d(in_ch, out_ch, 3, padding=dilation, dilation=dilation)


def norm_layer(kind: str, channels: int) -> nn.Module:
    """The normalisation after each convolution: none (VGG16 as published) or instance
    normalisation with learned scale and shift (what MONAI's BasicUNet uses; a network
    trained from scratch on a few patients learns several times faster with it)."""
    if kind == "instance":
        return nn.InstanceNorm2d(channels, affine=True)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"unknown normalisation {kind!r}")


class VGG16Half(nn.Module):
    """Returns the multi-scale features the heads use: conv1_2, conv2_2, conv3_3, conv4_3."""

    def __init__(self, in_channels: int, widths=(32, 64, 128, 256), dilations=(1, 1, 1, 1), norm: str = "none"):
        super().__init__()
        blocks = []
        ch = in_channels
        for depth, width, dil in zip(BLOCK_DEPTHS, widths, dilations):
            layers = []
            for _ in range(depth):
                layers += [conv3x3(ch, width, dil)]
                if norm != "none":  # no Identity modules, so the layer indices of checkpoints stay as they were
                    layers.append(norm_layer(norm, width))
                layers.append(nn.ReLU(inplace=True))
                ch = width
            blocks.append(nn.Sequential(*layers))
        self.blocks = nn.ModuleList(blocks)
        self.pool = nn.MaxPool2d(2)
        self.out_channels = tuple(widths)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        features = []
        for i, block in enumerate(self.blocks):
            if i > 0:
                x = self.pool(x)
            x = block(x)
            features.append(x)
        return features  # [conv1_2 (1), conv2_2 (1/2), conv3_3 (1/4), conv4_3 (1/8)]
