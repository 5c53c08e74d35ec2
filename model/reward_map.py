"""The reward-map convolution w of R(t) = r(t) + gamma * w * R(t+1) (PixelRL, paper Eq. 8),
computed by FFT.

w is one k x k filter (33 x 33) over a one-channel map. It is the network's
``reward_conv`` (an ``nn.Conv2d`` with zero padding k // 2, so the checkpoint keeps its
weight under that name), but training does not call that module: oneDNN's backward for
a one-channel 33x33 convolution is pathological on a CPU (about 2 s a call on 2x1x256x256,
up to 80 % of a PA3C step), while the same cross-correlation by FFT costs about 1 % of it.
tests/test_reward_map.py checks it against ``F.conv2d`` (the module's own forward) in
values and gradients.
"""

from __future__ import annotations

import torch


def kernel_spectrum(weight: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """rfft2 of the flipped filter (1, 1, k, k), zero-padded to ``size``: what
    :func:`reward_map_conv` multiplies by. Compute it once per episode, reuse it per step."""
    return torch.fft.rfft2(torch.flip(weight.float(), dims=(-2, -1)), s=size)


def fft_size(height: int, width: int, k: int) -> tuple[int, int]:
    """The FFT size that makes the circular convolution a linear one (no wrap-around)."""
    return height + k - 1, width + k - 1


def reward_map_conv(x: torch.Tensor, weight: torch.Tensor, spectrum: torch.Tensor | None = None) -> torch.Tensor:
    """``F.conv2d(x, weight, padding=k // 2)`` for x (B, 1, H, W) and an odd k x k ``weight``
    (1, 1, k, k), by FFT. ``spectrum``: :func:`kernel_spectrum` of ``weight`` for this size."""
    k = weight.shape[-1]
    h, w = x.shape[-2:]
    size = fft_size(h, w, k)
    if spectrum is None:
        spectrum = kernel_spectrum(weight, size)
    full = torch.fft.irfft2(torch.fft.rfft2(x.float(), s=size) * spectrum, s=size)
    p = k // 2  # the "same" part of the full convolution starts at (k - 1) / 2
    return full[..., p : p + h, p : p + w]
