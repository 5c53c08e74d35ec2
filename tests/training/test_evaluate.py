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


def test_step_figure_shows_the_steps_taken_around_the_object(tmp_path):
    from types import SimpleNamespace

    from napari_pixeldrl.training.evaluate import _crop_box, plot_steps

    m = np.zeros((4, 64, 64), np.uint8)
    m[0, 10:40, 10:40] = 1
    m[1, 12:38, 12:38] = 1
    m[2:] = m[1]  # nothing changes at step 3: the episode stops there
    pred = SimpleNamespace(mask=m[-1], step_masks=m, step_actions=m, steps_taken=3)
    big = np.zeros((128, 128), np.uint8)
    big[40:70, 50:60] = 1
    rows, cols = _crop_box(big, margin=4)  # the object and 4 px around it, grown to at least 64 px
    assert (rows.start, rows.stop) == (23, 87) and (cols.start, cols.stop) == (23, 87)
    rows, _ = _crop_box(m[0], margin=4)  # at the image's edge the box grows on the other side
    assert (rows.start, rows.stop) == (0, 64)
    assert _crop_box(np.zeros((32, 48), np.uint8)) == (slice(0, 32), slice(0, 48))  # nothing: the whole slice
    truth = np.zeros((64, 64), np.uint8)
    truth[14:36, 14:36] = 1
    plot_steps([np.random.rand(1, 64, 64).astype(np.float32)], [truth], [pred], tmp_path / "steps.png")
    assert (tmp_path / "steps.png").stat().st_size > 5_000
