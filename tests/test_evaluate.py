import json

import numpy as np
import torch

from napari_pixeldrl.model.network import build_model
from napari_pixeldrl.training.evaluate import evaluate

from _synthetic import discs


def test_evaluate_writes_table_steps_and_figures(tmp_path, tiny_config):
    torch.manual_seed(0)
    config = tiny_config("lite", t_max=3)
    net = build_model(config)
    images, masks = discs(3)
    out = evaluate(net, config, (images, masks), tmp_path, fig_slices=2)
    for key in ("dice", "ppv", "sen", "iou", "biou", "hd95"):
        assert np.isfinite(out[key]) and key in out["sd"]
    assert out["slices"] == 3 and len(out["dice_per_step"]) == 3
    for name in ("per_slice.csv", "summary.json", "table.md", "dice_per_step.png", "steps.png"):
        assert (tmp_path / name).stat().st_size > 0, name
    assert "| DICE | PPV | SEN | IoU | BIoU | HD95 |" in (tmp_path / "table.md").read_text()
    assert len((tmp_path / "per_slice.csv").read_text().splitlines()) == 4
    assert json.loads((tmp_path / "summary.json").read_text())["slices"] == 3
    # DICE after the last step is the DICE of the final mask.
    assert out["dice_per_step"][-1] == np.mean([r["dice"] for r in out["rows"]])


def test_evaluate_unet(tmp_path, tiny_config):
    from napari_pixeldrl.model.config import preset_config

    config = preset_config("unet", unet_base=4)
    out = evaluate(build_model(config), config, discs(2), tmp_path, fig_slices=1)
    assert out["slices"] == 2 and len(out["dice_per_step"]) == 1
