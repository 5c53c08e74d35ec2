import json

import numpy as np
import pytest
import torch

from napari_pixeldrl.model.checkpoint import save_checkpoint
from napari_pixeldrl.model.network import build_model
from napari_pixeldrl.training.cli import main

from _synthetic import disc_folder


def run(capsys, *argv):
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_info_json_has_required_keys(capsys):
    code, out, _ = run(capsys, "info", "--preset", "paper", "--json")
    info = json.loads(out)
    assert code == 0
    assert {"preset", "params", "in_channels", "t_max"} <= set(info)
    assert info["preset"] == "paper" and abs(info["params"] - 7.14e6) / 7.14e6 < 0.01


def test_unknown_preset_is_one_clear_line(capsys):
    code, out, err = run(capsys, "info", "--preset", "huge")
    assert code == 2 and "unknown preset 'huge'" in err and "Traceback" not in err


def test_info_of_checkpoint_and_foreign_file(capsys, tmp_path, tiny_config):
    cfg = tiny_config("lite", in_channels=3)
    path = save_checkpoint(tmp_path / "m.safetensors", build_model(cfg), cfg, {"trained_on": "synthetic"})
    code, out, _ = run(capsys, "info", "--checkpoint", "heart-box", "--json")
    assert code == 0 and json.loads(out)["box_zoom"] == 128  # says it segments only inside a box
    code, out, _ = run(capsys, "info", "--checkpoint", str(path), "--json")
    assert code == 0 and json.loads(out)["in_channels"] == 3
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x00" * 40)
    code, _, err = run(capsys, "info", "--checkpoint", str(bad))
    assert code == 2 and "bad.safetensors" in err


def test_bench_reports_ratio(capsys):
    code, out, _ = run(capsys, "bench", "--preset", "lite", "--size", "64", "--repeats", "1", "--warmup", "0", "--json")
    r = json.loads(out)
    assert code == 0
    assert {"pixeldrl_s", "unet_s", "ratio", "steps", "threads"} <= set(r)
    assert r["steps"] == 10 and r["threads"] == 2
    assert r["ratio"] == pytest.approx(r["pixeldrl_s"] / r["unet_s"], rel=0.01)


def _tiny_checkpoint(tmp_path, tiny_config, channels=1):
    import torch

    torch.manual_seed(0)
    cfg = tiny_config("lite", in_channels=channels)
    return save_checkpoint(tmp_path / f"tiny{channels}.safetensors", build_model(cfg), cfg)


def test_predict_nifti_keeps_affine(capsys, tmp_path, tiny_config, blob_image):
    nib = pytest.importorskip("nibabel")
    vol = np.stack([blob_image[0]] * 4, axis=-1)  # (X, Y, Z) on disk
    affine = np.diag([1.25, 1.25, 1.37, 1.0])
    affine[:3, 3] = [-10.0, 20.0, 5.0]
    src = tmp_path / "scan.nii.gz"
    nib.save(nib.Nifti1Image(vol, affine), src)
    out = tmp_path / "pred.nii.gz"
    ckpt = _tiny_checkpoint(tmp_path, tiny_config)
    code, stdout, err = run(capsys, "predict", "--checkpoint", str(ckpt), str(src), str(out), "--json")
    assert code == 0, err
    saved = nib.load(out)
    np.testing.assert_allclose(saved.affine, affine)
    assert saved.shape == vol.shape
    assert set(np.unique(np.asarray(saved.dataobj))) <= {0, 1}
    assert json.loads(stdout)["shape"] == [4, 64, 64]


def test_predict_rgb_tif_and_wrong_channels(capsys, tmp_path, tiny_config, blob_image):
    tifffile = pytest.importorskip("tifffile")
    rgb = np.stack([blob_image[0].astype(np.uint8)] * 3, axis=-1)
    src = tmp_path / "slice.tif"
    tifffile.imwrite(src, rgb)
    out = tmp_path / "slice_pred.tif"
    code, _, err = run(capsys, "predict", "--checkpoint", str(_tiny_checkpoint(tmp_path, tiny_config, 3)), str(src), str(out))
    assert code == 0, err
    mask = tifffile.imread(out)
    assert mask.shape == (64, 64) and set(np.unique(mask)) <= {0, 255}
    # A one-channel model on the RGB file: one clear line naming the file.
    code, _, err = run(capsys, "predict", "--checkpoint", str(_tiny_checkpoint(tmp_path, tiny_config, 1)), str(src), str(out))
    assert code == 2 and "slice.tif" in err and "one channel" in err


