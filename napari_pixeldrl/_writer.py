"""napari writer for Labels layers: NIfTI with the source image's geometry, TIF/PNG for 2D.

The geometry comes from the layer's ``metadata`` (``affine``, ``spacing``, ``disk_shape``,
as the reader and the Segment widget store them). Without an affine, the layer's
``scale`` and ``translate`` make a diagonal one, so the mask still lands where napari
shows it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from napari_pixeldrl.core.errors import InputError


def _like(data: np.ndarray, meta: dict):
    """An io.ImageFile describing the grid to write on, or None for TIF/PNG."""
    from napari_pixeldrl.core.io import ImageFile

    md = dict(meta.get("metadata") or {})
    ndim = data.ndim
    affine = md.get("affine")
    spacing = md.get("spacing")
    if affine is None:
        scale = tuple(meta.get("scale") or (1.0,) * ndim)[-ndim:]
        translate = tuple(meta.get("translate") or (0.0,) * ndim)[-ndim:]
        affine = np.eye(4)
        for i, (s, t) in enumerate(zip(scale[::-1], translate[::-1])):  # x, y, z
            affine[i, i] = s
            affine[i, 3] = t
        spacing = scale
    spacing = tuple(spacing or (1.0,) * ndim)
    disk_shape = md.get("disk_shape")
    if disk_shape is not None and int(np.prod(disk_shape)) != data.size:
        disk_shape = None  # metadata from another grid: do not let it reshape the mask
    return ImageFile(
        array=np.broadcast_to(np.uint8(0), data.shape),
        spacing=spacing,
        affine=np.asarray(affine, dtype=float),
        format="nifti",
        path=str(md.get("source_path", "")),
        disk_shape=None if disk_shape is None else tuple(disk_shape),
    )


def write_labels(path: str, data, meta: dict) -> list[str]:
    """Write one Labels layer to ``path`` (.nii, .nii.gz, .tif, .tiff, .png)."""
    from napari_pixeldrl.core.io import file_format, write_mask

    data = np.asarray(data)
    if data.max(initial=0) > 255 or data.min(initial=0) < 0:
        raise InputError(f"labels values must be in 0..255 to be saved as uint8 (layer has {data.min()}..{data.max()})")
    fmt = file_format(path)
    like = _like(data, meta) if fmt == "nifti" else None
    return [str(write_mask(Path(path), data, like=like))]
