"""Segment and Evaluate widgets in a real napari viewer (run under ``xvfb-run -a``).

A tiny random-weight model saved with save_checkpoint stands in for a trained one.
"""

import time

import numpy as np
import pytest

from _helpers import Heartbeat, require_napari_display

napari = require_napari_display()

from napari_pixeldrl import _colors as C  # noqa: E402
from napari_pixeldrl import _messages as M  # noqa: E402
from napari_pixeldrl._widget_evaluate import EvaluateWidget  # noqa: E402
from napari_pixeldrl._widget_segment import TAG, WHOLE_IMAGE, SegmentWidget  # noqa: E402
from napari_pixeldrl.model.episode import ZEROED  # noqa: E402
from napari_pixeldrl.model.checkpoint import save_checkpoint  # noqa: E402
from napari_pixeldrl.model.config import preset_config  # noqa: E402
from napari_pixeldrl.model.network import build_model  # noqa: E402

pytestmark = pytest.mark.gui


@pytest.fixture
def ckpt(tmp_path, tiny_config):
    def make(in_channels=1, config=None):
        cfg = config or tiny_config(in_channels=in_channels)
        return save_checkpoint(tmp_path / f"m{in_channels}_{cfg.preset}.safetensors", build_model(cfg), cfg)

    return make


@pytest.fixture
def errors(monkeypatch):
    """Collect the notifications the widgets raise (instead of napari's)."""
    seen = []
    import napari_pixeldrl._widget_evaluate as E
    import napari_pixeldrl._widget_segment as S

    monkeypatch.setattr(S, "_notify", lambda kind, msg: seen.append((kind, msg)))
    monkeypatch.setattr(E, "_notify", lambda kind, msg: seen.append((kind, msg)))
    return seen


def run_and_wait(qtbot, widget, timeout=60000):
    with qtbot.waitSignal(widget.finished, timeout=timeout) as blocker:
        worker = widget.run()
        assert worker is not None
    qtbot.waitUntil(lambda: widget.worker is None, timeout=5000)
    return blocker.args[0]


def make_widget(viewer, path):
    w = SegmentWidget(viewer)
    w.add_checkpoint(path)
    return w


