"""Sliding-window inference: run the episode on overlapping windows of a slice and blend them.

A network trained on crops of a slice (the bundled models: 128 or 256 pixels) sees more
background round the object when it is given the whole slice, and both the lite network
and MONAI's BasicUNet lose DICE for it (LGG validation, 32 pixels of zero padding: lite
0.796 -> 0.700, BasicUNet 0.791 -> 0.742; the self-attention and the instance
normalisation see the whole image). ``window`` N in a model's config runs every slice
larger than N x N as windows of N x N, as nnU-Net and MONAI do for networks trained on
patches: MONAI's ``sliding_window_inference``, half-overlapping windows, Gaussian weights.

Each window runs its own argmax episode from its part of m(0). The blend is done per step
on the masks m(1)..m(T) (a U-Net: on its sigmoid), and a pixel is object where the weighted
vote exceeds one half. A weighted mean of sequences that only ever lose pixels only ever
loses pixels, so the blended m(t) is still an episode: m(t) <= m(t-1).
The value map is not windowed (it is drawn, never used for the mask).
"""

from __future__ import annotations

import torch

from napari_pixeldrl.core.errors import InputError

from .config import check_window
from .episode import run_episode

WINDOW_OVERLAP = 0.5
WINDOW_BATCH = 4  # windows per forward pass


def with_window(config, choice):
    """``config`` with its window replaced by ``choice`` (None or "auto": keep the model's)."""
    if choice is None or choice == "auto":
        return config
    if isinstance(choice, str):
        try:
            choice = int(choice)
        except ValueError:
            raise InputError(f"--window takes auto, 0 or a window side in pixels, got {choice!r}") from None
    choice = check_window(choice)
    if choice and config.box_zoom:
        raise InputError(f"--window {choice} does nothing for a box model: its episode runs on the start box resized to "
                         f"{config.box_zoom} x {config.box_zoom}, never on the whole slice; leave --window out")
    return config.replace(window=choice)


def needs_window(window: int, shape) -> bool:
    """True when a slice of spatial ``shape`` (H, W) is larger than the window."""
    return bool(window) and max(shape[-2:]) > window


@torch.no_grad()
def windowed_steps(model, config, x: torch.Tensor, t_max: int, *, start: torch.Tensor | None = None,
                   early_stop: bool = True) -> torch.Tensor:
    """The blended masks m(1)..m(T) of ``x`` (B, C, H, W), as (T, B, H, W) uint8.

    ``start`` (B, 1, H, W) 0/1 is m(0) (default all ones). A U-Net's mask is repeated T times."""
    from monai.inferers import sliding_window_inference

    b, c, h, w = x.shape
    m0 = torch.ones(b, 1, h, w, dtype=x.dtype, device=x.device) if start is None else start.reshape(b, 1, h, w).to(x.dtype)

    def predict(tiles: torch.Tensor) -> torch.Tensor:
        image, inside = tiles[:, :c], tiles[:, c:] > 0.5  # MONAI pads a short side with 0: outside m(0)
        if config.arch == "unet":
            return torch.sigmoid(model(image)) * inside
        masks = [step.mask for step in run_episode(model, image, t_max, sample=False, early_stop=early_stop,
                                                    with_value=False, start_mask=inside,
                                                    keep_threshold=config.keep_threshold)]
        masks += masks[-1:] * (t_max - len(masks))  # after a fixed point every step repeats the last
        return torch.stack(masks, dim=1)

    blended = sliding_window_inference(torch.cat([x, m0], dim=1), (config.window, config.window), WINDOW_BATCH, predict,
                                       overlap=WINDOW_OVERLAP, mode="gaussian", padding_mode="constant", cval=0.0)
    # A U-Net's blend is of probabilities, so its keep threshold applies to the blend; the
    # episodes' masks (thresholded inside each window) are blended by majority.
    steps = (blended > (config.keep_threshold if config.arch == "unet" else 0.5)).to(torch.uint8)
    if config.arch == "unet":
        steps = steps.expand(b, t_max, h, w)
    return steps.permute(1, 0, 2, 3).contiguous()
