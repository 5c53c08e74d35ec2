"""The bundled samples: small, real, aligned with their masks (plain functions, no napari)."""

import numpy as np
import pytest

from napari_pixeldrl.sample_data import HERE, load_heart_sample, load_lgg_sample


def test_samples_are_small():
    total = sum(p.stat().st_size for p in HERE.iterdir() if p.suffix in (".tif", ".gz", ".json"))
    assert total < 3 * 1024 * 1024
    assert "CC BY 3.0" in (HERE / "README.md").read_text()
    assert "CC BY-SA 4.0" in (HERE / "README.md").read_text()


def test_lgg_sample():
    s = load_lgg_sample()
    assert s.image.shape == (8, 256, 256, 3) and s.image.dtype == np.uint8
    assert s.mask.shape == (8, 256, 256) and set(np.unique(s.mask)) == {0, 1}
    assert all(s.mask[z].any() for z in range(8))  # every slice has tumour
    assert s.rgb and s.affine is None


def test_heart_sample_keeps_geometry():
    s = load_heart_sample()
    assert s.image.shape == s.mask.shape == (8, 256, 256)
    assert s.mask.any() and set(np.unique(s.mask)) <= {0, 1}
    assert s.spacing == pytest.approx((1.37, 1.25, 1.25), abs=0.01)
    assert s.affine.shape == (4, 4)
    # the atrium is brighter than the mean of the slab (a real MRI, not noise)
    assert s.image[s.mask > 0].mean() > s.image.mean()


def test_napari_sample_functions_return_layer_tuples():
    from napari_pixeldrl._sample_data import heart_sample, lgg_sample

    for fn in (lgg_sample, heart_sample):
        (img, ikw, ik), (lab, lkw, lk) = fn()
        assert (ik, lk) == ("image", "labels")
        assert lab.shape == img.shape[: lab.ndim]
        assert ikw["scale"] == lkw["scale"] and ikw["translate"] == lkw["translate"]
