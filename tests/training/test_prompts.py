"""Episodes that start from a rough mask: the simulated box, the episode, the loss, and
``predict --start-mask`` / ``evaluate --start-from box:N``."""

import json

import numpy as np
import pytest
import tifffile
import torch

from napari_pixeldrl.core.errors import InputError
from napari_pixeldrl.model.checkpoint import save_checkpoint
from napari_pixeldrl.model.config import preset_config
from napari_pixeldrl.model.episode import run_episode
from napari_pixeldrl.model.inference import segment
from napari_pixeldrl.model.network import build_model
from napari_pixeldrl.training.cli import main
from napari_pixeldrl.training.pa3c import pa3c_loss
from napari_pixeldrl.training.prompts import box_starts, parse_start, truth_box

from _synthetic import discs


def test_truth_box_grows_and_clips():
    truth = np.zeros((20, 30), np.uint8)
    truth[5:8, 10:12] = 1
    box = truth_box(truth, 2)
    rows, cols = np.nonzero(box.any(1))[0], np.nonzero(box.any(0))[0]
    assert (rows[0], rows[-1], cols[0], cols[-1]) == (3, 9, 8, 13) and box.sum() == 7 * 6
    assert truth_box(truth, 50).all()  # clipped to the slice
    assert not truth_box(np.zeros((4, 4)), 3).any()  # no object: nothing to box
    assert parse_start("box:10") == 10 and parse_start("ones") is None and parse_start(None) is None
    with pytest.raises(InputError, match="box:N"):
        parse_start("box:-1")


def test_training_boxes_match_the_numpy_box():
    truth = torch.zeros(3, 32, 32)
    truth[0, 10:14, 5:9] = 1
    truth[1, 20:30, 20:22] = 1  # image 2 holds no object: it starts from all ones
    start = box_starts(truth, 1.0, 4, torch.Generator().manual_seed(0))
    assert start[2].all()
    for i in (0, 1):
        grown = [g for g in range(5) if np.array_equal(start[i].numpy(), truth_box(truth[i].numpy(), g))]
        assert len(grown) == 1  # one of the margins 0..4
    assert box_starts(truth, 0.0, 4).all()  # fraction 0: every episode from all ones


def test_an_episode_only_removes_from_its_start(tiny_config):
    torch.manual_seed(0)
    net = build_model(tiny_config("lite"))
    x = torch.rand(2, 1, 32, 32)
    start = torch.zeros(2, 1, 32, 32)
    start[:, :, 8:20, 8:20] = 1
    for step in run_episode(net, x, 3, start_mask=start):
        assert not (step.mask.bool() & ~start[:, 0].bool()).any()
    # segment(): the start mask must have the image's shape
    with pytest.raises(InputError, match="start mask has shape"):
        segment(net, tiny_config("lite"), np.random.rand(32, 32), start_mask=np.ones((16, 16)))
    seg = segment(net, tiny_config("lite"), np.random.rand(32, 32), start_mask=start[0, 0].numpy())
    assert not (seg.mask.astype(bool) & ~start[0, 0].numpy().astype(bool)).any()
    # A U-Net has no episode: its mask is cut to the start mask.
    unet_config = preset_config("unet", unet_base=4)
    unet = build_model(unet_config)
    with torch.no_grad():
        unet.out.bias.fill_(10.0)  # everything is object without the box
    seg = segment(unet, unet_config, np.random.rand(32, 32), start_mask=start[0, 0].numpy())
    assert np.array_equal(seg.mask.astype(bool), start[0, 0].numpy().astype(bool))


def test_loss_from_boxes_rewards_less_to_remove(tiny_config):
    """From a box, the background outside it is already zero: a policy that zeroes
    everything earns only the box's background, not the whole slice's."""
    torch.manual_seed(0)
    net = build_model(tiny_config("lite"))
    with torch.no_grad():
        net.policy.out.bias[:2].copy_(torch.tensor([20.0, -20.0]))  # pi(keep) ~ 0
    images, masks = discs(1, 0)
    x, y = torch.from_numpy(images[0][None]), torch.from_numpy(masks[0][None]).float()
    common = dict(t_max=2, gamma=0.95, reward_balance=False, generator=torch.Generator().manual_seed(0))
    _, ones = pa3c_loss(net, x, y, **common)
    _, boxed = pa3c_loss(net, x, y, start_boxes=1.0, **common)
    assert boxed.mean_reward < ones.mean_reward and boxed.keep_fraction == 0.0


def test_predict_start_mask_and_evaluate_from_a_box(capsys, tmp_path, tiny_config):
    from test_cli import _disc_folder

    torch.manual_seed(0)
    cfg = tiny_config("lite")
    ckpt = save_checkpoint(tmp_path / "tiny.safetensors", build_model(cfg), cfg)
    image = np.random.default_rng(0).random((64, 64)).astype(np.float32)
    tifffile.imwrite(tmp_path / "scan.tif", image)
    start = np.zeros((64, 64), np.uint8)
    start[10:30, 10:30] = 255
    tifffile.imwrite(tmp_path / "box.tif", start)
    assert main(["predict", "--checkpoint", str(ckpt), str(tmp_path / "scan.tif"), str(tmp_path / "m.tif"),
                 "--start-mask", str(tmp_path / "box.tif")]) == 0
    capsys.readouterr()
    mask = tifffile.imread(tmp_path / "m.tif")
    assert not ((mask > 0) & (start == 0)).any()
    tifffile.imwrite(tmp_path / "small.tif", start[:32])
    assert main(["predict", "--checkpoint", str(ckpt), str(tmp_path / "scan.tif"), str(tmp_path / "m2.tif"),
                 "--start-mask", str(tmp_path / "small.tif")]) == 2
    assert "start mask has shape" in capsys.readouterr().err
    root = _disc_folder(tmp_path / "data")
    code = main(["evaluate", "--checkpoint", str(ckpt), "--dataset", "folder", "--data", str(root), "--split", "all",
                 "--start-from", "box:3", "--out", str(tmp_path / "r"), "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and out["start_from"] == "box:3" and out["object_slices_only"] and out["slices"] == 10
    assert main(["evaluate", "--checkpoint", str(ckpt), "--dataset", "folder", "--data", str(root), "--split", "all",
                 "--start-from", "circle", "--out", str(tmp_path / "r2")]) == 2
    assert "box:N" in capsys.readouterr().err


def test_evaluate_of_a_box_model_does_not_claim_windows(capsys, tmp_path, tiny_config):
    """A box model runs on its box resized to box_zoom, so a window in its config is not used
    and the report must not say the slices ran in windows; a whole-slice model with one does."""
    from test_cli import _disc_folder

    torch.manual_seed(0)
    root = _disc_folder(tmp_path / "data")
    for name, extra in (("boxed", {"box_zoom": 32}), ("whole", {})):
        cfg = tiny_config("lite", window=32, **extra)
        ckpt = save_checkpoint(tmp_path / f"{name}.safetensors", build_model(cfg), cfg)
        code = main(["evaluate", "--checkpoint", str(ckpt), "--dataset", "folder", "--data", str(root), "--split", "all",
                     "--start-from", "box:3", "--out", str(tmp_path / name)])
        out = capsys.readouterr().out
        assert code == 0
        assert ("32-pixel windows" in out) == (name == "whole"), out
