"""Cutting what :func:`napari_pixeldrl.core.io.read_image` returns into (C, H, W) slices with their masks."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from napari_pixeldrl.core.errors import InputError
from napari_pixeldrl.core.io import ImageFile, read_image
from napari_pixeldrl.core.checks import binarize_mask

from .items import RawSlice


def as_channels_first(image: ImageFile) -> tuple[np.ndarray, tuple[float, ...], bool]:
    """``(array, spacing, is_volume)``: a 2D image as (C, H, W), a volume as (C, Z, H, W)."""
    a = image.array
    if image.format == "nifti":
        if a.ndim == 2:
            return a[None], image.spacing, False
        if a.ndim == 3:
            return a[None], image.spacing, True
        return a, image.spacing, True  # (C, Z, Y, X)
    if a.ndim == 2:
        return a[None], image.spacing, False
    if a.shape[-1] in (3, 4):
        return np.moveaxis(a[..., :3], -1, 0), image.spacing, False  # RGB(A) -> 3 channels, alpha dropped
    return a[None], image.spacing, True  # a multi-page TIF (Z, H, W)


def read_pair(image_path: Path, mask_path: Path, label: int | None, index: int | None = None) -> list[RawSlice]:
    """Read an image file and its mask file and return their slices (axial for volumes).

    A shape mismatch between image and mask, or a multi-label mask without ``label``, raises
    :class:`InputError` naming the mask file and its image.
    """
    image = read_image(image_path)
    chw, spacing, is_volume = as_channels_first(image)
    spatial = tuple(chw.shape[1:])
    mask_file = read_image(mask_path)
    mask = mask_file.array
    source = f"{mask_path} (image {image_path})"
    if mask_file.format in ("tif", "png") and mask.ndim == 3 and mask.shape[-1] in (3, 4) and not is_volume:
        pass  # a grey mask saved as RGB: binarize_mask checks that the channels agree
    elif tuple(mask.shape) != spatial:
        raise InputError(f"mask shape {tuple(mask.shape)} does not match image shape {spatial} in {source}")
    value = None
    if label is not None and not (mask == label).any():
        # binarize_mask refuses a missing label; within one file of a dataset it only means
        # this file holds none of that object (load_dataset refuses a label found nowhere).
        mask = np.zeros(spatial, dtype=np.uint8)
    else:
        raw = mask
        mask = binarize_mask(mask, spatial, source=source, label=label)
        if label is None and mask.any():
            grey = np.asarray(raw)
            if grey.ndim > len(spatial):  # a grey mask saved as RGB: its channels agree
                grey = grey[..., 0]
            value = int(grey[mask.astype(bool)].flat[0])
    in_plane = (float(spacing[-2]), float(spacing[-1]))
    if not is_volume:
        return [RawSlice(0 if index is None else index, chw, mask, in_plane, str(image_path), value)]
    return [RawSlice(z, chw[:, z], mask[z], in_plane, str(image_path), value) for z in range(chw.shape[1])]
