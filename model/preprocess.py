"""Normalisation of image slices for the network (training, inference and the plugin alike)."""

from __future__ import annotations

import numpy as np

from napari_pixeldrl.core.checks import source_suffix, check_finite_numeric
from napari_pixeldrl.core.errors import InputError

# Percentile clip before min-max scaling: robust to the few hot voxels of MRI/PET.
PERCENTILES = (0.5, 99.5)


def normalize_slice(image: np.ndarray, source: str | None = None, *, allow_constant: bool = False) -> np.ndarray:
    """Scale one slice (C, H, W) to float32 in [0, 1], each channel on its own.

    Each channel is clipped to its 0.5/99.5 percentiles and min-max scaled. A channel
    that is constant maps to 0. A slice whose every channel is constant carries no
    information: it is refused unless ``allow_constant`` (then it maps to zeros).
    """
    image = check_finite_numeric(image, source)
    if image.ndim != 3:
        raise InputError(f"expected one slice as (channels, H, W), got shape {image.shape}{source_suffix(source)}")
    x = image.astype(np.float32, copy=False)
    lo = np.percentile(x, PERCENTILES[0], axis=(1, 2), keepdims=True)
    hi = np.percentile(x, PERCENTILES[1], axis=(1, 2), keepdims=True)
    span = hi - lo
    flat = span[:, 0, 0] <= 0
    if flat.all():
        # The percentiles can coincide on a sparse image; fall back to the true range.
        lo = x.min(axis=(1, 2), keepdims=True)
        span = x.max(axis=(1, 2), keepdims=True) - lo
        flat = span[:, 0, 0] <= 0
        if flat.all() and not allow_constant:
            raise InputError(
                f"image is constant (every pixel = {float(x.flat[0]):g}); there is nothing to segment{source_suffix(source)}"
            )
    out = np.clip((x - lo) / np.where(span > 0, span, 1.0), 0.0, 1.0)
    out[flat] = 0.0
    return out.astype(np.float32, copy=False)
