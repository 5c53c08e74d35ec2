"""Train widget in a real napari viewer (run under ``xvfb-run -a``): tiny model, 1 epoch."""

import time

import numpy as np
import pytest

from _helpers import Heartbeat, require_napari_display

from _synthetic import TINY

napari = require_napari_display()

from napari_pixeldrl import _registry  # noqa: E402
from napari_pixeldrl import _messages as M  # noqa: E402
from napari_pixeldrl._widget_segment import SegmentWidget  # noqa: E402
from napari_pixeldrl._widget_train import FRESH, SEGMENT, TrainWidget  # noqa: E402
from napari_pixeldrl.model.checkpoint import LoadedModel, load_checkpoint, save_checkpoint  # noqa: E402
from napari_pixeldrl.model.network import build_model  # noqa: E402
from napari_pixeldrl.training.run_folder import BEST, LAST  # noqa: E402
from napari_pixeldrl.training.train_config import TrainConfig  # noqa: E402

pytestmark = pytest.mark.gui


@pytest.fixture
def notes(monkeypatch):
    seen = []
    import napari_pixeldrl._widget_segment as S
    import napari_pixeldrl._widget_train as TW

    monkeypatch.setattr(TW, "_notify", lambda kind, msg: seen.append((kind, msg)))
    monkeypatch.setattr(S, "_notify", lambda kind, msg: seen.append((kind, msg)))
    monkeypatch.setenv("PIXELDRL_NO_AUTODOCK", "1")
    return seen


def disc_volume(z=4, size=64, painted=(0, 1, 3)):
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:size, :size]
    image = np.zeros((z, size, size), np.float32)
    labels = np.zeros((z, size, size), np.uint8)
    for i in range(z):
        disc = (yy - 30) ** 2 + (xx - 32 - i) ** 2 < (11 + i) ** 2
        image[i] = rng.normal(40, 5, (size, size)) + 120 * disc
        if i in painted:
            labels[i][disc] = 1
    return image, labels


def tiny(widget, out, epochs=1):
    widget.base_config = TrainConfig(model_overrides=dict(TINY), batch_size=2, crop=None, augment=False, t_max=2,
                                     device="cpu", progress=False, threads=1)
    widget.epochs_spin.setValue(epochs)
    widget.device_combo.setCurrentText("cpu")
    widget.out_edit.setText(str(out))
    widget.start_combo.setCurrentText(FRESH)


def train_and_wait(qtbot, w, timeout=60000, cancel=False):
    with qtbot.waitSignal(w.finished, timeout=timeout) as blocker:
        worker = w.run()
        assert worker is not None, w.status.text()
        if cancel:
            w.cancel()
    qtbot.waitUntil(lambda: w.worker is None, timeout=10000)
    return blocker.args[0]


def test_train_painted_slices_then_segment(make_napari_viewer, qtbot, tmp_path, notes):
    viewer = make_napari_viewer()
    image, labels = disc_volume()
    viewer.add_image(image, name="vol")
    viewer.add_labels(labels, name="paint")
    seg = SegmentWidget(viewer)
    w = TrainWidget(viewer)
    assert (w.image_combo.currentText(), w.labels_combo.currentText()) == ("vol", "paint")
    tiny(w, tmp_path / "run")
    res = train_and_wait(qtbot, w)
    assert isinstance(res, M.TrainDone), res
    assert res.reason == "done" and res.n_train == 2 and res.n_val == 1
    assert (tmp_path / "run" / BEST).exists() and (tmp_path / "run" / LAST).exists()
    assert w.progress.value() == w.progress.maximum()
    assert len(w.canvas.history["loss"]) >= 1 and w.canvas.history["val"]  # the curve got points
    # the trained model is listed (and selected) in the Segment widget, and segments
    name = w.model_name
    assert seg.model_combo.currentText() == name and isinstance(seg.models()[name], LoadedModel)
    seg.tmax_spin.setValue(2)
    with qtbot.waitSignal(seg.finished, timeout=60000) as blocker:
        seg.run()
    assert isinstance(blocker.args[0], M.SegmentDone)
    assert seg.layer_for("mask").data.shape == image.shape
    # a Segment widget opened later lists it too; the Train widget offers it as a start
    assert name in SegmentWidget(viewer).models()
    w.refresh_starts()
    assert w.start_combo.findText(SEGMENT + name) >= 0
    # Save model... writes a loadable checkpoint
    saved = w.save_model(tmp_path / "mine")
    assert saved.name == "mine.safetensors" and load_checkpoint(saved).config == res.loaded.config
    assert not [n for n in notes if n[0] == "error"]