def test_predict_window_option(capsys, tmp_path, tiny_config, blob_image):
    tifffile = pytest.importorskip("tifffile")
    src = tmp_path / "slice.tif"
    tifffile.imwrite(src, np.pad(blob_image[0], ((0, 40), (0, 40)), mode="reflect"))
    ckpt = str(_tiny_checkpoint(tmp_path, tiny_config))
    code, _, err = run(capsys, "predict", "--checkpoint", ckpt, str(src), str(tmp_path / "w.tif"), "--window", "32")
    assert code == 0, err
    assert tifffile.imread(tmp_path / "w.tif").shape == (104, 104)
    code, _, err = run(capsys, "predict", "--checkpoint", ckpt, str(src), str(tmp_path / "x.tif"), "--window", "100")
    assert code == 2 and "window must be 0 (whole slices) or a multiple of 16" in err and "Traceback" not in err
    assert not (tmp_path / "x.tif").exists()
    code, _, err = run(capsys, "predict", "--checkpoint", ckpt, str(src), str(tmp_path / "k.tif"), "--keep-threshold", "1")
    assert code == 2 and "--keep-threshold must be a number between 0 and 1" in err and "Traceback" not in err
    assert not (tmp_path / "k.tif").exists()


def test_metrics_on_mask_files(capsys, tmp_path):
    tifffile = pytest.importorskip("tifffile")
    gt = np.zeros((64, 64), np.uint8)
    gt[10:30, 10:30] = 255
    pred = np.zeros((64, 64), np.uint8)
    pred[10:30, 15:35] = 1  # different nonzero value: still object
    tifffile.imwrite(tmp_path / "gt.tif", gt)
    tifffile.imwrite(tmp_path / "pred.tif", pred)
    code, out, _ = run(capsys, "metrics", str(tmp_path / "pred.tif"), str(tmp_path / "gt.tif"), "--json")
    m = json.loads(out)
    assert code == 0 and set(m) >= {"dice", "ppv", "sen", "iou", "biou", "hd95"}
    tp = 20 * 15
    assert m["dice"] == pytest.approx((2 * tp + 1e-4) / (800 + 1e-4))
    assert m["hd95"] == pytest.approx(5.0)
    code, out, _ = run(capsys, "metrics", str(tmp_path / "pred.tif"), str(tmp_path / "gt.tif"), "--spacing", "2", "2", "--json")
    assert json.loads(out)["hd95"] == pytest.approx(10.0)
    tifffile.imwrite(tmp_path / "small.tif", gt[:32])
    code, _, err = run(capsys, "metrics", str(tmp_path / "small.tif"), str(tmp_path / "gt.tif"))
    assert code == 2 and "small.tif" in err


def test_metrics_refuses_what_it_cannot_score_as_one_object(capsys, tmp_path):
    tifffile = pytest.importorskip("tifffile")
    gt = np.zeros((64, 64), np.uint8)
    gt[10:30, 10:30] = 1
    gt[40:50, 40:50] = 2  # a second object label
    pred = np.zeros((64, 64), np.uint8)
    pred[10:30, 10:30] = 1
    tifffile.imwrite(tmp_path / "gt.tif", gt)
    tifffile.imwrite(tmp_path / "pred.tif", pred)
    code, _, err = run(capsys, "metrics", str(tmp_path / "pred.tif"), str(tmp_path / "gt.tif"))
    assert code == 2 and "several object labels" in err and "gt.tif" in err
    code, out, _ = run(capsys, "metrics", str(tmp_path / "pred.tif"), str(tmp_path / "gt.tif"), "--label", "1", "--json")
    assert code == 0 and json.loads(out)["dice"] == pytest.approx(1.0)
    # --label also picks the object from a multi-label prediction; a file without it is empty.
    tifffile.imwrite(tmp_path / "pred_labels.tif", gt)
    tifffile.imwrite(tmp_path / "gt_other.tif", np.where(gt == 1, 0, gt).astype(np.uint8))
    code, out, _ = run(capsys, "metrics", str(tmp_path / "pred_labels.tif"), str(tmp_path / "gt.tif"), "--label", "2", "--json")
    assert code == 0 and json.loads(out)["dice"] == pytest.approx(1.0)
    code, _, err = run(capsys, "metrics", str(tmp_path / "pred.tif"), str(tmp_path / "gt_other.tif"), "--label", "1", "--json")
    assert code == 2 and "--label 1 does not occur in" in err and "[2]" in err  # a wrong label, not an empty object
    nan_pred = pred.astype(np.float32)
    nan_pred[0, 0] = np.nan
    tifffile.imwrite(tmp_path / "nan.tif", nan_pred)
    code, _, err = run(capsys, "metrics", str(tmp_path / "nan.tif"), str(tmp_path / "gt.tif"), "--label", "1")
    assert code == 2 and "nan.tif" in err and "NaN" in err


