"""training/loader.py: the optional zoom and gamma augmentation, and that runs without them cut
the same batches as the flips and rotation alone."""

import math

import numpy as np
import pytest
from scipy import ndimage

from napari_pixeldrl.core.errors import InputError
from napari_pixeldrl.training import loader
from napari_pixeldrl.training.loader import CropSettings, augment_pair, epoch_batches, zoom_about_centre
from napari_pixeldrl.training.train_config import TrainConfig


def flips_and_rotation(image, mask, rng, rotate, *rest):
    """The augmentation as it was before zoom and gamma existed (the reference)."""
    if rng.random() < 0.5:
        image, mask = image[:, :, ::-1], mask[:, ::-1]
    if rng.random() < 0.5:
        image, mask = image[:, ::-1, :], mask[::-1, :]
    if rotate > 0 and rng.random() < 0.5:
        angle = float(rng.uniform(-rotate, rotate))
        image = ndimage.rotate(image, angle, axes=(1, 2), reshape=False, order=1, mode="constant", cval=0.0)
        mask = ndimage.rotate(mask, angle, axes=(0, 1), reshape=False, order=0, mode="constant", cval=0)
        image = np.clip(image, 0.0, 1.0)
    return np.ascontiguousarray(image, dtype=np.float32), np.ascontiguousarray(mask, dtype=np.uint8)


def slices(n=5):
    rng = np.random.default_rng(7)
    return ([rng.random((1, 40, 48)).astype(np.float32) for _ in range(n)],
            [(rng.random((40, 48)) > 0.7).astype(np.uint8) for _ in range(n)])


def batches(settings):
    images, masks = slices()
    return list(epoch_batches(images, masks, batch_size=2, settings=settings, seed=3, epoch=1))


def test_without_zoom_and_gamma_the_batches_are_those_of_flips_and_rotation(monkeypatch):
    ours = batches(CropSettings(crop=32, rotate=30))
    monkeypatch.setattr(loader, "augment_pair", flips_and_rotation)
    reference = batches(CropSettings(crop=32, rotate=30))
    assert len(ours) == len(reference) == 3
    for (x, y), (rx, ry) in zip(ours, reference):
        np.testing.assert_array_equal(x, rx)
        np.testing.assert_array_equal(y, ry)


def square(side=20, size=64):
    mask = np.zeros((size, size), np.uint8)
    lo = (size - side) // 2
    mask[lo:lo + side, lo:lo + side] = 1
    return mask


@pytest.mark.parametrize("factor", [0.8, 1.25])
def test_zoom_magnifies_about_the_centre(factor):
    mask = square()
    image = mask[None].astype(np.float32)
    zoomed_image, zoomed = zoom_about_centre(image, mask, factor)
    assert zoomed.shape == mask.shape and zoomed_image.shape == image.shape
    assert zoomed.sum() / mask.sum() == pytest.approx(factor ** 2, rel=0.12)
    ys, xs = np.nonzero(zoomed)
    assert (ys.mean(), xs.mean()) == pytest.approx((31.5, 31.5), abs=0.6)
    # image and mask move together: they differ at most on the object's edge (bilinear against nearest)
    edge = ndimage.binary_dilation(zoomed) & ~ndimage.binary_erosion(zoomed)
    assert not ((zoomed_image[0] > 0.5) != zoomed.astype(bool))[~edge].any()


def test_gamma_changes_contrast_only_and_keeps_the_range():
    ramp = np.linspace(0.0, 1.0, 64 * 64, dtype=np.float32).reshape(1, 64, 64)
    mask = square()
    rng = np.random.default_rng(0)
    changed = 0
    for _ in range(20):
        image, m = augment_pair(ramp, mask, rng, rotate=0.0, gamma_jitter=0.5)
        np.testing.assert_array_equal(np.sort(m.ravel()), np.sort(mask.ravel()))  # flips at most
        flat = np.sort(image.ravel())
        assert flat[0] >= 0.0 and flat[-1] <= 1.0
        changed += not np.allclose(flat, np.sort(ramp.ravel()), atol=1e-6)
        # a power within [1 / 1.5, 1.5] moves the middle grey to between 0.5 ** 1.5 and 0.5 ** (1 / 1.5)
        middle = float(np.median(image))
        assert 0.5 ** 1.5 - 1e-3 <= middle <= 0.5 ** (1 / 1.5) + 1e-3
    assert 3 <= changed <= 17  # p = 0.5


