"""File > Open Sample > PixelDRL-MG: real excerpts with their expert masks, as layer data tuples."""

from __future__ import annotations

import numpy as np

from napari_pixeldrl.sample_data import load_heart_sample, load_lgg_sample


def _meta(sample) -> dict:
    return {
        "affine": sample.affine,
        "spacing": tuple(sample.spacing),
        "source_path": str(sample.image_path),
        "format": "nifti" if sample.affine is not None else "tif",
        "sample": sample.meta,
    }


def _origin(sample) -> tuple[float, ...]:
    from napari_pixeldrl._reader import origin_zyx

    return origin_zyx(sample.affine, 3)


def lgg_sample() -> list[tuple]:
    s = load_lgg_sample()
    geo = {"scale": s.spacing, "translate": _origin(s), "metadata": _meta(s)}
    # The scans fill a tenth of uint8's range: shown against 0-255 they are almost black.
    bright = float(max(1.0, np.percentile(s.image, 99.9)))
    return [
        (s.image, {"name": "LGG brain (pre, FLAIR, post)", "rgb": True, "contrast_limits": (0.0, bright), **geo}, "image"),
        (s.mask, {"name": "LGG tumour (expert)", "opacity": 0.5, **geo}, "labels"),
    ]


def heart_sample() -> list[tuple]:
    s = load_heart_sample()
    geo = {"scale": s.spacing, "translate": _origin(s), "metadata": _meta(s)}
    return [
        (s.image, {"name": "Heart MRI", "colormap": "gray", **geo}, "image"),
        (s.mask, {"name": "Left atrium (expert)", "opacity": 0.5, **geo}, "labels"),
    ]