def test_data_summary_counts_empty_slices(capsys, tmp_path, blob_image):
    from PIL import Image

    folder = tmp_path / "pairs"
    folder.mkdir()
    image, truth = blob_image
    for name, mask in (("p01__0", truth), ("p01__1", truth * 0), ("p02__0", truth)):
        Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).save(folder / f"{name}.png")
        Image.fromarray(mask * 255).save(folder / f"{name}_mask.png")
    code, out, err = run(capsys, "data-summary", "--dataset", "folder", "--data", str(folder), "--json")
    assert code == 0, err
    assert json.loads(out) == {"patients": 2, "slices": 3, "positive_slices": 2}
    code, _, err = run(capsys, "data-summary", "--dataset", "folder", "--data", str(tmp_path / "nowhere"))
    assert code == 2 and "nowhere" in err


def test_demo_with_a_given_checkpoint_writes_the_steps_figure(capsys, tmp_path, tiny_config):
    ckpt = _tiny_checkpoint(tmp_path, tiny_config, 1)
    code, out, err = run(capsys, "demo", "--sample", "heart", "--checkpoint", str(ckpt), "--out", str(tmp_path / "demo"), "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["sample"] == "heart" and result["slices"] == 8
    assert set(result["volume"]) == {"dice", "ppv", "sen", "iou", "biou", "hd95"}
    assert (tmp_path / "demo" / "heart_steps.png").stat().st_size > 10_000 and result["start"] == "all ones"
    # The heart-box demo starts a model of whole slices from the same boxes a box model gets.
    code, out, err = run(capsys, "demo", "--sample", "heart-box", "--checkpoint", str(ckpt), "--out", str(tmp_path / "demo"),
                         "--json")
    assert code == 0, err
    boxed = json.loads(out)
    assert "box + 10" in boxed["start"] and boxed["model"] == str(ckpt)
    # The LGG sample is RGB: a one-channel model is refused with the sample's file named.
    code, _, err = run(capsys, "demo", "--sample", "lgg", "--checkpoint", str(ckpt), "--out", str(tmp_path / "demo"))
    assert code == 2 and "lgg_image.tif" in err


def test_demo_of_a_box_model_starts_from_boxes_and_scores_the_boxed_slices(capsys, tmp_path, tiny_config, monkeypatch):
    """heart-box's demo: each slice that holds the object starts from its box + 10 px, only
    those are scored, and the figure draws the start (the box) and step 1's removals in it."""
    import torch

    from napari_pixeldrl.sample_data import load_heart_sample
    from napari_pixeldrl.training import demo

    torch.manual_seed(0)
    cfg = tiny_config("lite", box_zoom=32, t_max=2)
    ckpt = save_checkpoint(tmp_path / "boxed.safetensors", build_model(cfg), cfg)
    drawn = {}
    real = demo.plot_steps
    monkeypatch.setattr(demo, "plot_steps", lambda *a, **k: (drawn.update(k), real(*a, **k)))
    code, out, err = run(capsys, "demo", "--sample", "heart-box", "--checkpoint", str(ckpt), "--out", str(tmp_path / "d"),
                         "--json")
    assert code == 0, err
    result = json.loads(out)
    truth = load_heart_sample().mask
    assert result["slices"] == int(truth.reshape(len(truth), -1).any(axis=1).sum()) and "box + 10" in result["start"]
    assert len(drawn["starts"]) == len(drawn["titles"]) and all(s.any() for s in drawn["starts"])
    assert (tmp_path / "d" / "heart-box_steps.png").stat().st_size > 10_000


def _disc_folder(root):
    """A folder dataset of 10 patients, one 64x64 disc slice each."""
    return disc_folder(root)


def test_train_evaluate_finetune_commands_on_a_folder(capsys, tmp_path):
    """The issue's commands end to end on a tiny folder dataset."""
    root = _disc_folder(tmp_path / "data")
    run_dir = tmp_path / "run"
    common = ["--dataset", "folder", "--data", str(root), "--epochs", "1", "--t-max", "2", "--crop", "0",
              "--threads", "1", "--no-progress"]
    code, out, err = run(capsys, "train", *common, "--preset", "lite", "--out", str(run_dir),
                         "--balance-power", "0.5", "--supervised-dice", "--scale-jitter", "0.1", "--gamma-jitter", "0.2")
    assert code == 0, err
    assert json.loads(out.strip().splitlines()[-1])["epochs"] == 1
    start, record = map(json.loads, (run_dir / "commands.jsonl").read_text().splitlines())
    assert start["status"] == "started" and start["argv"] == record["argv"]  # on record before any epoch ran
    assert record["argv"][:2] == ["pixeldrl", "train"] and "--supervised-dice" in record["argv"]
    assert record["reason"] == "done" and record["epochs_done"] == 1 and record["cpu_minutes"] > 0
    row = json.loads((run_dir / "metrics.jsonl").read_text().splitlines()[0])
    assert row["objective"]["balance_power"] == 0.5 and row["objective"]["supervised_dice"] is True

    code, out, err = run(capsys, "evaluate", "--checkpoint", str(run_dir / "checkpoint_best.safetensors"),
                         "--split", "all", "--json", "--postprocess", "largest-component", "--out", str(tmp_path / "report"))
    assert code == 0, err
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["slices"] == 10 and summary["postprocess"] == "largest-component"
    assert {"dice", "ppv", "sen", "iou", "biou", "hd95"} <= set(summary)
    lo, hi = summary["dice_ci95"]
    assert lo <= summary["dice"] <= hi and summary["patients"] >= 1
    assert summary["empty_predictions"] >= 0 and "hd95_nonempty" in summary
    assert len(summary["dice_per_step"]) == 2  # the episode length it was trained with
    code, out, err = run(capsys, "evaluate", "--checkpoint", str(run_dir / "checkpoint_best.safetensors"),
                         "--split", "all", "--json", "--t-max", "5", "--out", str(tmp_path / "report5"))
    assert code == 0, err
    assert len(json.loads(out.strip().splitlines()[-1])["dice_per_step"]) == 5
    code, _, err = run(capsys, "evaluate", "--checkpoint", str(run_dir / "checkpoint_best.safetensors"),
                       "--split", "all", "--t-max", "0", "--out", str(tmp_path / "report0"))
    assert code == 2 and "--t-max" in err and not (tmp_path / "report0").exists()
    code, out, err = run(capsys, "evaluate", "--checkpoint", str(run_dir / "checkpoint_best.safetensors"),
                         "--split", "all", "--json", "--keep-threshold", "0.7", "--out", str(tmp_path / "report07"))
    assert code == 0, err
    assert json.loads(out.strip().splitlines()[-1])["keep_threshold"] == 0.7
    assert "pi(keep) > 0.7" in (tmp_path / "report07" / "table.md").read_text()

    code, out, err = run(capsys, "finetune", *common, "--checkpoint", str(run_dir / "checkpoint_best.safetensors"),
                         "--out", str(tmp_path / "ft"), "--n-shot", "3")
    assert code == 0, err
    assert "on 3 slices" in err
    assert (tmp_path / "ft" / "checkpoint_best.safetensors").exists()
    ft = json.loads((tmp_path / "ft" / "config.json").read_text())["train"]
    assert ft["balance_power"] == 0.5 and ft["supervised_dice"] is True  # the checkpoint's loss carries over
    assert (ft["scale_jitter"], ft["gamma_jitter"]) == (0.1, 0.2)  # and its augmentation
    code, _, err = run(capsys, "finetune", *common, "--checkpoint", str(run_dir / "checkpoint_best.safetensors"),
                       "--out", str(tmp_path / "ft-plain"), "--n-shot", "3", "--no-augment")
    assert code == 0, err  # the inherited augmentation goes with --no-augment, not refused as given twice
    plain = json.loads((tmp_path / "ft-plain" / "config.json").read_text())["train"]
    assert (plain["augment"], plain["scale_jitter"], plain["gamma_jitter"]) == (False, 0.0, 0.0)
    code, _, err = run(capsys, "finetune", *common, "--checkpoint", str(run_dir / "checkpoint_best.safetensors"),
                       "--out", str(tmp_path / "ft-both"), "--no-augment", "--gamma-jitter", "0.3")
    assert code == 2 and "--no-augment" in err and not (tmp_path / "ft-both").exists()
    code, _, err = run(capsys, "finetune", *common, "--checkpoint", str(run_dir / "checkpoint_best.safetensors"),
                       "--out", str(tmp_path / "ft"), "--n-shot", "4", "--resume")
    assert code == 2 and "--n-shot 4 (the run has 3)" in err
    # Without --crop, a fine-tune trains on the crop its checkpoint was trained on (here whole slices).
    at = common.index("--crop")
    no_crop = common[:at] + common[at + 2:]
    code, _, err = run(capsys, "finetune", *no_crop, "--checkpoint", str(run_dir / "checkpoint_best.safetensors"),
                       "--out", str(tmp_path / "ft2"), "--n-shot", "3", "--epochs", "1")
    assert code == 0, err
    assert json.loads((tmp_path / "ft2" / "config.json").read_text())["train"]["crop"] is None
    assert json.loads((tmp_path / "ft2" / "commands.jsonl").read_text().splitlines()[-1])["epochs_done"] == 1


def test_a_validation_fold_trains_and_evaluates_on_its_own_patients(capsys, tmp_path):
    """--val-fold: validation is one fold of the development patients (the default split's
    test patients stay out); evaluate --split val of that run scores the same fold, and a
    resumed run cannot change it."""
    root = _disc_folder(tmp_path / "data")  # 10 patients: 2 test, 8 development -> 4 folds of 2
    run_dir = tmp_path / "run"
    common = ["--dataset", "folder", "--data", str(root), "--epochs", "1", "--t-max", "1", "--crop", "0",
              "--threads", "1", "--no-progress", "--preset", "lite", "--out", str(run_dir)]
    code, _, err = run(capsys, "train", *common, "--val-fold", "1", "--folds", "4")
    assert code == 0, err
    assert "on 6 slices, validating on 2" in err
    assert json.loads((run_dir / "config.json").read_text())["train"]["data"]["val_fold"] == 1
    best = str(run_dir / "checkpoint_best.safetensors")
    for split in ("val", "test"):
        code, out, err = run(capsys, "evaluate", "--checkpoint", best, "--split", split, "--json",
                             "--out", str(tmp_path / f"eval-{split}"))
        assert code == 0, err
        assert json.loads(out.strip().splitlines()[-1])["slices"] == 2
    code, _, err = run(capsys, "train", *common, "--val-fold", "2", "--folds", "4", "--resume")
    assert code == 2 and "--val-fold 2 (the run has 1)" in err
    code, _, err = run(capsys, "train", *common, "--val-fold", "1", "--folds", "5", "--resume")
    assert code == 2 and "--folds 5 (the run has 4)" in err
    # A fold named on evaluate's command line divides the patients into the run's 4 folds, not 5.
    code, out, err = run(capsys, "evaluate", "--checkpoint", best, "--split", "val", "--val-fold", "3", "--json",
                         "--out", str(tmp_path / "eval-fold3"))
    assert code == 0, err
    assert json.loads(out.strip().splitlines()[-1])["slices"] == 2  # fold 3 of 5 would hold 1 of the 8 patients
    code, _, err = run(capsys, "train", *common[:-1], str(tmp_path / "r2"), "--val-fold", "0", "--fold", "0")
    assert code == 2 and "exclude each other" in err


def test_ablation_switches_and_validation_interval(capsys, tmp_path):
    """--no-sam/--no-dilation build the Table 3 variants; a resumed run cannot change its network."""
    from napari_pixeldrl.model.checkpoint import load_checkpoint

    root = _disc_folder(tmp_path / "data")
    run_dir = tmp_path / "run"
    common = ["--dataset", "folder", "--data", str(root), "--t-max", "2", "--crop", "0", "--threads", "1",
              "--no-progress", "--out", str(run_dir)]
    code, _, err = run(capsys, "train", *common, "--epochs", "3", "--val-every", "2", "--no-sam", "--no-dilation")
    assert code == 0, err
    loaded = load_checkpoint(run_dir / "checkpoint_last.safetensors")
    assert (loaded.config.sam, loaded.config.dilation) == (False, False)
    assert not any(type(m).__name__ == "SelfAttention" for m in loaded.model.modules())
    assert all(m.dilation == (1, 1) for m in loaded.model.modules() if isinstance(m, torch.nn.Conv2d))
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["val_dice"] is None for r in rows] == [True, False, False]  # epoch 2, and the last one

    code, _, err = run(capsys, "train", *common, "--epochs", "4", "--resume", "--sam")
    assert code == 2 and "cannot change its network" in err
    code, _, err = run(capsys, "train", *common[:-1], str(tmp_path / "u"), "--preset", "unet", "--no-sam")
    assert code == 2 and "unet" in err
    code, _, err = run(capsys, "train", *common[:-1], str(tmp_path / "d"), "--epochs", "1", "--fine-decoder", "4",
                       "--sam-axis", "channel", "--head-norm", "instance", "--first-step-head", "--first-step-recall", "3")
    assert code == 0, err
    decoded = load_checkpoint(tmp_path / "d" / "checkpoint_last.safetensors").config
    assert (decoded.fine_decoder, decoded.sam_axis, decoded.head_norm, decoded.first_step_head) == (4, "channel", "instance", True)
    assert json.loads((tmp_path / "d" / "config.json").read_text())["train"]["first_step_recall"] == 3.0
    code, _, err = run(capsys, "train", *common[:-1], str(tmp_path / "j"), "--epochs", "1", "--scale-jitter", "0.2",
                       "--gamma-jitter", "0.3")
    assert code == 0, err
    trained = json.loads((tmp_path / "j" / "config.json").read_text())["train"]
    assert (trained["scale_jitter"], trained["gamma_jitter"]) == (0.2, 0.3)
    code, _, err = run(capsys, "train", *common[:-1], str(tmp_path / "j2"), "--scale-jitter", "0.9")
    assert code == 2 and "--scale-jitter must be" in err and "Traceback" not in err
    code, _, err = run(capsys, "train", *common[:-1], str(tmp_path / "j3"), "--box-zoom", "32", "--scale-jitter", "0.2")
    assert code == 2 and "--scale-jitter does nothing for a box_zoom model" in err and "Traceback" not in err
    code, _, err = run(capsys, "train", *common[:-1], str(tmp_path / "d2"), "--fine-decoder", "-1")
    assert code == 2 and "fine_decoder" in err
    code, _, err = run(capsys, "train", *common[:-1], str(tmp_path / "v"), "--val-every", "0")
    assert code == 2 and "validation interval" in err
    code, _, err = run(capsys, "train", *common[:-1], str(tmp_path / "w"), "--ema-decay", "1")
    assert code == 2 and "EMA decay" in err
    code, _, err = run(capsys, "train", *common[:-1], str(tmp_path / "b"), "--val-start", "box")
    assert code == 2 and "'ones' or 'box:N'" in err and "Traceback" not in err
    code, _, err = run(capsys, "train", *common[:-1], str(tmp_path / "b"), "--epochs", "1", "--start-boxes", "1",
                       "--val-start", "box:3", "--prompt-channel")
    assert code == 0, err
    assert json.loads((tmp_path / "b" / "config.json").read_text())["train"]["val_start_grow"] == 3
    assert load_checkpoint(tmp_path / "b" / "checkpoint_last.safetensors").config.prompt_channel
    code, _, err = run(capsys, "train", *common[:-1], str(tmp_path / "p"), "--preset", "paper", "--prompt-channel")
    assert code == 2 and "prompt_channel needs" in err and "Traceback" not in err
    averaged = [*common[:-1], str(tmp_path / "x"), "--epochs", "1", "--ema-decay", "0.9"]
    code, _, err = run(capsys, "train", *averaged)
    assert code == 0, err
    code, _, err = run(capsys, "train", *averaged[:-4], "--epochs", "2", "--resume", "--ema-decay", "0")  # 0: off
    assert code == 0, err
    assert json.loads((tmp_path / "x" / "config.json").read_text())["train"]["ema_decay"] is None
    rows = [json.loads(line) for line in (tmp_path / "x" / "metrics.jsonl").read_text().splitlines()]
    assert [r.get("ema_decay") for r in rows] == [0.9, None]