def test_the_options_are_checked_and_reach_the_crops():
    cfg = TrainConfig(scale_jitter=0.2, gamma_jitter=0.4)
    cfg.check()
    assert (CropSettings.of(cfg).scale_jitter, CropSettings.of(cfg).gamma_jitter) == (0.2, 0.4)
    with pytest.raises(InputError, match="--scale-jitter must be a number at least 0.0 and at most 0.5"):
        TrainConfig(scale_jitter=0.7).check()
    with pytest.raises(InputError, match="--gamma-jitter"):
        TrainConfig(gamma_jitter=-1).check()
    with pytest.raises(InputError, match="--no-augment"):
        TrainConfig(augment=False, gamma_jitter=0.2).check()
    assert TrainConfig.from_dict({"supervised_steps": "every"}).scale_jitter == 0.0  # a run saved before them
    assert math.isclose(CropSettings.of(TrainConfig()).gamma_jitter, 0.0)


def test_an_epoch_with_zoom_changes_object_sizes_and_keeps_masks_binary():
    """A whole epoch through epoch_batches with the zoom on: some crops' objects change in area
    (the reference's flips and rotation keep it within interpolation), all masks stay 0/1."""
    mask = square(side=16, size=48)
    images, masks = [mask[None].astype(np.float32)] * 8, [mask] * 8

    def areas(settings):
        return [float(y.sum()) for _, yb in epoch_batches(images, masks, batch_size=2, settings=settings, seed=5, epoch=0)
                for y in yb]

    plain = areas(CropSettings(crop=48, rotate=0.0))
    zoomed_batches = list(epoch_batches(images, masks, batch_size=2,
                                        settings=CropSettings(crop=48, rotate=0.0, scale_jitter=0.4), seed=5, epoch=0))
    zoomed = [float(y.sum()) for _, yb in zoomed_batches for y in yb]
    assert set(plain) == {256.0}
    assert any(abs(a - 256.0) > 30 for a in zoomed)  # a factor of at least ~1.06 or at most ~0.94 on 8 crops
    assert all(set(np.unique(y)) <= {0.0, 1.0} for _, yb in zoomed_batches for y in yb)


def test_a_fine_tune_keeps_its_checkpoints_augmentation_unless_augmentation_is_off():
    from napari_pixeldrl.training.train_config import TrainConfig, finetune_config

    trained = {**TrainConfig().to_dict(), "scale_jitter": 0.2, "gamma_jitter": 0.4}
    header = {"model": {"preset": "lite"}, "info": {"train": trained}}
    kept = finetune_config(TrainConfig(), header)
    assert (kept.scale_jitter, kept.gamma_jitter) == (0.2, 0.4)
    off = finetune_config(TrainConfig(augment=False), header)
    assert (off.scale_jitter, off.gamma_jitter) == (0.0, 0.0)
    old = {k: v for k, v in trained.items() if k not in ("scale_jitter", "gamma_jitter")}  # saved before they existed
    assert finetune_config(TrainConfig(), {"model": {"preset": "lite"}, "info": {"train": old}}).scale_jitter == 0.0
    boxed = finetune_config(TrainConfig(), {"model": {"preset": "lite", "box_zoom": 64}, "info": {"train": trained}})
    assert (boxed.scale_jitter, boxed.gamma_jitter) == (0.0, 0.4)  # a box model's crops take no zoom (the trainer refuses it)
