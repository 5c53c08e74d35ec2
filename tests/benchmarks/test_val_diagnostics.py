"""benchmarks/val_diagnostics.py: per-patient scores that agree with the whole split's, and a
padding check that leaves a local network's scores alone and moves one that sees the whole image."""

import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import val_diagnostics  # noqa: E402
from napari_pixeldrl.model.checkpoint import save_checkpoint  # noqa: E402
from napari_pixeldrl.model.network import build_model  # noqa: E402

from _synthetic import discs  # noqa: E402


def _val():
    images, masks = discs(4, seed=5)
    return SimpleNamespace(images=images, masks=masks, patients=np.array(["a", "a", "b", "b"]))


class Threshold(torch.nn.Module):
    """A purely local 'network': keeps a pixel brighter than 0.5, so padding cannot change it."""

    def forward(self, x):
        return (x[:, :1] - 0.5) * 10


def test_per_patient_means_and_padding(tmp_path, tiny_config, monkeypatch):
    torch.manual_seed(0)
    config = tiny_config("lite")
    path = save_checkpoint(tmp_path / "lite.safetensors", build_model(config), config, {"train": {"t_max": 2}})
    val = _val()
    out = val_diagnostics.diagnose(path, val, pads=(0, 8))
    assert out["t_max"] == 2 and len(out["dice_per_step"]) == 2
    assert set(out["patients"]) == {"a", "b"}
    # Two slices per patient: the mean of the patients' means is the mean over slices.
    assert np.mean([p["dice"] for p in out["patients"].values()]) == pytest.approx(out["dice"], abs=1e-3)
    assert out["pad_dice"]["0"] == pytest.approx(out["dice"])

    unet = tiny_config("basicunet")
    loaded = SimpleNamespace(model=Threshold(), config=unet, info={})
    monkeypatch.setattr("napari_pixeldrl.model.checkpoint.load_checkpoint", lambda path: loaded)
    local = val_diagnostics.diagnose("threshold", val, pads=(0, 8))
    assert local["dice"] > 0.5 and local["pad_dice"]["8"] == pytest.approx(local["pad_dice"]["0"])
