"""Screenshots of the plugin at work: the LGG sample segmented with its steps layer shown,
then (``--all``) the Evaluate widget with its agreement layer and the Train widget mid-run.

    xvfb-run -a python tools/screenshot.py [--checkpoint lgg|model.safetensors] [--out docs/screenshot.png] [--all]

``--all`` also writes ``<out>-evaluate.png`` and ``<out>-train.png`` beside ``--out``, so that
a change to any of the three views can be looked at.

Without ``--checkpoint`` a random-weight 3-channel ``lite``
model is saved to a temporary folder and used: the screenshot then shows the GUI, not a
meaningful segmentation, and the window title says so.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path)
    parser.add_argument("--out", type=Path, default=Path("docs/screenshot.png"))
    parser.add_argument("--t-max", type=int, default=10)
    parser.add_argument("--step", type=int, default=None, help="step to show (default: the middle one)")
    parser.add_argument("--all", action="store_true", help="also the Evaluate widget and the Train widget mid-run")
    args = parser.parse_args()

    import napari
    from qtpy.QtWidgets import QApplication

    checkpoint, note = args.checkpoint, ""
    if checkpoint is not None and not checkpoint.exists():
        from napari_pixeldrl.model.checkpoint import resolve_checkpoint

        checkpoint = Path(resolve_checkpoint(str(checkpoint)))  # a bundled name such as lgg; errors if unknown
    if checkpoint is None:
        import torch

        from napari_pixeldrl.model.checkpoint import save_checkpoint
        from napari_pixeldrl.model.config import preset_config
        from napari_pixeldrl.model.network import build_model

        torch.manual_seed(0)
        cfg = preset_config("lite", in_channels=3)
        checkpoint = save_checkpoint(Path(tempfile.mkdtemp()) / "untrained-lite-rgb.safetensors", build_model(cfg), cfg)
        note = " (untrained random-weight model: GUI demo only)"

    viewer = napari.Viewer(title=f"napari-pixeldrl: PixelDRL-MG on the LGG sample{note}", show=True)
    viewer.window.resize(1400, 850)
    viewer.open_sample("napari-pixeldrl", "lgg")
    segment_dock, widget = viewer.window.add_plugin_dock_widget("napari-pixeldrl", "Segment")
    widget.add_checkpoint(checkpoint)
    widget.tmax_spin.setValue(args.t_max)
    app = QApplication.instance()
    done = []
    widget.finished.connect(done.append)
    t0 = time.perf_counter()
    widget.run()
    while not done:
        app.processEvents()
        time.sleep(0.01)
        if time.perf_counter() - t0 > 600:
            print("segmentation did not finish in 10 minutes", file=sys.stderr)
            return 1
    result = done[0]
    print(f"{type(result).__name__} in {time.perf_counter() - t0:.1f} s")
    if result.__class__.__name__ != "SegmentDone":
        print(result, file=sys.stderr)
        return 1
    shown = {widget.layer_for("steps"), widget._image_layer}
    for layer in viewer.layers:
        layer.visible = layer in shown
    widget.layer_for("steps").opacity = 0.6
    viewer.layers.selection.active = widget.layer_for("steps")
    step = args.step if args.step is not None else result.t_max // 2
    viewer.dims.set_current_step(widget._step_axis, step)
    viewer.dims.set_current_step(widget._step_axis + 1, 4)  # a slice with tumour
    shoot(viewer, args.out)
    if args.all:
        evaluate_dock = evaluate_view(viewer, widget, args.out.with_name(args.out.stem + "-evaluate.png"))
        segment_dock.hide()
        evaluate_dock.hide()
        train_view(viewer, args.out.with_name(args.out.stem + "-train.png"))
    viewer.close()
    return 0


def settle(seconds: float = 0.6) -> None:
    from qtpy.QtWidgets import QApplication

    app = QApplication.instance()
    for _ in range(int(seconds / 0.02)):
        app.processEvents()
        time.sleep(0.02)


def wait_for(signal, seconds: float = 600):
    from qtpy.QtWidgets import QApplication

    done = []
    signal.connect(done.append)
    t0 = time.perf_counter()
    while not done and time.perf_counter() - t0 < seconds:
        QApplication.instance().processEvents()
        time.sleep(0.01)
    return done[0] if done else None


def shoot(viewer, path: Path) -> None:
    settle()
    try:  # close toasts (e.g. napari's PyQt5 deprecation notice) so they do not cover the canvas
        from napari._qt.dialogs.qt_notification import NapariQtNotification

        for toast in viewer.window._qt_window.findChildren(NapariQtNotification):
            toast.close()
    except Exception:  # noqa: BLE001 - private API; a toast in the picture is harmless
        pass
    settle(0.2)
    path.parent.mkdir(parents=True, exist_ok=True)
    img = viewer.screenshot(str(path), canvas_only=False, flash=False)
    print(f"wrote {path} {img.shape}")


def evaluate_view(viewer, segment, path: Path):
    """The final mask against the expert's: the table and the agreement layer."""
    dock, widget = viewer.window.add_plugin_dock_widget("napari-pixeldrl", "Evaluate")
    widget.run()
    wait_for(widget.finished, 120)
    for layer in viewer.layers:
        layer.visible = layer.name == segment._image_layer.name or layer.name.startswith("agreement")
    shoot(viewer, path)
    return dock


def train_view(viewer, path: Path) -> None:
    """Fine-tuning on the sample's expert labels as if painted, a few episodes in; then cancelled."""
    _, widget = viewer.window.add_plugin_dock_widget("napari-pixeldrl", "Train / fine-tune")
    widget.epochs_spin.setValue(2)
    widget.out_edit.setText(tempfile.mkdtemp(prefix="pixeldrl-screenshot-"))
    widget.run()
    t0 = time.perf_counter()
    while len(widget.canvas.history["loss"]) < 4 and time.perf_counter() - t0 < 300:
        settle(0.2)
    widget._redraw_if_dirty()
    shoot(viewer, path)
    widget.cancel()
    wait_for(widget.finished, 300)


if __name__ == "__main__":
    sys.exit(main())
