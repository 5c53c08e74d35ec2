"""Simulated user prompts: the start masks m(0) an episode refines from.

A user who drags a box round the object gives the agents a rough mask to refine (they can
only remove pixels). To measure and to train it without a user, the box is the truth's
bounding box grown by N pixels on each side, as micro-sam simulates its box prompts.
"""

from __future__ import annotations

import numpy as np
import torch

from napari_pixeldrl.core.errors import InputError


def parse_start(text: str | None) -> int | None:
    """``box:N`` -> N (pixels the box is grown by); ``ones`` or None -> None (all ones)."""
    if text is None or text == "ones":
        return None
    kind, _, grow = text.partition(":")
    if kind != "box" or not grow.isdigit():
        raise InputError(f"start must be 'ones' or 'box:N' (the truth's bounding box grown by N pixels), got {text!r}")
    return int(grow)


def truth_box(truth: np.ndarray, grow: int) -> np.ndarray:
    """(H, W) uint8: the bounding box of ``truth`` grown by ``grow`` pixels, clipped to the
    slice; all zeros where the truth is empty."""
    truth = np.asarray(truth) != 0
    box = np.zeros(truth.shape, np.uint8)
    rows, cols = np.nonzero(truth.any(axis=1))[0], np.nonzero(truth.any(axis=0))[0]
    if rows.size:
        box[max(rows[0] - grow, 0): rows[-1] + grow + 1, max(cols[0] - grow, 0): cols[-1] + grow + 1] = 1
    return box


def box_starts(truth: torch.Tensor, fraction: float, max_grow: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Start masks (B, H, W) for a training batch: each image with an object starts, with
    probability ``fraction``, from its truth's box grown by 0..``max_grow`` pixels (drawn
    per image); the others, and images without an object, start from all ones."""
    b, h, w = truth.shape
    start = torch.ones_like(truth, dtype=torch.float32)
    pick = torch.rand(b, generator=generator) < fraction
    grow = torch.randint(0, max_grow + 1, (b,), generator=generator)
    ys = torch.arange(h, device=truth.device).view(1, h, 1)
    xs = torch.arange(w, device=truth.device).view(1, 1, w)
    rows, cols = truth.amax(dim=2) > 0, truth.amax(dim=1) > 0  # (B, H), (B, W)
    for i in range(b):
        if not bool(pick[i]) or not bool(rows[i].any()):
            continue
        r, c = torch.nonzero(rows[i])[:, 0], torch.nonzero(cols[i])[:, 0]
        g = int(grow[i])
        inside = (ys[0] >= r[0] - g) & (ys[0] <= r[-1] + g) & (xs[0] >= c[0] - g) & (xs[0] <= c[-1] + g)
        start[i] = inside.float()
    return start
