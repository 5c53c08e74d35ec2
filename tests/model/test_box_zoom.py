"""A model that segments inside a user's box (model config ``box_zoom``): inference against
running the episode on the crop by hand, training crops, the trainer and the command line."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from napari_pixeldrl.core.errors import InputError
from napari_pixeldrl.model.box_zoom import bounding_box, grown_box, resize, resize_mask, zoom_box
from napari_pixeldrl.model.checkpoint import load_checkpoint, save_checkpoint
from napari_pixeldrl.model.config import ModelConfig
from napari_pixeldrl.model.inference import run_batch, segment
from napari_pixeldrl.model.network import build_model
from napari_pixeldrl.model.preprocess import normalize_slice
from napari_pixeldrl.training.cli import main
from napari_pixeldrl.training.loader import CropSettings, box_zoom_crop, epoch_batches
from napari_pixeldrl.training.prompts import BOX_GROW_MAX

from _synthetic import disc_folder


@pytest.fixture
def boxed(tiny_config):
    torch.manual_seed(0)
    config = tiny_config("lite", box_zoom=32, t_max=3)
    return build_model(config).eval(), config


def test_the_episode_runs_on_the_box_resized_and_comes_back_inside_it(boxed, blob_image):
    net, config = boxed
    image, truth = blob_image
    start = np.zeros_like(truth)
    start[14:50, 20:44] = 1  # a 36 x 24 box round the disc
    seg = segment(net, config, image, start_mask=start, return_steps=True)
    # By hand: the normalised slice's box, resized to 32 x 32, through the same network on the whole crop.
    x = torch.from_numpy(normalize_slice(image[None].astype(np.float32), "image"))
    crop, crop_start = zoom_box(x, torch.from_numpy(start), (14, 50, 20, 44), 32)
    inner = config.replace(box_zoom=0)
    with torch.inference_mode():
        ref = run_batch(net, inner, crop[None], (32, 32), 3, return_steps=True, start=crop_start[None].float())
    expected = np.zeros_like(truth)
    expected[14:50, 20:44] = resize_mask(torch.from_numpy(ref.mask[0]), (36, 24)).numpy()
    np.testing.assert_array_equal(seg.mask, expected)
    assert seg.step_masks.shape == (3, 64, 64)
    outside = np.ones(truth.shape, bool)
    outside[14:50, 20:44] = False
    assert not seg.step_masks[:, outside].any()  # nothing outside the box, at any step
    assert seg.value.shape == truth.shape and not seg.value[outside].any() and seg.value[~outside].any()


def test_a_rough_region_is_never_left(boxed, blob_image):
    net, config = boxed
    image, truth = blob_image
    yy, xx = np.mgrid[:64, :64]
    region = ((yy - 31) ** 2 / 2.0 + (xx - 33) ** 2 < 15 ** 2).astype(np.uint8)  # a stroke, not a box
    seg = segment(net, config, image, start_mask=region, return_steps=True)
    assert not (seg.mask & ~region.astype(bool)).any() and not (seg.step_masks & ~region.astype(bool)).any()


def test_a_box_of_the_models_side_is_the_plain_episode(boxed):
    net, config = boxed
    x = torch.rand(1, config.in_channels, 32, 32)
    start = torch.ones(1, 32, 32)
    with torch.inference_mode():
        zoomed = run_batch(net, config, x, (32, 32), 3, return_steps=True, start=start)
        plain = run_batch(net, config.replace(box_zoom=0), x, (32, 32), 3, return_steps=True, start=start)
    np.testing.assert_array_equal(zoomed.mask, plain.mask)
    np.testing.assert_array_equal(zoomed.step_masks, plain.step_masks)


def test_no_start_is_refused_in_one_line_and_an_empty_box_gives_nothing(boxed, blob_image):
    net, config = boxed
    image, truth = blob_image
    with pytest.raises(InputError, match="segments inside a box"):
        segment(net, config, image)
    volume = np.stack([image, image])
    start = np.zeros(volume.shape, np.uint8)
    start[1, 10:40, 10:40] = 1  # slice 0 has no box
    seg = segment(net, config, volume, start_mask=start)
    assert not seg.mask[0].any() and seg.steps_taken[0] == 1


def test_box_zoom_is_checked_and_kept_in_the_json():
    with pytest.raises(InputError, match="box_zoom must be"):
        ModelConfig(box_zoom=100).validate()
    assert "box_zoom" not in ModelConfig().to_dict()
    assert ModelConfig.from_dict(ModelConfig(box_zoom=64).to_dict()).box_zoom == 64


def test_resizing_keeps_a_mask_and_grows_boxes_within_the_slice():
    mask = torch.zeros(40, 40, dtype=torch.uint8)
    mask[10:30, 5:25] = 1
    assert resize_mask(resize_mask(mask, (80, 80)), (40, 40)).eq(mask).all()
    assert resize(torch.ones(3, 10, 7), (5, 5)).shape == (3, 5, 5)
    assert bounding_box(mask) == (10, 30, 5, 25) and bounding_box(torch.zeros(4, 4)) is None
    assert grown_box(mask.numpy(), (2, 20, 3, 0)) == (8, 40, 2, 25)


def test_training_crops_are_the_truths_box_grown_at_random(blob_image):
    image, truth = blob_image
    x = normalize_slice(image[None].astype(np.float32), "image")
    crops = [box_zoom_crop(x, truth, 32, np.random.default_rng(seed)) for seed in range(5)]
    for seed, (crop, mask) in enumerate(crops):
        grow = tuple(int(g) for g in np.random.default_rng(seed).integers(0, BOX_GROW_MAX + 1, size=4))
        ref, ref_mask = zoom_box(torch.from_numpy(x), torch.from_numpy(truth), grown_box(truth, grow), 32)
        np.testing.assert_array_equal(crop, ref.numpy())
        np.testing.assert_array_equal(mask, ref_mask.numpy())
    assert len({float(c.sum()) for c, _ in crops}) > 1  # the margins differ
    corner = np.zeros_like(truth)
    corner[0, 0] = 1  # a rotation can take it out of the slice: that slice is boxed unrotated
    for epoch in range(6):
        for _, yb in epoch_batches([x] * 4, [corner] * 4, batch_size=4, settings=CropSettings(box_zoom=16, rotate=45),
                                   seed=0, epoch=epoch):
            assert yb.any(axis=(1, 2)).all()
    settings = CropSettings(box_zoom=32, augment=True)
    (xb, yb), = list(epoch_batches([x, x], [truth, truth], batch_size=2, settings=settings, seed=0, epoch=0))
    assert xb.shape == (2, 1, 32, 32) and yb.shape == (2, 32, 32) and yb.any(axis=(1, 2)).all()




def test_train_box_zoom_trains_on_boxes_and_validates_from_them(capsys, tmp_path):
    root = disc_folder(tmp_path / "data", empty=(0,))  # patient 0 holds no object
    common = ["--dataset", "folder", "--data", str(root), "--t-max", "2", "--threads", "1", "--no-progress",
              "--epochs", "1", "--out"]
    assert main(["train", *common, str(tmp_path / "run"), "--box-zoom", "32"]) == 0, capsys.readouterr().err
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["model"]["box_zoom"] == 32 and saved["train"]["val_start_grow"] == 10  # validated from a box + 10
    assert load_checkpoint(tmp_path / "run" / "checkpoint_last.safetensors").config.box_zoom == 32
    capsys.readouterr()
    assert main(["train", *common, str(tmp_path / "bad"), "--box-zoom", "32", "--start-boxes", "0.5"]) == 2
    err = capsys.readouterr().err
    assert "--start-boxes does nothing" in err.strip().splitlines()[-1] and "Traceback" not in err
    assert main(["train", *common, str(tmp_path / "bad2"), "--box-zoom", "20"]) == 2
    assert "box_zoom must be" in capsys.readouterr().err
    # the standard peer can be trained on the same box crops
    assert main(["train", *common, str(tmp_path / "unet"), "--box-zoom", "32", "--preset", "basicunet"]) == 0
    assert load_checkpoint(tmp_path / "unet" / "checkpoint_last.safetensors").config.box_zoom == 32
    capsys.readouterr()
    # evaluate needs a box for it; from one it scores
    ckpt = str(tmp_path / "run" / "checkpoint_last.safetensors")
    assert main(["evaluate", "--checkpoint", ckpt, "--dataset", "folder", "--data", str(root), "--split", "all",
                 "--json", "--out", str(tmp_path / "eval")]) == 2
    assert "segments inside a box" in capsys.readouterr().err
    assert main(["evaluate", "--checkpoint", ckpt, "--dataset", "folder", "--data", str(root), "--split", "all",
                 "--json", "--start-from", "box:5", "--out", str(tmp_path / "eval")]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["slices"] == 9  # those with the object
    image = str(root / "images" / "p1__0.png")
    assert main(["predict", "--checkpoint", ckpt, image, str(tmp_path / "m.tif")]) == 2
    assert "give --start-mask" in capsys.readouterr().err
    assert main(["predict", "--checkpoint", ckpt, image, str(tmp_path / "m.tif"), "--start-mask",
                 str(root / "masks" / "p1__0.png")]) == 0
    capsys.readouterr()
    assert main(["export", "--checkpoint", ckpt, "--out", str(tmp_path / "m.zip")]) == 2
    assert "share its .safetensors" in capsys.readouterr().err


def test_zoom_to_box_keeps_the_weights(tmp_path, tiny_config, monkeypatch):
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
    import zoom_to_box

    config = tiny_config("lite")
    net = build_model(config)
    save_checkpoint(tmp_path / "a.safetensors", net, config, {"epoch": 1})
    monkeypatch.setattr(sys, "argv", ["zoom_to_box.py", str(tmp_path / "a.safetensors"), str(tmp_path / "b.safetensors"),
                                      "--side", "64"])
    zoom_to_box.main()
    zoomed = load_checkpoint(tmp_path / "b.safetensors")
    assert zoomed.config.box_zoom == 64 and zoomed.config.replace(box_zoom=0) == config
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), zoomed.model.state_dict().values()))
    assert "box_zoom 64" in zoomed.info["widenings"][-1]["what"]


def test_a_fine_tune_of_a_box_model_drops_an_inherited_start_boxes():
    from napari_pixeldrl.training.train_config import TrainConfig, finetune_config

    trained = {**TrainConfig().to_dict(), "start_boxes": 0.5}
    header = {"model": {"preset": "lite", "box_zoom": 64}, "info": {"train": trained}}
    assert finetune_config(TrainConfig(), header).start_boxes == 0.0
    header["model"]["box_zoom"] = 0
    assert finetune_config(TrainConfig(), header).start_boxes == 0.5


def test_a_window_is_refused_for_a_box_model_rather_than_ignored(boxed):
    from napari_pixeldrl.model.window import with_window

    _, config = boxed
    with pytest.raises(InputError, match="does nothing for a box model"):
        with_window(config, "64")
    assert with_window(config, "0").window == 0 and with_window(config, "auto") is config