def test_finetune_from_segment_model_and_cancel(make_napari_viewer, qtbot, tmp_path, notes, tiny_config):
    viewer = make_napari_viewer()
    image, labels = disc_volume()
    viewer.add_image(image, name="vol")
    viewer.add_labels(labels, name="paint")
    seg = SegmentWidget(viewer)
    cfg = tiny_config()
    seg.add_checkpoint(save_checkpoint(tmp_path / "start.safetensors", build_model(cfg), cfg))
    w = TrainWidget(viewer)
    tiny(w, tmp_path / "run", epochs=50)
    w.refresh_starts()
    w.start_combo.setCurrentText(SEGMENT + "start.safetensors")
    res = train_and_wait(qtbot, w, cancel=True)
    assert isinstance(res, M.TrainDone) and res.reason == "cancelled" and res.epochs_done < 50
    assert res.best_checkpoint.exists()
    assert w.model_name in seg.models() and w.train_button.isEnabled()
    assert notes and notes[-1][0] == "info" and "cancelled" in notes[-1][1]


def test_train_defaults_progress_and_names(make_napari_viewer, qtbot, tmp_path, notes):
    """The newest painted layer and a matching bundled start by default; our result layers are
    never offered; a time budget drives the progress bar; the model is named for what it is."""
    from napari_pixeldrl._registry import TAG, bundled_channels
    from napari_pixeldrl._widget_train import BUNDLED, model_label

    viewer = make_napari_viewer()
    image, labels = disc_volume()
    viewer.add_image(image, name="vol")
    viewer.add_labels(labels, name="expert")
    viewer.add_labels(labels, name="vol mask", metadata={TAG: {"role": "mask"}})
    viewer.add_labels(labels, name="paint")
    w = TrainWidget(viewer)
    assert w.labels_combo.currentText() == "paint"
    assert "vol mask" not in [w.labels_combo.itemText(i) for i in range(w.labels_combo.count())]
    start = w.start_combo.currentText()
    assert start.startswith(BUNDLED) and bundled_channels()[start.removeprefix(BUNDLED)] == 1
    w._budget_min = 1.0
    w._on_yielded(M.TrainStarted(3, 1, "", 50, 2, tmp_path))
    w._show_progress(1, 30.0)  # 1 of 50 epochs, but half the one-minute budget
    assert w.progress.value() == 500
    done = M.TrainDone(type("R", (), {"best_dice": 0.9123, "epochs_done": 3, "reason": "cancelled"})(), None, 3, 1)
    assert model_label(BUNDLED + "heart", "paint", done) == "heart + paint: 3 ep, val DICE 0.912 (cancelled)"


def test_finetune_keeps_the_starting_models_loss_options(make_napari_viewer, tmp_path, tiny_config):
    viewer = make_napari_viewer()
    image, labels = disc_volume()
    viewer.add_image(image, name="vol")
    viewer.add_labels(labels, name="paint")
    cfg = tiny_config()
    trained = {"balance_power": 0.5, "supervised_dice": True, "supervised_weight": 3.0, "lr": 0.5}
    start = save_checkpoint(tmp_path / "start.safetensors", build_model(cfg), cfg, {"train": trained})
    w = TrainWidget(viewer)
    tiny(w, tmp_path / "run")
    w.set_checkpoint(start)
    job = w.prepare()["config"]
    assert (job.balance_power, job.supervised_dice, job.supervised_weight) == (0.5, True, 3.0)
    assert job.lr != 0.5  # only loss options carry over, not the optimiser's