def test_segment_volume_layers_steps_and_rerun(make_napari_viewer, qtbot, ckpt, errors):
    viewer = make_napari_viewer()
    img = np.random.default_rng(0).normal(100, 20, (3, 32, 40)).astype(np.float32)
    user = viewer.add_image(img, name="scan", scale=(2.0, 0.5, 0.5), translate=(10.0, 0.0, 5.0))
    user_labels = viewer.add_labels(np.zeros((3, 32, 40), np.uint8), name="my paint")
    w = make_widget(viewer, ckpt(1))
    w.tmax_spin.setValue(4)
    assert w.image_combo.currentText() == "scan"
    res = run_and_wait(qtbot, w)
    assert isinstance(res, M.SegmentDone), res
    roles = {layer.metadata[TAG]["role"]: layer for layer in w.own_layers()}
    assert set(roles) == {"mask", "steps", "actions", "value"}
    assert roles["mask"].data.shape == (3, 32, 40)
    assert roles["steps"].data.shape == (5, 3, 32, 40)  # m(0)..m(4): slider index t is step t
    assert roles["actions"].data.shape == (5, 3, 32, 40)
    assert roles["steps"].data[0].all() and not roles["actions"].data[0].any()
    assert set(np.unique(roles["actions"].data)) <= set(C.ACTIONS)
    assert viewer.dims.current_step[0] == 4  # shows the last step
    # our masks in their own colour, not napari's defaults of the user's labels
    np.testing.assert_allclose(roles["mask"].colormap.color_dict[1][:3], C.PREDICTION[:3])
    np.testing.assert_allclose(roles["steps"].colormap.color_dict[1][:3], C.PREDICTION[:3])
    assert "zeroed at step 1" in w.legend.text()
    assert tuple(roles["mask"].scale) == (2.0, 0.5, 0.5)
    assert tuple(roles["steps"].scale) == (1.0, 2.0, 0.5, 0.5)
    assert tuple(roles["steps"].translate) == (0.0, 10.0, 0.0, 5.0)
    assert viewer.dims.axis_labels[:2] == ("step", "slice")
    label = viewer.window._qt_viewer.dims.slider_widgets[0].axis_label  # napari's Qt widget: the name fits
    fm = label.fontMetrics()  # the room napari gives a name it sized (not elided to '...')
    assert label.width() >= fm.boundingRect("step").width() + 3 * fm.averageCharWidth()
    # the action colours: changed pixels red
    cmap = roles["actions"].colormap
    np.testing.assert_allclose(cmap.color_dict[ZEROED][:3], (1, 0, 0))
    # the widget says which mask the step slider shows, and where each slice's episode stopped
    assert roles["steps"].metadata[TAG]["steps_taken"] == [int(t) for t in res.steps_taken]  # kept with the layer
    viewer.dims.set_current_step(0, 0)
    assert w.step_info.text().endswith("the start mask m(0)")
    for z, stop in enumerate(res.steps_taken):
        viewer.dims.set_point(1, 10.0 + 2.0 * z)  # the slice's world position (scale 2, translate 10)
        viewer.dims.set_current_step(0, 4)
        expect = f"repeats m({stop})" if stop < 4 else "the mask after step 4"
        assert w.step_info.text().startswith(f"Slice {z}, t = 4 of 4: ") and expect in w.step_info.text()
    # play animates the step axis
    w.play_button.setChecked(True)
    qtbot.waitUntil(lambda: viewer.dims.current_step[0] >= 2, timeout=5000)
    w.play_button.setChecked(False)
    # a second run replaces the widget's layers, leaves the user's alone
    n_layers = len(viewer.layers)
    res = run_and_wait(qtbot, w)
    assert isinstance(res, M.SegmentDone)
    assert len(viewer.layers) == n_layers
    assert user in viewer.layers and user_labels in viewer.layers
    assert len(w.own_layers()) == 4
    assert not errors


def test_segment_every_image_layer_of_the_same_shape(make_napari_viewer, qtbot, ckpt, errors):
    viewer = make_napari_viewer()
    rng = np.random.default_rng(2)
    for name in ("a", "b"):
        viewer.add_image(rng.normal(100, 20, (2, 32, 32)).astype(np.float32), name=name)
    viewer.add_image(rng.normal(100, 20, (2, 24, 24)).astype(np.float32), name="other shape")
    w = make_widget(viewer, ckpt(1))
    w.tmax_spin.setValue(2)
    w.image_combo.setCurrentText("a")
    assert w.same_shape_images("a") == ["a", "b"]
    w.all_check.setChecked(True)
    results = []
    w.finished.connect(results.append)
    w.run()
    qtbot.waitUntil(lambda: len(results) == 2 and w.worker is None and not w._busy, timeout=60000)
    assert all(isinstance(r, M.SegmentDone) for r in results), results
    images = sorted({layer.metadata[TAG]["image"] for layer in w.own_layers()})
    assert images == ["a", "b"] and len(w.own_layers()) == 8  # four result layers each
    assert w.layer_for("mask", "a") is not w.layer_for("mask", "b")
    assert w.run_button.isEnabled() and not errors


def test_defaults_that_work_for_the_image(make_napari_viewer, ckpt):
    """An RGB image gets a 3-channel model, a gray one a 1-channel model, until the user picks."""
    from napari_pixeldrl._registry import bundled_channels

    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((32, 32, 3), np.uint8), name="photo", rgb=True)
    w = SegmentWidget(viewer)
    assert bundled_channels()[w.model_combo.currentText()] == 3
    viewer.add_image(np.zeros((32, 32), np.float32), name="gray")
    w.image_combo.setCurrentText("gray")
    assert bundled_channels()[w.model_combo.currentText()] == 1
    w._model_activated(w.model_combo.currentIndex())  # the user picks: kept from now on
    picked = w.model_combo.currentText()
    w.image_combo.setCurrentText("photo")
    assert w.model_combo.currentText() == picked