@pytest.mark.parametrize("argv, says", [
    (["--n-shot", "0"], "--n-shot must be at least 1"),
    (["--batch-size", "0"], "batch size"),
    (["--lr", "nan"], "lr must be"),
    (["--crop", "-5"], "crop must be"),
    (["--cpu-budget", "0"], "--cpu-budget"),
    (["--t-max", "0"], "t max"),
    (["--epochs", "0"], "--epochs must be at least 1"),
])
def test_training_options_that_cannot_work_exit_2_with_one_line(capsys, tmp_path, argv, says):
    root = _disc_folder(tmp_path / "data")
    code, _, err = run(capsys, "train", "--dataset", "folder", "--data", str(root), "--out", str(tmp_path / "run"),
                       "--no-progress", *argv)
    assert code == 2 and says in err and "Traceback" not in err, err
    assert len(err.strip().splitlines()) == 1, err


def test_output_paths_that_cannot_be_written_are_refused_before_the_work(capsys, tmp_path, tiny_config, blob_image):
    import tifffile

    ckpt = _tiny_checkpoint(tmp_path, tiny_config)
    image = tmp_path / "scan.tif"
    tifffile.imwrite(image, blob_image[0])
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    for output, says in ((a_file / "mask.tif", "it is a file"), (tmp_path, "is a folder"),
                         (tmp_path / "mask.xyz", "unsupported file type")):
        code, _, err = run(capsys, "predict", "--checkpoint", str(ckpt), str(image), str(output))
        assert code == 2 and says in err and "Traceback" not in err, err
    code, _, err = run(capsys, "demo", "--out", str(a_file))
    assert code == 2 and "it is a file" in err


