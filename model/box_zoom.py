"""Episodes inside a user's box at a fixed scale (model config ``box_zoom``).

A model with ``box_zoom`` S segments only where the user points: the bounding box of the
start mask m(0) is cut out of the slice and resized to S x S, the episode runs there from
m(0) resized alike, and its masks are resized back into the box; outside it every pixel
is zero, as the agents (who can only remove) would leave it. A small object then fills
the agents' view at one scale, whatever its size in the slice, as MONAI's DeepGrow crops
and resizes round a user's guidance. Training cuts the same crops round the truth's box
(:func:`zoom_box` with a random margin), so the two resample alike. This module is the
box's geometry; ``model.inference.zoomed_batch`` runs the episode in it.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def bounding_box(mask) -> tuple[int, int, int, int] | None:
    """(y0, y1, x0, x1), end exclusive, of the nonzero pixels of a 2D mask; None if it has none."""
    m = torch.as_tensor(np.asarray(mask) if not torch.is_tensor(mask) else mask) != 0
    rows = torch.nonzero(m.any(dim=1))[:, 0]
    if rows.numel() == 0:
        return None
    cols = torch.nonzero(m.any(dim=0))[:, 0]
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


def resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(..., h, w) float -> (..., H, W): bilinear, anti-aliased where it shrinks."""
    lead = x.shape[:-2]
    flat = x.reshape(-1, 1, *x.shape[-2:]).float()
    out = F.interpolate(flat, size=size, mode="bilinear", align_corners=False, antialias=True)
    return out.reshape(*lead, *size)


def resize_mask(m: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """A 0/1 mask (..., h, w) resized to (..., H, W) uint8: bilinear, then 0.5 (a smooth
    boundary at the finer scale rather than nearest-neighbour blocks)."""
    return (resize(m, size) >= 0.5).to(torch.uint8)


def zoom_box(image: torch.Tensor, mask: torch.Tensor | None, box: tuple[int, int, int, int], side: int):
    """The box (y0, y1, x0, x1) of ``image`` (C, H, W) and of ``mask`` (H, W) resized to
    ``side`` x ``side``: (image (C, side, side) float32, mask (side, side) uint8 or None)."""
    y0, y1, x0, x1 = box
    crop = resize(image[:, y0:y1, x0:x1], (side, side))
    return crop, None if mask is None else resize_mask(mask[y0:y1, x0:x1], (side, side))


def grown_box(mask: np.ndarray, grow: tuple[int, int, int, int]) -> tuple[int, int, int, int] | None:
    """The bounding box of ``mask`` grown by (top, bottom, left, right) pixels, clipped to it."""
    box = bounding_box(mask)
    if box is None:
        return None
    h, w = mask.shape[-2:]
    y0, y1, x0, x1 = box
    return max(y0 - grow[0], 0), min(y1 + grow[1], h), max(x0 - grow[2], 0), min(x1 + grow[3], w)
