import numpy as np
import pytest
import torch

from napari_pixeldrl.core.errors import InputError
from napari_pixeldrl.model.inference import Cancelled, iter_segment, resolve_layout, segment
from napari_pixeldrl.model.network import build_model


@pytest.fixture
def tiny_model(tiny_config):
    def make(**kw):
        torch.manual_seed(0)
        cfg = tiny_config("lite", **kw)
        return build_model(cfg), cfg

    return make


def test_layouts():
    assert resolve_layout((64, 64), 1).is_volume is False
    assert resolve_layout((5, 64, 64), 1).is_volume is True
    lay = resolve_layout((64, 64, 3), 3)
    assert (lay.is_volume, lay.channel_axis) == (False, 2)
    lay = resolve_layout((3, 64, 64), 3)
    assert (lay.is_volume, lay.channel_axis) == (False, 0)
    lay = resolve_layout((7, 64, 64, 3), 3)
    assert (lay.is_volume, lay.channel_axis, lay.shape) == (True, 3, (7, 64, 64))
    assert resolve_layout((10, 64, 64), 1, channel_axis=None).shape == (10, 64, 64)


@pytest.mark.parametrize(
    "shape,channels,message",
    [
        ((64, 64, 3), 1, "wants one channel"),
        ((64, 64), 3, "wants 3 channels"),
        ((2, 3, 4, 5, 6), 1, "5 dimensions"),
        ((4, 64, 64, 2), 1, "4D array"),
        ((64, 64, 5), 3, "none of the axes"),
    ],
)
def test_bad_layouts_are_named(shape, channels, message):
    with pytest.raises(InputError, match=message):
        resolve_layout(shape, channels, source="x.tif")


def test_segment_2d_odd_size_returns_input_shape(tiny_model, blob_image):
    model, cfg = tiny_model()
    image = blob_image[0][:61, :57]
    seg = segment(model, cfg, image, return_steps=True, t_max=4)
    assert seg.mask.shape == (61, 57) and seg.mask.dtype == np.uint8
    assert seg.step_masks.shape == (4, 61, 57) and seg.step_actions.shape == (4, 61, 57)
    assert seg.value.shape == (61, 57)
    np.testing.assert_array_equal(seg.step_masks[-1], seg.mask)
    # Masks only shrink from step to step (zeroing is absorbing).
    assert (np.diff(seg.step_masks.astype(int), axis=0) <= 0).all()
    assert 1 <= seg.steps_taken[0] <= 4


def test_volume_matches_slice_by_slice(tiny_model, blob_image):
    model, cfg = tiny_model()
    vol = np.stack([blob_image[0], np.roll(blob_image[0], 5, axis=1), blob_image[0][::-1]])
    seg3 = segment(model, cfg, vol, batch_size=2, t_max=3)
    assert seg3.mask.shape == vol.shape
    for z in range(3):
        seg2 = segment(model, cfg, vol[z], t_max=3)
        np.testing.assert_array_equal(seg3.mask[z], seg2.mask)


def test_early_stop_is_exact(tiny_model, blob_image):
    model, cfg = tiny_model()
    a = segment(model, cfg, blob_image[0], t_max=10, early_stop=True, return_steps=True)
    b = segment(model, cfg, blob_image[0], t_max=10, early_stop=False, return_steps=True)
    np.testing.assert_array_equal(a.step_masks, b.step_masks)
    np.testing.assert_array_equal(a.mask, b.mask)


def test_multichannel_channels_last_and_first(tiny_model, blob_image):
    model, cfg = tiny_model(in_channels=3)
    rgb = np.stack([blob_image[0]] * 3, axis=-1)
    a = segment(model, cfg, rgb, t_max=2).mask
    b = segment(model, cfg, np.moveaxis(rgb, -1, 0), t_max=2).mask
    np.testing.assert_array_equal(a, b)


def test_bad_values_are_refused(tiny_model, blob_image):
    model, cfg = tiny_model()
    img = blob_image[0].copy()
    img[3, 3] = np.nan
    with pytest.raises(InputError, match="NaN"):
        segment(model, cfg, img, source="scan.nii.gz")
    with pytest.raises(InputError, match="constant"):
        segment(model, cfg, np.full((32, 32), 7.0))
    with pytest.raises(InputError, match="not numeric"):
        segment(model, cfg, np.array([["a"] * 8] * 8))


def test_constant_slices_in_a_volume_get_empty_masks(tiny_model, blob_image):
    model, cfg = tiny_model()
    vol = np.stack([blob_image[0], np.zeros((64, 64), np.float32)])
    seg = segment(model, cfg, vol, t_max=2)
    assert seg.constant_slices == [1]
    assert seg.mask[1].sum() == 0


def test_progress_and_cancel(tiny_model, blob_image):
    model, cfg = tiny_model()
    vol = np.stack([blob_image[0]] * 5)
    gen = iter_segment(model, cfg, vol, batch_size=2, t_max=2)
    seen = []
    try:
        while True:
            seen.append(next(gen))
    except StopIteration as stop:
        result = stop.value
    assert [p.done for p in seen] == [0, 2, 4, 5] and result.mask.shape == vol.shape
    with pytest.raises(Cancelled):
        segment(model, cfg, vol, batch_size=2, cancel=lambda: True)


def test_unet_segments_through_same_entry(tiny_config, blob_image):
    from napari_pixeldrl.model.config import preset_config

    cfg = preset_config("unet", unet_base=4)
    seg = segment(build_model(cfg), cfg, blob_image[0], return_steps=True)
    assert seg.mask.shape == (64, 64) and seg.step_masks.shape == (1, 64, 64)
    # A side that is a multiple of 8 but not of 16 (the U-Net pools four times): padded further, cropped back.
    odd = segment(build_model(cfg), cfg, blob_image[0][:61, :40])
    assert odd.mask.shape == (61, 40)


def test_channel_axis_and_t_max_are_taken_as_given_or_refused(tiny_model, blob_image):
    model, config = tiny_model()
    image, _ = blob_image
    with pytest.raises(InputError, match="channel axis 5 does not exist"):
        resolve_layout((64, 64, 3), 3, channel_axis=5)
    for bad in (2.7, 0, 101, True):
        with pytest.raises(InputError, match="t_max must be a whole number"):
            segment(model, config, image, t_max=bad)
    assert segment(model, config, image, t_max=2, return_steps=True).step_masks.shape[0] == 2