def test_evaluate_writes_its_report_under_the_current_folder(capsys, tmp_path, tiny_config, monkeypatch):
    root = _disc_folder(tmp_path / "data")
    ckpt = _tiny_checkpoint(tmp_path, tiny_config)
    monkeypatch.chdir(tmp_path)
    code, out, err = run(capsys, "evaluate", "--checkpoint", str(ckpt), "--dataset", "folder", "--data", str(root),
                         "--split", "all")
    assert code == 0, err
    assert (tmp_path / "eval_tiny1_all" / "table.md").exists() and "eval_tiny1_all" in out


def test_evaluate_refuses_a_checkpoint_for_other_channels_and_a_missing_data_path(capsys, tmp_path, tiny_config):
    root = _disc_folder(tmp_path / "data")  # one-channel images
    rgb = _tiny_checkpoint(tmp_path, tiny_config, channels=3)
    code, _, err = run(capsys, "evaluate", "--checkpoint", str(rgb), "--dataset", "folder", "--data", str(root),
                       "--split", "all", "--out", str(tmp_path / "r"))
    assert code == 2 and "3-channel images" in err and "1-channel" in err and "Traceback" not in err
    cfg = tiny_config("lite")
    moved = save_checkpoint(tmp_path / "moved.safetensors", build_model(cfg), cfg,
                            {"data": {"dataset": "folder", "path": "../not/here"}})
    code, _, err = run(capsys, "evaluate", "--checkpoint", str(moved), "--split", "all", "--out", str(tmp_path / "r2"))
    assert code == 2 and "../not/here" in err and "--data" in err