def test_the_jitter_boxes_keep_the_start_models_augmentation_or_set_their_own(make_napari_viewer, tmp_path, notes,
                                                                             tiny_config):
    """At their minimum the zoom and gamma boxes leave the start model's augmentation (a fresh
    model: off); a value sets it; a box model's zoom is refused before any worker starts."""
    viewer = make_napari_viewer()
    image, labels = disc_volume()
    viewer.add_image(image, name="vol")
    viewer.add_labels(labels, name="paint")
    w = TrainWidget(viewer)
    tiny(w, tmp_path / "run")
    w.base_config.augment = True
    fresh = w.prepare()["config"]
    assert (fresh.scale_jitter, fresh.gamma_jitter) == (0.0, 0.0)
    assert w.zoom_spin.text() == "as the start model"
    cfg = tiny_config()
    start = save_checkpoint(tmp_path / "jittered.safetensors", build_model(cfg), cfg,
                            {"train": {**TrainConfig().to_dict(), "scale_jitter": 0.2, "gamma_jitter": 0.4}})
    w.set_checkpoint(start)
    kept = w.prepare()["config"]
    assert (kept.scale_jitter, kept.gamma_jitter) == (0.2, 0.4)
    w.zoom_spin.setValue(0.0)
    w.gamma_spin.setValue(0.3)
    mine = w.prepare()["config"]
    assert (mine.scale_jitter, mine.gamma_jitter) == (0.0, 0.3)
    boxed = tiny_config(box_zoom=64)
    w.set_checkpoint(save_checkpoint(tmp_path / "box.safetensors", build_model(boxed), boxed))
    w.zoom_spin.setValue(0.2)
    w.out_edit.setText(str(tmp_path / "box-run"))
    assert w.run() is None and w.worker is None and "box model" in notes[-1][1]
    assert not (tmp_path / "box-run").exists()


def test_nothing_painted_or_bad_input_notifies_without_worker(make_napari_viewer, qtbot, tmp_path, notes, tiny_config):
    viewer = make_napari_viewer()
    image, labels = disc_volume()
    viewer.add_image(image, name="vol")
    viewer.add_labels(np.zeros_like(labels), name="empty")
    w = TrainWidget(viewer)
    tiny(w, tmp_path / "run")
    assert w.run() is None and w.worker is None
    assert notes[-1][0] == "warning" and "nothing is painted" in notes[-1][1]
    # labels of another shape
    viewer.add_labels(labels[:, :32], name="small")
    w.labels_combo.setCurrentText("small")
    assert w.run() is None and "has shape" in notes[-1][1]
    # an RGB start for a gray image
    w.labels_combo.setCurrentText("empty")
    viewer.layers["empty"].data = labels
    cfg = tiny_config(in_channels=3)
    w.set_checkpoint(save_checkpoint(tmp_path / "rgb.safetensors", build_model(cfg), cfg))
    assert w.run() is None and "image is gray" in notes[-1][1]
    # a foreign checkpoint
    bad = tmp_path / "foreign.safetensors"
    bad.write_bytes(b"PK\x03\x04 zip")
    w.set_checkpoint(bad)
    assert w.run() is None and notes[-1][0] == "error" and "saved by napari-pixeldrl" in notes[-1][1]
    assert w.worker is None and not (tmp_path / "run").exists()


def test_docked_from_the_plugin_opens_segment_with_the_model(make_napari_viewer, qtbot, tmp_path, notes, monkeypatch):
    """Through napari's plugin menu entry; with no Segment widget open, training docks one listing the model."""
    monkeypatch.delenv("PIXELDRL_NO_AUTODOCK")
    viewer = make_napari_viewer()
    image, labels = disc_volume(painted=(2,))
    viewer.add_image(image, name="vol")
    viewer.add_labels(labels, name="paint")
    _, w = viewer.window.add_plugin_dock_widget("napari-pixeldrl", "Train / fine-tune")
    assert isinstance(w, TrainWidget)
    tiny(w, tmp_path / "run")
    res = train_and_wait(qtbot, w)
    assert isinstance(res, M.TrainDone) and res.n_train == res.n_val == 1 and "itself" in res.note
    segs = _registry.segment_widgets(viewer)
    assert len(segs) == 1 and segs[0].model_combo.currentText() == w.model_name


