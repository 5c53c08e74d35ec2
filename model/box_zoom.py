"""Episodes inside a user's box at a fixed scale (model config ``box_zoom``).

A model with ``box_zoom`` S segments only where the user points: the bounding box of the
start mask m(0) is cut out of the slice and resized to S x S, the episode runs there from
m(0) resized alike, and its masks are resized back into the box; outside it every pixel
is zero, as the agents (who can only remove) would leave it. A small object then fills
the agents' view at one scale, whatever its size in the slice, as MONAI's DeepGrow crops
and resizes round a user's guidance. Training cuts the same crops round the truth's box
(:func:`zoom_box` with a random margin), so the two resample alike.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from napari_pixeldrl.core.errors import InputError


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


def zoomed_batch(model, config, x: torch.Tensor, size: tuple[int, int], t_max: int, *, early_stop: bool,
                 return_steps: bool, start: torch.Tensor | None):
    """:func:`~napari_pixeldrl.model.inference.run_batch` for a ``box_zoom`` model: each
    slice's episode runs on its start mask's box resized to S x S (``start`` (B, h, w) 0/1)."""
    from .inference import BatchResult, pad_to_multiple, run_batch  # run_batch hands box models to here
    from .postprocess import apply_postprocess

    side = int(config.box_zoom)
    if start is None:
        raise InputError(f"this model segments inside a box (box_zoom {side}): give it a start mask, a box or "
                         "a rough region round the object (--start-mask, the widget's start layer)")
    h, w = size
    b = x.shape[0]
    boxes = [bounding_box(start[i, :h, :w]) for i in range(b)]
    live = [i for i in range(b) if boxes[i] is not None]
    final = np.zeros((b, h, w), np.uint8)
    steps_taken = np.ones(b, np.int32)  # an empty start is its own fixed point
    step_masks = np.zeros((t_max, b, h, w), np.uint8) if return_steps else None
    step_actions = np.zeros((t_max, b, h, w), np.uint8) if return_steps else None
    value = np.zeros((b, h, w), np.float32) if return_steps and config.arch != "unet" else None
    if live:
        crops, starts = zip(*(zoom_box(x[i], start[i], boxes[i], side) for i in live))
        crops, starts = torch.stack(crops).to(x), torch.stack(starts).to(x)
        inner = config.replace(box_zoom=0, postprocess="none", window=0)
        res = run_batch(model, inner, crops, (side, side), t_max, early_stop=early_stop, return_steps=return_steps,
                        start=starts)
        crop_value = None
        if value is not None:  # the value map the GUI shows, of the final state, on the view the model has
            _, v = model.step(model.encode(crops, start=starts[:, None]), res.last_mask.to(crops), with_value=True)
            crop_value = v[:, 0].float()
        inside = start[:, :h, :w].cpu().numpy() != 0  # a rough region resized twice may not leave it
        for j, i in enumerate(live):
            y0, y1, x0, x1 = boxes[i]
            back = (y1 - y0, x1 - x0)
            keep = inside[i, y0:y1, x0:x1]
            final[i, y0:y1, x0:x1] = resize_mask(torch.from_numpy(res.mask[j]), back).numpy() & keep
            steps_taken[i] = res.steps_taken[j]
            if return_steps:
                step_masks[:, i, y0:y1, x0:x1] = resize_mask(torch.from_numpy(res.step_masks[:, j]), back).numpy() & keep
                step_actions[:, i, y0:y1, x0:x1] = resize_mask(torch.from_numpy(res.step_actions[:, j]), back).numpy()
            if crop_value is not None:
                value[i, y0:y1, x0:x1] = resize(crop_value[j].cpu(), back).numpy()
    last = pad_to_multiple(torch.from_numpy(final)[:, None].to(x))[0]
    return BatchResult(apply_postprocess(final, config.postprocess), steps_taken, step_masks, step_actions, last, value)