def test_segment_from_a_box_the_user_drew(make_napari_viewer, qtbot, ckpt, errors):
    viewer = make_napari_viewer()
    viewer.add_image(np.random.default_rng(1).normal(100, 20, (32, 40)).astype(np.float32), name="scan")
    box = viewer.add_shapes([np.array([[4, 6], [4, 20], [18, 20], [18, 6]])], shape_type="rectangle", name="box")
    w = make_widget(viewer, ckpt(1))
    assert w.start_combo.currentText() == WHOLE_IMAGE
    w.start_combo.setCurrentText("box")
    res = run_and_wait(qtbot, w)
    assert isinstance(res, M.SegmentDone), res
    inside = np.zeros((32, 40), bool)
    inside[4:19, 6:21] = True
    assert not (res.steps.astype(bool) & ~inside).any()  # every step stays inside the box
    assert (res.steps[0].astype(bool) == inside).all()  # m(0) is the box
    assert res.steps[1][inside].any()
    assert not (res.actions[1][~inside]).any()  # outside the box no agent acts
    box.data = []
    res = run_and_wait(qtbot, w)
    assert isinstance(res, M.Failed) and "start layer is empty" in res.message
    assert errors == [("error", res.message)]  # told to the user, once


def test_the_keep_threshold_reaches_the_episode(make_napari_viewer, qtbot, ckpt, errors):
    """At 0 the spin box says the model's own threshold is used; a higher one keeps fewer
    pixels at step 1 (the same state m(0), a stricter cut)."""
    viewer = make_napari_viewer()
    viewer.add_image(np.random.default_rng(2).normal(100, 20, (32, 40)).astype(np.float32), name="scan")
    w = make_widget(viewer, ckpt(1))
    assert w.threshold_spin.value() == 0 and w.threshold_spin.text() == "model's choice"
    model_own = run_and_wait(qtbot, w)
    w.threshold_spin.setValue(0.95)
    strict = run_and_wait(qtbot, w)
    assert isinstance(strict, M.SegmentDone), strict
    assert (strict.steps[1] <= model_own.steps[1]).all() and strict.steps[1].sum() < model_own.steps[1].sum()


def test_the_default_model_for_a_grey_image_segments_whole_slices(make_napari_viewer, errors):
    """Of the bundled models that take one channel, the widget offers one that needs no start
    layer (heart-box sorts before heart, and would refuse to Run from the whole image)."""
    from napari_pixeldrl.model.checkpoint import bundled_models

    viewer = make_napari_viewer()
    viewer.add_image(np.random.default_rng(1).normal(100, 20, (32, 40)).astype(np.float32), name="scan")
    w = SegmentWidget(viewer)
    assert "heart-box" in bundled_models()
    chosen = w.model_combo.currentText()
    assert w._model_channels(chosen) == 1 and w.box_side(chosen) == 0, chosen
    assert w.window_combo.isEnabled() and "Start from" not in w.status.text()


