"""Post-processing of the final mask, chosen on validation (never on test), as nnU-Net does.

``"largest-component"`` keeps, per slice, only the largest 8-connected object of the
final mask f(T). Both the left atrium and a slice's LGG FLAIR abnormality are mostly one
object, and the early models keep scattered bright structures far from it (heart PPV
0.15, HD95 87 px). Whether it helps is measured on the validation split per model
(``pixeldrl evaluate --split val --postprocess ...``; benchmarks/quality.py does it for
both models of a comparison). The bundled models carry their choice in the checkpoint's
model config (benchmarks/ship_models.py), so every consumer (CLI, plugin, demo) applies
the same one; ``--postprocess`` and the Segment widget can override it.
The step masks m(t) of an episode are never post-processed: they show what the policy did.
"""

from __future__ import annotations

import numpy as np
from skimage.measure import label

from napari_pixeldrl.core.errors import InputError

POSTPROCESS = ("none", "largest-component")
CHOICES = ("auto", *POSTPROCESS)  # command-line choices; "auto": the checkpoint's own


def check_postprocess(name: str | None) -> str:
    name = "none" if name in (None, "") else str(name)
    if name not in POSTPROCESS:
        raise InputError(f"unknown post-processing {name!r}; choose one of {', '.join(POSTPROCESS)}")
    return name


def with_postprocess(config, choice: str | None):
    """``config`` with its post-processing replaced by ``choice`` ("auto"/None: keep the model's)."""
    if choice in (None, "auto"):
        return config
    return config.replace(postprocess=check_postprocess(choice))


def largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest 8-connected object of a 2D 0/1 mask (ties: the first in raster order)."""
    labels = label(np.asarray(mask) != 0, connectivity=2)
    if labels.max() <= 1:
        return (labels > 0).astype(np.uint8)
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    return (labels == int(np.argmax(sizes))).astype(np.uint8)


def apply_postprocess(masks: np.ndarray, name: str | None) -> np.ndarray:
    """Post-process final masks (H, W) or (B, H, W), slice by slice."""
    name = check_postprocess(name)
    masks = np.asarray(masks)
    if name == "none":
        return masks
    slices = masks.reshape(-1, *masks.shape[-2:])
    return np.stack([largest_component(m) for m in slices]).reshape(masks.shape).astype(masks.dtype)
