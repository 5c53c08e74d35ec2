import numpy as np
import pytest
from skimage.measure import label

from napari_pixeldrl.core.errors import InputError
from napari_pixeldrl.model.config import preset_config
from napari_pixeldrl.model.inference import segment
from napari_pixeldrl.model.postprocess import apply_postprocess, largest_component, with_postprocess

from _synthetic import FixedLogits, two_blobs


def test_largest_component_keeps_the_biggest_8_connected_object():
    out = largest_component(two_blobs())
    assert out.sum() == 37 and out[16, 16] == 1 and out[3, 3] == 0
    assert largest_component(np.zeros((5, 5), np.uint8)).sum() == 0
    one = np.eye(4, dtype=np.uint8)  # a diagonal line is one object
    assert (largest_component(one) == one).all()


def test_largest_component_agrees_with_skimage_on_random_masks():
    rng = np.random.default_rng(0)
    for _ in range(20):
        m = (rng.random((24, 24)) > 0.6).astype(np.uint8)
        labels = label(m, connectivity=2)
        sizes = np.bincount(labels.ravel())[1:]
        out = largest_component(m)
        assert out.sum() == sizes.max() and len(np.unique(label(out, connectivity=2))) == 2


def test_apply_postprocess_per_slice_and_names():
    batch = np.stack([two_blobs(), np.zeros((20, 20), np.uint8)])
    out = apply_postprocess(batch, "largest-component")
    assert out.shape == batch.shape and out[0].sum() == 37 and out[1].sum() == 0
    assert apply_postprocess(batch, "none") is batch
    with pytest.raises(InputError, match="unknown post-processing 'biggest'"):
        apply_postprocess(batch, "biggest")
    cfg = preset_config("lite")
    assert with_postprocess(cfg, "auto") is cfg
    assert with_postprocess(cfg, "largest-component").postprocess == "largest-component"


def test_segment_applies_the_configs_postprocess_to_the_final_mask_only():
    image = np.random.default_rng(0).random((32, 32)).astype(np.float32)
    cfg = preset_config("unet")
    raw = segment(FixedLogits(), cfg, image, return_steps=True)
    kept = segment(FixedLogits(), cfg.replace(postprocess="largest-component"), image, return_steps=True)
    assert raw.mask.sum() == 46 and kept.mask.sum() == 37
    assert kept.step_masks.sum() == raw.step_masks.sum() == 46  # the steps show the raw masks