def test_a_box_model_asks_for_a_start_layer_before_it_runs(make_napari_viewer, qtbot, ckpt, tiny_config, tmp_path,
                                                           errors):
    """Chosen, a box model says at once that it needs a start layer, and keeps the window
    choice (which does nothing for it) out of reach; Run without one is refused, not started."""
    viewer = make_napari_viewer()
    viewer.add_image(np.random.default_rng(1).normal(100, 20, (32, 40)).astype(np.float32), name="scan")
    viewer.add_shapes([np.array([[4, 6], [4, 20], [18, 20], [18, 6]])], shape_type="rectangle", name="box")
    w = make_widget(viewer, ckpt(1))
    plain = w.model_combo.currentText()
    assert w.window_combo.isEnabled() and "Start from" not in w.status.text()
    w.window_combo.setCurrentIndex(2)
    cfg = tiny_config(box_zoom=16)
    boxed = w.add_checkpoint(save_checkpoint(tmp_path / "boxed.safetensors", build_model(cfg), cfg))
    assert w.model_combo.currentText() == boxed
    assert "segments inside a box" in w.status.text() and "Start from" in w.status.text()
    assert not w.window_combo.isEnabled() and w.window_combo.currentData() == "auto"
    w.model_combo.setCurrentText(plain)
    assert w.window_combo.isEnabled() and w.status.text() == ""
    w.model_combo.setCurrentText(boxed)
    assert w.run() is None and w.worker is None
    assert errors and "segments inside a box" in errors[-1][1]
    w.start_combo.setCurrentText("box")
    res = run_and_wait(qtbot, w)
    assert isinstance(res, M.SegmentDone), res


def test_segment_rgb_2d_with_rgb_model(make_napari_viewer, qtbot, ckpt, errors):
    viewer = make_napari_viewer()
    rgb = np.random.default_rng(1).integers(0, 255, (32, 32, 3)).astype(np.uint8)
    viewer.add_image(rgb, name="photo", rgb=True)
    w = make_widget(viewer, ckpt(3))
    w.tmax_spin.setValue(2)
    res = run_and_wait(qtbot, w)
    assert isinstance(res, M.SegmentDone)
    assert w.layer_for("mask").data.shape == (32, 32)
    assert w.layer_for("steps").data.shape == (3, 32, 32)
    assert viewer.dims.axis_labels[0] == "step"


def test_segment_with_a_bioimageio_package_picked_in_the_file_dialog(make_napari_viewer, qtbot, ckpt, tmp_path,
                                                                     errors, monkeypatch):
    """*Load checkpoint file...* offers .zip files; a package segments as its checkpoint does."""
    import napari_pixeldrl._widget_segment as S
    from _helpers import make_package

    viewer = make_napari_viewer()
    viewer.add_image(np.random.default_rng(2).normal(100, 20, (32, 40)).astype(np.float32), name="scan")
    package = make_package(tmp_path / "shared.zip", ckpt(1))
    asked = []

    def pick(parent, title, folder, filters):
        asked.append(filters)
        return str(package), filters

    monkeypatch.setattr(S.QFileDialog, "getOpenFileName", pick)
    w = SegmentWidget(viewer)
    w._model_activated(w.model_combo.findText(S.LOAD_ITEM))
    assert "*.zip" in asked[0] and w.model_combo.currentText() == "shared.zip"
    w.tmax_spin.setValue(2)
    res = run_and_wait(qtbot, w)
    assert isinstance(res, M.SegmentDone), errors
    assert w.layer_for("mask").data.shape == (32, 40)


@pytest.mark.parametrize(
    "data,rgb,channels,expect",
    [
        (np.zeros((32, 32, 3), np.uint8), True, 1, "RGB"),
        (np.ones((32, 32), np.float32), False, 3, "gray"),
        (np.ones((2, 2, 32, 32), np.float32), False, 1, "4 dimensions"),
    ],
)
def test_segment_bad_input_notifies(make_napari_viewer, qtbot, ckpt, errors, data, rgb, channels, expect):
    viewer = make_napari_viewer()
    viewer.add_image(data, name="bad", rgb=rgb)
    w = make_widget(viewer, ckpt(channels))
    res = run_and_wait(qtbot, w)
    assert isinstance(res, M.Failed)
    assert errors and errors[-1][0] == "error" and expect in errors[-1][1]
    assert not w.own_layers() and w.run_button.isEnabled()


