"""Self-attention module (SAM), paper Eq. 1: M = Softmax(W * f + f), W a 1x1 convolution.

The paper leaves the softmax axis and the use of M open. Choice recorded here: the
softmax runs over the spatial positions of each channel (a spatial attention map per
channel) and the output is the residual f + f * (N * M), N = H * W. With N * M the map
averages 1, so a uniform attention gives 2f and the residual keeps gradients flowing
when the attention is still flat at initialisation.
"""

from __future__ import annotations

import torch
from torch import nn


class SelfAttention(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.w = nn.Conv2d(channels, channels, 1)

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        b, c, h, w = f.shape
        logits = (self.w(f) + f).reshape(b, c, h * w)
        m = torch.softmax(logits, dim=-1).reshape(b, c, h, w)
        return f + f * (m * (h * w))
