"""Screenshot of the plugin at work: LGG sample, Segment widget run, steps layer shown.

    xvfb-run -a python tools/screenshot.py [--checkpoint lgg|model.safetensors] [--out docs/screenshot.png]

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
    args = parser.parse_args()

    import napari
    from qtpy.QtWidgets import QApplication

    from napari_pixeldrl._widget_segment import SegmentWidget

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
    _, widget = viewer.window.add_plugin_dock_widget("napari-pixeldrl", "Segment")
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
    for _ in range(30):
        app.processEvents()
        time.sleep(0.02)
    try:  # close toasts (e.g. napari's PyQt5 deprecation notice) so they do not cover the canvas
        from napari._qt.dialogs.qt_notification import NapariQtNotification

        for toast in viewer.window._qt_window.findChildren(NapariQtNotification):
            toast.close()
        app.processEvents()
    except Exception:  # noqa: BLE001 - private API; a toast in the picture is harmless
        pass
    args.out.parent.mkdir(parents=True, exist_ok=True)
    img = viewer.screenshot(str(args.out), canvas_only=False, flash=False)
    print(f"wrote {args.out} {img.shape}")
    viewer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