def test_segment_foreign_checkpoint_notifies(make_napari_viewer, qtbot, tmp_path, errors):
    viewer = make_napari_viewer()
    viewer.add_image(np.random.default_rng(0).normal(size=(32, 32)).astype(np.float32), name="img")
    bad = tmp_path / "other.safetensors"
    bad.write_bytes(b"PK\x03\x04 a zip, maybe a torch.save file")
    w = make_widget(viewer, bad)
    res = run_and_wait(qtbot, w)
    assert isinstance(res, M.Failed) and res.kind == "checkpoint"
    assert "saved by napari-pixeldrl" in errors[-1][1]


def test_segment_without_image_or_model_warns(make_napari_viewer, errors, ckpt, monkeypatch):
    import napari_pixeldrl.model.checkpoint as C

    monkeypatch.setattr(C, "bundled_models", lambda: {})  # as installed without weights
    viewer = make_napari_viewer()
    w = SegmentWidget(viewer)
    assert w.run() is None and errors[-1][0] == "warning"
    viewer.add_image(np.zeros((16, 16), np.float32))
    assert w.run() is None and "checkpoint" in errors[-1][1]


def test_bundled_models_are_listed_and_segment_the_sample(make_napari_viewer, qtbot, errors):
    from napari_pixeldrl.sample_data import load_heart_sample

    viewer = make_napari_viewer()
    sample = load_heart_sample()
    viewer.add_image(sample.image[:2], name="heart")
    w = SegmentWidget(viewer)
    assert {"lgg", "heart"} <= set(w.models())
    w.model_combo.setCurrentText("heart")
    w.tmax_spin.setValue(3)
    with qtbot.waitSignal(w.finished, timeout=60000) as blocker:
        w.run()
    assert isinstance(blocker.args[0], M.SegmentDone), errors
    assert w.layer_for("mask").data.shape == sample.image[:2].shape


def test_a_job_starts_with_the_objects_alive_frozen(make_napari_viewer, qtbot, ckpt, errors):
    """Every job starts through start_worker, which moves the objects alive then out of the
    collector's reach (gc.freeze): a full collection in the worker would otherwise walk
    napari's ~600,000 objects holding the GIL, a 0.4-0.6 s stall of the window."""
    import gc

    viewer = make_napari_viewer()
    viewer.add_image(np.random.default_rng(0).normal(size=(24, 24)).astype(np.float32), name="img")
    w = make_widget(viewer, ckpt(1))
    gc.unfreeze()
    assert gc.get_freeze_count() == 0
    assert isinstance(run_and_wait(qtbot, w), M.SegmentDone)
    assert gc.get_freeze_count() > 10000


def test_segment_cancel(make_napari_viewer, qtbot, ckpt, errors):
    viewer = make_napari_viewer()
    viewer.add_image(np.random.default_rng(0).normal(size=(48, 32, 32)).astype(np.float32), name="vol")
    w = make_widget(viewer, ckpt(1))
    with qtbot.waitSignal(w.finished, timeout=60000) as blocker:
        w.run()
        w.cancel()  # the job checks the flag before every batch of 4 slices
    assert isinstance(blocker.args[0], M.Cancelled)
    assert not w.own_layers()
    qtbot.waitUntil(lambda: w.run_button.isEnabled(), timeout=5000)
    assert w.status.text() == "Cancelled."


def test_gui_heartbeat_during_segmentation(make_napari_viewer, qtbot, tmp_path, errors):
    """The GUI thread keeps ticking (< 200 ms gaps) while a ~2 s segmentation runs.

    Measured from the Run click to the worker's ``returned`` signal. Showing the result
    afterwards (four layers, one per event-loop turn) is printed, not asserted: the
    first Labels layer of a session costs napari ~0.4 s of imports and visuals.
    """
    viewer = make_napari_viewer()
    viewer.add_image(np.random.default_rng(0).normal(size=(16, 192, 192)).astype(np.float32), name="img")
    cfg = preset_config("lite")
    path = save_checkpoint(tmp_path / "lite.safetensors", build_model(cfg), cfg)
    w = make_widget(viewer, path)
    w.tmax_spin.setValue(10)
    returned = []
    heart = Heartbeat(qtbot)
    t0 = time.perf_counter()
    with qtbot.waitSignal(w.finished, timeout=120000) as blocker:
        worker = w.run()
        worker.returned.connect(lambda _: returned.append(time.perf_counter()))
    t2 = time.perf_counter()
    assert isinstance(blocker.args[0], M.SegmentDone)
    t1 = returned[0]
    gaps, shown = heart.gaps(t0, t1), heart.gaps(t1, t2)
    print(f"{heart.describe(gaps, f'segmentation {t1 - t0:.2f} s')}; {heart.describe(shown, f'showing the layers {t2 - t1:.2f} s')}")
    assert t1 - t0 > 0.5, "the model was too fast to measure anything"
    heart.assert_no_stall(qtbot, t0, t1)
    heart.stop()