def test_gui_heartbeat_during_training(make_napari_viewer, qtbot, tmp_path, notes):
    """The GUI thread keeps ticking (< 200 ms gaps) from the Train click to the end of a ~3 s run.

    This caught a 0.35 s stall when training started: ``torch.optim.Adam`` imports
    ``torch._dynamo`` lazily, with the GIL held, in the worker thread; the widget now
    preloads it (``_train_job.preload_training_stack``).
    """
    viewer = make_napari_viewer()
    image, labels = disc_volume(z=5, size=96, painted=(0, 1, 2, 3, 4))
    viewer.add_image(image, name="vol")
    viewer.add_labels(labels, name="paint")
    w = TrainWidget(viewer)
    tiny(w, tmp_path / "run", epochs=4)
    # The lite preset's real network (not TINY), so each episode takes measurable time.
    w.base_config = TrainConfig(batch_size=2, crop=None, augment=False, t_max=3, device="cpu", progress=False, threads=1)
    returned = []
    w.finished.connect(lambda _: returned.append(time.perf_counter()))
    heart = Heartbeat(qtbot)
    t0 = time.perf_counter()
    with qtbot.waitSignal(w.finished, timeout=180000) as blocker:
        assert w.run() is not None, w.status.text()
    assert isinstance(blocker.args[0], M.TrainDone), blocker.args[0]
    gaps = heart.gaps(t0, returned[0])
    print(heart.describe(gaps, f"training {returned[0] - t0:.2f} s"))
    assert returned[0] - t0 > 1.0, "the training was too short to measure anything"
    heart.assert_no_stall(qtbot, t0, returned[0])
    heart.stop()


def test_live_curves_show_the_points_and_fit_the_epoch_axis(qtbot):
    """The three curves hold every point fed (a NaN loss left out rather than blanking the
    plot), the epoch axis spans the run and grows, with headroom, past it, and the loss
    axis covers the losses."""
    from napari_pixeldrl._live_curves import LiveCurves

    c = LiveCurves()
    qtbot.addWidget(c)
    c.resize(350, 420)
    c.show()
    c.reset(epochs=5)
    assert c.x_range() == pytest.approx((0, 5.5))
    rng = np.random.default_rng(0)
    for i in range(200):  # 5 epochs of 40 episodes: a noisy falling loss, a rising reward
        c.add_episode(i / 40, 300 * np.exp(-i / 60) + rng.normal(0, 10), 0.2 + i / 400 + rng.normal(0, 0.02))
        if (i + 1) % 40 == 0:
            c.add_validation((i + 1) // 40, 0.1 * (i + 1) / 40)
        if i % 10 == 0:
            c.redraw()
    c.add_episode(5.0, float("nan"), 0.7)
    c.redraw()
    assert not c.dirty
    xs, ys = c.lines[0].getData()
    assert len(xs) == 200 and np.isfinite(ys).all()
    assert list(c.lines[2].getData()[1]) == pytest.approx([0.1, 0.2, 0.3, 0.4, 0.5])
    qtbot.waitUntil(lambda: c.y_range(0)[1] >= max(c.history["loss"][:-1]), timeout=2000)
    lo, hi = c.y_range(0)
    assert lo <= min(ys) and max(ys) <= hi
    assert c.y_range(2) == pytest.approx((0, 1))
    c.add_episode(6.2, 1.0, 0.7)
    c.redraw()
    assert c.x_range()[1] > 6.2  # grown past the run's expected end
    c.set_epochs(3)
    assert c.x_range() == pytest.approx((0, 3.5))
    # The linked epoch axes line up on screen: an epoch sits at the same x in all three plots,
    # although the loss's tick labels ("300") are wider than the DICE's ("0.5").
    qtbot.wait(300)  # the layout places the axes when Qt's events run
    assert len({round(p.getViewBox().sceneBoundingRect().left()) for p in c.plots}) == 1
