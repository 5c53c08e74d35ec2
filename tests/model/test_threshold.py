"""The keep threshold: pi(keep) > threshold at every step of an argmax episode, a U-Net's
sigmoid likewise; 0.5 is the argmax every model had before."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from napari_pixeldrl.core.errors import InputError
from napari_pixeldrl.model.config import ModelConfig
from napari_pixeldrl.model.inference import pad_to_multiple, run_batch
from napari_pixeldrl.model.threshold import check_keep_threshold, keep_margin, with_keep_threshold

from test_window import PixelwisePolicy  # keeps a pixel at step t while its value - t/10 is its keep logit


class PixelwiseUNet(nn.Module):
    """A stub U-Net whose logit is its pixel's value minus 0.5."""

    def forward(self, x):
        return x[:, :1] - 0.5


def logit(p):
    return math.log(p / (1 - p))


def values(seed=0, shape=(2, 1, 24, 40)):
    return torch.from_numpy(np.random.default_rng(seed).uniform(-1, 2, shape).astype(np.float32))


def test_checks_and_the_config_round_trip():
    assert check_keep_threshold(0.7) == 0.7 and keep_margin(0.5) == 0.0
    for bad in (0, 1, 1.5, -0.1, True, "0.6", None):
        with pytest.raises(InputError, match="between 0 and 1"):
            check_keep_threshold(bad)
    cfg = ModelConfig()
    assert "keep_threshold" not in cfg.to_dict()  # files without it stay readable by older versions
    assert with_keep_threshold(cfg, "auto") is cfg and with_keep_threshold(cfg, None) is cfg
    chosen = with_keep_threshold(cfg, "0.65")
    assert ModelConfig.from_dict(chosen.to_dict()).keep_threshold == 0.65
    with pytest.raises(InputError, match="--keep-threshold takes auto or a number"):
        with_keep_threshold(cfg, "high")
    with pytest.raises(InputError, match="--keep-threshold must be a number between 0 and 1"):
        with_keep_threshold(cfg, "1")
    with pytest.raises(InputError, match="model config: keep_threshold"):
        ModelConfig.from_dict({**cfg.to_dict(), "keep_threshold": 2})


@pytest.mark.parametrize("threshold", [0.5, 0.3, 0.8])
def test_every_step_keeps_where_pi_keep_exceeds_the_threshold(threshold):
    """With the stub, m(t) = 1 exactly where value - s/10 > logit(threshold) for every s <= t."""
    x = values()
    config = ModelConfig(preset="stub", in_channels=1, keep_threshold=threshold)
    res = run_batch(PixelwisePolicy(), config, *pad_to_multiple(x), 4, early_stop=False, return_steps=True)
    v = x[:, 0].numpy()
    for t in range(1, 5):
        expected = np.ones_like(v, dtype=bool)
        for s in range(1, t + 1):
            expected &= v - s / 10 > logit(threshold)
        assert np.array_equal(res.step_masks[t - 1].astype(bool), expected), t
    assert np.array_equal(res.mask, res.step_masks[-1])


def test_the_default_is_the_argmax():
    x = values(1)
    res = run_batch(PixelwisePolicy(), ModelConfig(preset="stub", in_channels=1), *pad_to_multiple(x), 1)
    assert np.array_equal(res.mask.astype(bool), x[:, 0].numpy() - 0.1 > 0)


@pytest.mark.parametrize("threshold", [0.5, 0.1, 0.9])
def test_a_unet_thresholds_its_sigmoid_and_never_leaves_the_start_mask(threshold):
    x = values(2, (2, 1, 32, 48))
    start = torch.zeros(2, 32, 48, dtype=torch.uint8)
    start[:, 4:20, 8:40] = 1
    config = ModelConfig(preset="stub", arch="unet", in_channels=1, keep_threshold=threshold)
    prob = torch.sigmoid(x[:, 0] - 0.5).numpy()
    res = run_batch(PixelwiseUNet(), config, *pad_to_multiple(x), 1)
    assert np.array_equal(res.mask.astype(bool), prob > threshold)
    boxed = run_batch(PixelwiseUNet(), config, *pad_to_multiple(x), 1, start=start)
    assert np.array_equal(boxed.mask.astype(bool), (prob > threshold) & (start.numpy() > 0))


def test_windows_apply_the_threshold_as_the_whole_slice_does():
    """A U-Net's windows blend probabilities and threshold the blend; a pixelwise stub's
    blend is then the whole-slice mask exactly. The episode's windows threshold inside."""
    x = values(3, (1, 1, 48, 80))
    for model, arch in ((PixelwiseUNet(), "unet"), (PixelwisePolicy(), "pixeldrl")):
        config = ModelConfig(preset="stub", arch=arch, in_channels=1, keep_threshold=0.7)
        whole = run_batch(model, config, *pad_to_multiple(x), 3, early_stop=False)
        tiled = run_batch(model, config.replace(window=32), *pad_to_multiple(x), 3, early_stop=False)
        assert np.array_equal(tiled.mask, whole.mask), arch