def test_evaluate_widget_table_and_copy(make_napari_viewer, qtbot, errors):
    viewer = make_napari_viewer()
    gt = np.zeros((2, 24, 24), np.uint8)
    gt[:, 5:15, 5:15] = 1
    pred = gt.copy()
    pred[1] = 0
    viewer.add_labels(pred, name="pred", scale=(3.0, 1.0, 1.0))
    viewer.add_labels(gt, name="gt", scale=(3.0, 1.0, 1.0))
    w = EvaluateWidget(viewer)
    assert (w.pred_combo.currentText(), w.gt_combo.currentText()) == ("pred", "gt")
    with qtbot.waitSignal(w.finished, timeout=30000):
        w.run()
    assert w.table.rowCount() == 4  # 2 slices, mean of slices, volume
    assert w.table.item(0, 0).text() == "1.0000"
    assert float(w.table.item(1, 0).text()) < 0.01
    text = w.copy()
    from qtpy.QtWidgets import QApplication

    assert QApplication.clipboard().text() == text
    lines = text.splitlines()
    assert lines[0].split("\t") == ["row", "DICE", "PPV", "SEN", "IoU", "BIoU", "HD95"]
    assert lines[1].split("\t")[0] == "slice 0" and len(lines) == 5


def test_evaluate_defaults_to_our_mask_against_the_experts_and_draws_agreement(make_napari_viewer, qtbot, errors):
    viewer = make_napari_viewer()
    gt = np.zeros((24, 24), np.uint8)
    gt[4:14, 4:14] = 1
    pred = np.zeros_like(gt)
    pred[6:16, 4:14] = 1
    viewer.add_labels(gt, name="expert")
    viewer.add_labels(np.stack([pred] * 3), name="scan steps", metadata={TAG: {"role": "steps"}})
    viewer.add_labels(pred, name="scan mask", metadata={TAG: {"role": "mask"}})
    w = EvaluateWidget(viewer)
    assert (w.pred_combo.currentText(), w.gt_combo.currentText()) == ("scan mask", "expert")
    assert "scan steps" not in [w.gt_combo.itemText(i) for i in range(w.gt_combo.count())]
    with qtbot.waitSignal(w.finished, timeout=30000):
        w.run()
    agreement = [layer for layer in viewer.layers if layer.name.startswith("agreement")]
    assert len(agreement) == 1
    a = agreement[0].data
    assert (a == C.AGREE).sum() == 80 and (a == C.MISSED).sum() == 20 and (a == C.EXTRA).sum() == 20
    np.testing.assert_allclose(agreement[0].colormap.color_dict[C.MISSED][:3], C.AGREEMENT[C.MISSED][:3])
    with qtbot.waitSignal(w.finished, timeout=30000):  # a second evaluation replaces it
        w.run()
    assert len([layer for layer in viewer.layers if layer.name.startswith("agreement")]) == 1
    assert not errors


