"""A small real sample that the plugin offers and the demo runs on.

Plain functions, no napari: :func:`load_lgg_sample` and :func:`load_heart_sample`
return a :class:`Sample` (image, mask, spacing, affine, metadata). The napari sample
menu (``napari_pixeldrl._sample_data``) wraps them as layer data tuples. Where the
files come from and their licences: ``README.md`` in this folder; how they were cut:
``make_samples.py``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


@dataclass
class Sample:
    name: str
    image: np.ndarray  # LGG: (Z, H, W, 3) uint8; heart: (Z, Y, X) int16
    mask: np.ndarray  # (Z, H, W) uint8 {0, 1}
    spacing: tuple[float, ...]  # (sz, sy, sx)
    affine: np.ndarray | None  # 4x4 NIfTI affine (heart) or None
    rgb: bool
    image_path: Path
    mask_path: Path
    meta: dict = field(default_factory=dict)


def _meta(name: str) -> dict:
    path = HERE / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else {}


def load_lgg_sample() -> Sample:
    """8 axial slices of one LGG patient (pre-contrast, FLAIR, post-contrast as RGB) and the tumour mask."""
    import tifffile

    image_path, mask_path = HERE / "lgg_image.tif", HERE / "lgg_mask.tif"
    image = np.asarray(tifffile.imread(image_path))
    mask = (np.asarray(tifffile.imread(mask_path)) > 0).astype(np.uint8)
    return Sample("lgg", image, mask, (1.0, 1.0, 1.0), None, True, image_path, mask_path, _meta("lgg"))


def load_heart_sample() -> Sample:
    """8 axial MRI slices of one MSD heart subject and the left-atrium mask, in (Z, Y, X) with the affine."""
    from napari_pixeldrl.core.io import read_image

    image_path, mask_path = HERE / "heart_image.nii.gz", HERE / "heart_mask.nii.gz"
    image = read_image(image_path)
    mask = read_image(mask_path)
    return Sample(
        "heart",
        image.array,
        (np.asarray(mask.array) > 0).astype(np.uint8),
        tuple(image.spacing),
        image.affine,
        False,
        image_path,
        mask_path,
        _meta("heart"),
    )


SAMPLES = {"lgg": load_lgg_sample, "heart": load_heart_sample}
