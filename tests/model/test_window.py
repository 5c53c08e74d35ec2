import numpy as np
import pytest
import torch
from torch import nn

from napari_pixeldrl.core.errors import InputError
from napari_pixeldrl.model.config import ModelConfig, preset_config
from napari_pixeldrl.model.inference import segment
from napari_pixeldrl.model.network import KEEP, build_model
from napari_pixeldrl.model.config import check_window
from napari_pixeldrl.model.window import with_window


class PixelwisePolicy(nn.Module):
    """A stub policy that looks at its own pixel only: at step t it zeroes the pixels whose
    image value is below t / 10. Any tiling of it must give the whole-slice episode exactly,
    so it is the reference for how the windows are cut, blended and put back."""

    def encode(self, image, start=None):
        self.t = 0  # one encode per episode
        return image[:, :1]

    def step(self, context, mask, with_value=True, first=False):
        self.t += 1
        logits = torch.zeros(context.shape[0], 2, *context.shape[-2:])
        logits[:, KEEP] = context[:, 0] - self.t / 10
        return logits, (torch.zeros_like(mask) if with_value else None)


def pixelwise(window=0, postprocess="none"):
    return PixelwisePolicy(), ModelConfig(preset="stub", in_channels=1, window=window, postprocess=postprocess)


def test_check_window_names_what_it_takes():
    assert check_window(0) == 0 and check_window(128) == 128
    for bad in (100, -16, 8, True, 1.5, 8192):
        with pytest.raises(InputError, match="multiple of 16"):
            check_window(bad)
    cfg = ModelConfig()
    assert with_window(cfg, "auto") is cfg and with_window(cfg, "64").window == 64
    with pytest.raises(InputError, match="--window takes auto, 0 or"):
        with_window(cfg, "big")


def test_config_keeps_a_window_and_leaves_zero_out():
    cfg = ModelConfig(window=128)
    assert ModelConfig.from_dict(cfg.to_dict()).window == 128
    assert "window" not in ModelConfig().to_dict()  # files without windows stay readable by older versions
    with pytest.raises(InputError, match="model config: window"):
        ModelConfig.from_dict({**ModelConfig().to_dict(), "window": 100})


def test_windows_stitch_back_to_the_whole_slice_episode():
    rng = np.random.default_rng(0)
    image = rng.uniform(0, 1, (2, 75, 101)).astype(np.float32)  # sides that are no multiple of the window
    image[:, 0, 0], image[:, -1, -1] = 0.0, 1.0  # the per-slice min-max scaling keeps the values
    whole = segment(*pixelwise(), image, t_max=6, return_steps=True)
    tiled = segment(*pixelwise(window=32), image, t_max=6, return_steps=True)
    assert np.array_equal(tiled.mask, whole.mask)
    assert np.array_equal(tiled.step_masks, whole.step_masks)
    assert np.array_equal(tiled.steps_taken, whole.steps_taken)
    assert tiled.step_masks.shape == (6, 2, 75, 101)
    assert not np.array_equal(whole.step_masks[1], whole.step_masks[4])  # the stub really has steps to stitch


def test_windows_start_from_the_start_mask():
    image = np.random.default_rng(1).uniform(0, 1, (80, 80)).astype(np.float32)
    start = np.zeros((80, 80), np.uint8)
    start[10:50, 20:70] = 1
    tiled = segment(*pixelwise(window=32), image, t_max=3, return_steps=True, start_mask=start)
    whole = segment(*pixelwise(), image, t_max=3, return_steps=True, start_mask=start)
    assert np.array_equal(tiled.step_masks, whole.step_masks)
    assert tiled.mask[start == 0].sum() == 0


def test_windowed_network_episode_only_loses_pixels(tiny_config, blob_image):
    torch.manual_seed(0)
    cfg = tiny_config("lite")
    model = build_model(cfg)
    image = np.pad(blob_image[0], ((0, 30), (0, 10)), mode="reflect")  # 94 x 74
    seg = segment(model, cfg.replace(window=32), image, t_max=4, return_steps=True)
    steps = seg.step_masks
    assert steps.shape == (4, 94, 74) and seg.mask.shape == (94, 74)
    assert (steps[1:] <= steps[:-1]).all()  # a weighted vote of episodes is still an episode
    assert np.array_equal(seg.mask, steps[-1])
    assert 1 <= int(seg.steps_taken[0]) <= 4
    # A window at least the slice's size is the whole-slice episode.
    big = segment(model, cfg.replace(window=96), image, t_max=4, return_steps=True)
    assert np.array_equal(big.step_masks, segment(model, cfg, image, t_max=4, return_steps=True).step_masks)


def test_windowed_unet_blends_its_sigmoid(blob_image):
    torch.manual_seed(0)
    cfg = preset_config("basicunet", unet_base=4)
    model = build_model(cfg)
    image = np.pad(blob_image[0], ((0, 30), (0, 10)), mode="reflect")
    seg = segment(model, cfg.replace(window=32), image, t_max=3, return_steps=True)
    assert seg.mask.shape == (94, 74) and np.array_equal(seg.step_masks[0], seg.step_masks[-1])
    assert int(seg.steps_taken[0]) == 1


def test_windows_report_where_the_episode_stopped():
    image = np.zeros((70, 90), np.float32)
    image[:, 45:] = 1.0  # kept at every step
    image[20:50, 10:30] = 0.15  # zeroed at step 2; the background at step 1; step 3 changes nothing
    whole = segment(*pixelwise(), image, t_max=6, return_steps=True)
    tiled = segment(*pixelwise(window=32), image, t_max=6, return_steps=True)
    assert whole.steps_taken.tolist() == [3] and np.array_equal(tiled.steps_taken, whole.steps_taken)
    assert np.array_equal(tiled.step_masks, whole.step_masks)
