"""Simulated user prompts: the start masks m(0) an episode refines from.

A user who drags a box round the object gives the agents a rough mask to refine (they can
only remove pixels). To measure and to train it without a user, the box is the truth's
bounding box grown by N pixels on each side, as micro-sam simulates its box prompts.
"""

from __future__ import annotations

import numpy as np
import torch

from napari_pixeldrl.core.errors import InputError

BOX_GROW_MAX = 20  # pixels: the largest margin of a training episode's start box
BOX_ZOOM_VAL_GROW = 10  # pixels: a box_zoom model's validation box, the margin issue 16 scores


def parse_start(text: str | None) -> int | None:
    """``box:N`` -> N (pixels the box is grown by); ``ones`` or None -> None (all ones)."""
    if text is None or text == "ones":
        return None
    kind, _, grow = text.partition(":")
    if kind != "box" or not grow.isdigit():
        raise InputError(f"start must be 'ones' or 'box:N' (the truth's bounding box grown by N pixels), got {text!r}")
    return int(grow)


def object_slices(truths) -> list[int]:
    """Indices of the slices whose truth holds the object: the ones a user would box, so the
    ones scored from boxes (an empty box on an empty slice would score 1 for free)."""
    return [i for i, t in enumerate(truths) if np.any(t)]


def truth_box(truth: np.ndarray, grow: int) -> np.ndarray:
    """(H, W) uint8: the bounding box of ``truth`` grown by ``grow`` pixels, clipped to the
    slice; all zeros where the truth is empty."""
    truth = np.asarray(truth) != 0
    box = np.zeros(truth.shape, np.uint8)
    rows, cols = np.nonzero(truth.any(axis=1))[0], np.nonzero(truth.any(axis=0))[0]
    if rows.size:
        box[max(rows[0] - grow, 0): rows[-1] + grow + 1, max(cols[0] - grow, 0): cols[-1] + grow + 1] = 1
    return box


def box_start_masks(truths, grow: int) -> list[np.ndarray]:
    """Each slice's m(0) for episodes from a simulated user's box: :func:`truth_box` of each truth."""
    return [truth_box(t, grow) for t in truths]


def box_starts(truth: torch.Tensor, fraction: float, max_grow: int = BOX_GROW_MAX,
               generator: torch.Generator | None = None) -> torch.Tensor:
    """Start masks (B, H, W) for a training batch: each image with an object starts, with
    probability ``fraction``, from its :func:`truth_box` grown by 0..``max_grow`` pixels
    (drawn per image); the others, and images without an object, start from all ones."""
    start = torch.ones_like(truth, dtype=torch.float32)
    pick = torch.rand(truth.shape[0], generator=generator) < fraction
    grow = torch.randint(0, max_grow + 1, (truth.shape[0],), generator=generator)
    for i in torch.nonzero(pick)[:, 0].tolist():
        box = truth_box(truth[i].detach().cpu().numpy(), int(grow[i]))
        if box.any():
            start[i] = torch.from_numpy(box).to(start)
    return start