def test_clear_cache_empties_the_cache_folder_it_names(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("PIXELDRL_CACHE", str(tmp_path))
    (tmp_path / "abc.npz").write_bytes(b"x")
    code, out, _ = run(capsys, "clear-cache")
    assert code == 0 and "removed 1" in out and str(tmp_path) in out and not (tmp_path / "abc.npz").exists()


def test_predict_progress_bar_reports_and_returns_the_result(capsys, tiny_config, blob_image):
    from napari_pixeldrl.model.inference import iter_segment
    from napari_pixeldrl.training.predict import run_with_progress

    cfg = tiny_config("lite")
    volume = np.stack([blob_image[0]] * 3)
    seg = run_with_progress(iter_segment(build_model(cfg), cfg, volume), "segmenting", enabled=True)
    assert seg.mask.shape == volume.shape
    err = capsys.readouterr().err
    assert "segmenting" in err and "3/3" in err


def test_demo_shows_progress_when_asked(capsys, tmp_path, tiny_config):
    from napari_pixeldrl.training.demo import run_demo

    ckpt = _tiny_checkpoint(tmp_path, tiny_config, 1)
    run_demo("heart", str(ckpt), tmp_path / "demo", progress=True)
    assert "segmenting the heart sample" in capsys.readouterr().err
    run_demo("heart", str(ckpt), tmp_path / "demo", progress=False)
    assert "segmenting" not in capsys.readouterr().err


def test_predict_a_folder_skips_bad_files_and_resumes(capsys, tmp_path, tiny_config, blob_image):
    import tifffile

    ckpt = _tiny_checkpoint(tmp_path, tiny_config)
    src, out = tmp_path / "scans", tmp_path / "masks"
    src.mkdir()
    tifffile.imwrite(src / "a.tif", blob_image[0])
    tifffile.imwrite(src / "b.tif", blob_image[0][::-1].copy())
    (src / "broken.tif").write_bytes(b"not a tiff")
    (src / "notes.txt").write_text("not an image")
    code, out_text, err = run(capsys, "predict", "--checkpoint", str(ckpt), str(src), str(out), "--json")
    result = json.loads(out_text)
    assert code == 2 and result["segmented"] == 2 and result["failed"] == ["broken.tif"] and result["not_images"] == 1
    assert "skipped broken.tif" in err and "Traceback" not in err
    assert tifffile.imread(out / "a.tif").shape == blob_image[0].shape
    # A second run resumes: the masks that are there are kept, not computed again.
    before = (out / "a.tif").stat().st_mtime_ns
    (out / "b.tif").unlink()
    code, out_text, _ = run(capsys, "predict", "--checkpoint", str(ckpt), str(src), str(out), "--json")
    result = json.loads(out_text)
    assert result["segmented"] == 1 and result["already_done"] == 1 and (out / "b.tif").exists()
    assert (out / "a.tif").stat().st_mtime_ns == before
    code, _, err = run(capsys, "predict", "--checkpoint", str(ckpt), str(tmp_path / "masks"), str(tmp_path / "m2"),
                       "--start-mask", str(out / "a.tif"))
    assert code == 2 and "not a folder" in err


def test_sigterm_stops_training_cleanly_and_on_record(capsys, tmp_path, monkeypatch):
    """A killed command (SIGTERM) stops before its next episode and records the stop with its
    CPU time, so a resume continues it and its budget stays counted; it exits 143 (128 +
    SIGTERM), so that a caller does not take it for a finished run."""
    import os
    import signal

    from napari_pixeldrl.training import cli_train
    from napari_pixeldrl.training.events import EpisodeEvent

    report = cli_train._report
    sent = []

    def report_and_kill(event, *args):
        report(event, *args)
        if isinstance(event, EpisodeEvent) and not sent:
            sent.append(event)
            os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(cli_train, "_report", report_and_kill)
    before = signal.getsignal(signal.SIGTERM)
    root = _disc_folder(tmp_path / "data")
    code, out, err = run(capsys, "train", "--dataset", "folder", "--data", str(root), "--epochs", "3", "--t-max", "2",
                         "--crop", "0", "--threads", "1", "--no-progress", "--preset", "lite", "--out", str(tmp_path / "run"))
    assert code == 128 + signal.SIGTERM, err
    record = json.loads((tmp_path / "run" / "commands.jsonl").read_text().splitlines()[-1])
    assert record["status"] == "ended" and record["reason"] == "cancelled" and record["epochs_done"] == 0
    assert record["cpu_minutes"] > 0
    assert signal.getsignal(signal.SIGTERM) is before  # the command's handler is gone with it


def test_train_seed_changes_the_training_not_the_split(capsys, tmp_path):
    """--seed draws the split; --train-seed only the training's randomness, so a second
    training seed fine-tunes and validates on the same patients as the first."""
    root = _disc_folder(tmp_path / "data")
    common = ["--dataset", "folder", "--data", str(root), "--t-max", "2", "--crop", "0", "--threads", "1",
              "--no-progress", "--epochs", "1"]
    code, _, err = run(capsys, "train", *common, "--out", str(tmp_path / "a"))
    assert code == 0, err
    code, _, err = run(capsys, "train", *common, "--train-seed", "7", "--out", str(tmp_path / "b"))
    assert code == 0, err
    a, b = (json.loads((tmp_path / n / "config.json").read_text())["train"] for n in "ab")
    assert (a["seed"], b["seed"]) == (0, 7) and a["data"]["seed"] == b["data"]["seed"] == 0
    first = [json.loads(x) for x in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    second = [json.loads(x) for x in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    assert first[0]["train_loss"] != second[0]["train_loss"]  # other weights, crops and actions
    code, _, err = run(capsys, "train", *common, "--train-seed", "8", "--resume", "--out", str(tmp_path / "b"))
    assert code == 2 and "--train-seed 8" in err


def test_demo_offers_every_demo_it_can_run():
    from napari_pixeldrl.training.cli import build_parser
    from napari_pixeldrl.training.demo import DEMOS, MODEL_FOR_SAMPLE

    demo = next(a for a in build_parser()._subparsers._group_actions[0].choices["demo"]._actions if a.dest == "sample")
    assert set(demo.choices) == {"all", *DEMOS}
    from napari_pixeldrl.model.checkpoint import resolve_checkpoint

    assert all(resolve_checkpoint(name).exists() for name in MODEL_FOR_SAMPLE.values())  # every demo's model is bundled
