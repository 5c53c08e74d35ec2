"""napari reader for NIfTI (.nii, .nii.gz), through :mod:`napari_pixeldrl.core.io`.

A volume opens as (Z, Y, X) with ``scale`` = the voxel spacing (sz, sy, sx) and
``translate`` = the affine's origin in the same order (world z, y, x of voxel 0). The
affine's rotation/flip part is not applied to the display (napari layers are axis
aligned); the full affine, the spacing and the source path are kept in the layer's
``metadata`` so that a mask saved with the writer lands on the source grid. A file whose
name says it is a mask (``mask``, ``label``, ``seg``, ``gt``) and that holds few integer
values opens as a Labels layer.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

NIFTI_SUFFIXES = (".nii", ".nii.gz")
MASK_NAME = re.compile(r"(mask|label|seg|gt|truth)", re.IGNORECASE)


def _is_nifti(path) -> bool:
    return isinstance(path, (str, Path)) and str(path).lower().endswith(NIFTI_SUFFIXES)


def napari_get_reader(path):
    """Return :func:`read_nifti` for a NIfTI path (or a list of them), else None."""
    if isinstance(path, (list, tuple)):
        if not path or not all(_is_nifti(p) for p in path):
            return None
        return read_nifti
    return read_nifti if _is_nifti(path) else None


def geometry_metadata(image) -> dict:
    """The metadata kept on a layer read from ``image`` (an io.ImageFile)."""
    return {
        "affine": None if image.affine is None else np.asarray(image.affine, dtype=float),
        "spacing": tuple(float(s) for s in image.spacing),
        "source_path": str(image.path),
        "format": image.format,
        "disk_shape": None if image.disk_shape is None else tuple(image.disk_shape),
    }


def origin_zyx(affine, ndim: int) -> tuple[float, ...]:
    """The affine's origin in the package's reversed axis order ((z, y, x) or (y, x))."""
    if affine is None:
        return (0.0,) * ndim
    origin = np.asarray(affine, dtype=float)[:3, 3]
    return tuple(float(v) for v in origin[:ndim][::-1])


def layer_data_from_image(image, name: str | None = None) -> list[tuple]:
    """LayerData tuples for an io.ImageFile (image or labels, geometry in metadata)."""
    from napari_pixeldrl.core.io import split_suffix

    name = name or split_suffix(image.path)[0]
    array = image.array
    meta = geometry_metadata(image)
    spacing = tuple(image.spacing)
    is_4d = array.ndim == len(spacing) + 1  # (C, Z, Y, X)
    spatial_ndim = len(spacing)
    kwargs = {
        "name": name,
        "scale": spacing,
        "translate": origin_zyx(image.affine, spatial_ndim),
        "metadata": meta,
    }
    integer = np.issubdtype(array.dtype, np.integer) or array.dtype == bool
    if not is_4d and integer and MASK_NAME.search(name) and len(np.unique(array[:: max(1, array.shape[0] // 8)])) <= 32:
        return [(np.asarray(array), kwargs, "labels")]
    if is_4d:
        kwargs["channel_axis"] = 0
        kwargs["name"] = [f"{name} [{c}]" for c in range(array.shape[0])]
    return [(array, kwargs, "image")]


def read_nifti(path) -> list[tuple]:
    """Read one or several NIfTI files into LayerData tuples."""
    from napari_pixeldrl.core.io import read_image

    paths = path if isinstance(path, (list, tuple)) else [path]
    layers: list[tuple] = []
    for p in paths:
        layers.extend(layer_data_from_image(read_image(p)))
    return layers
