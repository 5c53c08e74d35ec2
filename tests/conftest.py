import numpy as np
import pytest
import torch

from napari_pixeldrl.model.config import preset_config

torch.set_num_threads(2)

from _synthetic import TINY  # a tiny PixelDRL-MG: same code paths as the presets, narrow layers


@pytest.fixture
def tiny_config():
    def make(preset="lite", **overrides):
        return preset_config(preset, **{**TINY, **overrides})

    return make


@pytest.fixture
def blob_image():
    """A 64x64 slice with a bright disc (the object) on a darker noisy background."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:64, :64]
    truth = ((yy - 30) ** 2 + (xx - 34) ** 2 < 12**2).astype(np.uint8)
    image = (rng.normal(40, 5, (64, 64)) + 120 * truth).astype(np.float32)
    return image, truth


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory, monkeypatch):
    """Slice caches of the tests go to a temporary folder, never to the user's cache."""
    monkeypatch.setenv("PIXELDRL_CACHE", str(tmp_path_factory.mktemp("cache")))