def test_evaluate_widget_object_label_for_multi_label_layers(make_napari_viewer, qtbot, errors):
    viewer = make_napari_viewer()
    gt = np.zeros((24, 24), np.uint8)
    gt[2:10, 2:10] = 1
    gt[14:20, 14:20] = 2
    viewer.add_labels((gt == 2).astype(np.uint8), name="pred")
    viewer.add_labels(gt, name="gt")
    w = EvaluateWidget(viewer)
    with qtbot.waitSignal(w.finished, timeout=30000) as blocker:
        w.run()
    assert isinstance(blocker.args[0], M.Failed) and "several object labels" in errors[-1][1]
    w.label_spin.setValue(2)
    with qtbot.waitSignal(w.finished, timeout=30000):
        w.run()
    assert w.table.item(0, 0).text() == "1.0000"


def test_evaluate_shape_mismatch_notifies(make_napari_viewer, qtbot, errors):
    viewer = make_napari_viewer()
    viewer.add_labels(np.zeros((2, 24, 24), np.uint8), name="pred")
    viewer.add_labels(np.zeros((2, 20, 24), np.uint8), name="gt")
    w = EvaluateWidget(viewer)
    with qtbot.waitSignal(w.finished, timeout=30000) as blocker:
        w.run()
    assert isinstance(blocker.args[0], M.Failed)
    assert "same image" in errors[-1][1]


def test_sample_and_reader_through_napari(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer()
    layers = viewer.open_sample("napari-pixeldrl", "heart")
    image = viewer.layers["Heart MRI"]
    assert image.data.shape == (8, 256, 256)
    assert image.metadata["affine"].shape == (4, 4)
    labels = viewer.layers["Left atrium (expert)"]
    out = tmp_path / "atrium.nii.gz"
    labels.save(str(out), plugin="napari-pixeldrl")
    import nibabel as nib

    np.testing.assert_allclose(nib.load(out).affine, image.metadata["affine"])
    opened = viewer.open(str(out), plugin="napari-pixeldrl")
    assert opened[0].data.shape == (8, 256, 256)
    assert tuple(opened[0].scale) == pytest.approx(tuple(image.scale))
    assert layers is not None


def test_the_three_docks_fit_a_small_screen(make_napari_viewer):
    """Docked together, the widgets scroll rather than ask for more height than a 1280x800
    screen has (the Train widget alone needed 677 px; all three pushed the window to 1297)."""
    from napari_pixeldrl._widget_train import TrainWidget

    viewer = make_napari_viewer()
    widgets = [SegmentWidget(viewer), EvaluateWidget(viewer), TrainWidget(viewer)]
    needed = sum(w.minimumSizeHint().height() for w in widgets)
    assert needed < 800 - 300, [w.minimumSizeHint().height() for w in widgets]  # room left for napari's own docks
    status = widgets[0].status
    h = status.height()
    status.setText("a long message " * 40)
    assert status.height() == h and "a long message" in status.toolTip()  # the layout does not jump


def test_docked_widgets_are_not_cut_at_the_right(make_napari_viewer, qtbot):
    """Docked in a 1280x800 window, with a long layer name in their lists, every widget's
    content fits its dock's width (a scroll area that only scrolls vertically once cut the
    Segment widget's right edge: the dock took its width before the lists were filled)."""
    from qtpy.QtWidgets import QScrollArea

    from napari_pixeldrl._widget_train import TrainWidget

    viewer = make_napari_viewer(show=True)
    viewer.window.resize(1280, 800)
    long_name = "sub-0001_ses-baseline_acq-highres_T1w_space-MNI152NLin2009cAsym_desc-preproc"
    viewer.add_image(np.zeros((2, 32, 32), np.float32), name=long_name)
    viewer.add_labels(np.zeros((2, 32, 32), np.uint8), name=long_name + " labels")
    for widget in (SegmentWidget(viewer), EvaluateWidget(viewer), TrainWidget(viewer)):
        viewer.window.add_dock_widget(widget)
        scroll = widget.findChild(QScrollArea)
        qtbot.waitUntil(lambda s=scroll: s.widget().width() <= s.viewport().width(), timeout=5000)
