"""Segment dock widget: draws and reacts only; the work runs in ``_segment_job.segment_job``.

Results are four layers the widget owns (tagged in their metadata with this widget's
id and a role): the final mask, the masks m(0)..m(T) of every step (step, [z,] y, x;
index t is step t), the action of every step (paper Fig. 4, colours and codes in
``_colors.ACTIONS``) and the value map. Our masks are drawn in their own colour, never
napari's defaults, so an expert's labels beside them stay distinguishable. A new run
replaces only layers carrying this widget's tag.
"""

from __future__ import annotations

import threading
import uuid
from pathlib import Path

import numpy as np
from qtpy.QtCore import QTimer, Signal
from qtpy.QtWidgets import (
    QCheckBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QLabel,
    QSpinBox,
    QWidget,
)

from napari_pixeldrl import _colors as C
from napari_pixeldrl import _qt_parts as Q
from napari_pixeldrl import _messages as M
from napari_pixeldrl import _segment_job as S
from napari_pixeldrl._qt_parts import notify as _notify
from napari_pixeldrl._registry import TAG, config_channels, image_channels, layer_tag, model_config_of
from napari_pixeldrl.core.device import available_devices
from napari_pixeldrl.model.episode import KEPT, ZEROED

LOAD_ITEM = "Load checkpoint file..."
WHOLE_IMAGE = "whole image (m(0) = 1)"
ROLES = ("mask", "steps", "actions", "value")


# Labels of the post-processing choices -> the value segment_job takes.
POSTPROCESS_CHOICES = {
    "model's choice (chosen on validation)": "auto",
    "none": "none",
    "largest object per slice": "largest-component",
}
WINDOW_CHOICES = {  # model/window.py
    "model's choice": "auto",
    "whole slices": 0,
    "128-pixel windows": 128,
    "256-pixel windows": 256,
}


class SegmentWidget(QWidget):
    """Choose an image layer and a model, run PixelDRL-MG, browse its steps."""

    finished = Signal(object)  # the outcome message (SegmentDone / Failed / Cancelled)

    def __init__(self, napari_viewer, parent=None):
        super().__init__(parent)
        self.viewer = napari_viewer
        self._id = uuid.uuid4().hex[:8]
        self._models: dict[str, object] = {}  # name -> path or LoadedModel
        self._cache: dict[str, object] = {}  # name -> LoadedModel (loaded once)
        self._configs: dict[str, dict | None] = {}  # name -> model config from its header (read once)
        self._model_chosen = False  # the user picked a model: never switched for them
        self.worker = None
        self._cancel = threading.Event()
        self.last_result = None
        self._step_axis: int | None = None
        self._queue: list[str] = []  # image layers still to segment in this run
        self._image_layer = None  # the layer segmented last (its result layers are layer_for's default)
        self._busy = False  # the result layers are being put in the viewer

        self.image_combo = Q.combo()
        self.start_combo = Q.combo()
        self.start_combo.setToolTip("Start the agents from a rough mask (a Shapes layer's rectangles or polygons, "
                                    "or a Labels layer's painted region) instead of the whole image: they can only "
                                    "remove pixels, so the steps refine your box")
        self.model_combo = Q.combo()
        self.model_combo.activated.connect(self._model_activated)
        self.tmax_spin = QSpinBox()
        self.tmax_spin.setRange(1, 50)
        self.tmax_spin.setValue(10)
        self.device_combo = Q.combo()
        self.device_combo.addItems(available_devices())
        self.post_combo = Q.combo()
        for label, value in POSTPROCESS_CHOICES.items():
            self.post_combo.addItem(label, value)
        self.post_combo.setToolTip("Applied to the final mask only; the step layers show what the policy did")
        self.window_combo = Q.combo()
        for label, value in WINDOW_CHOICES.items():
            self.window_combo.addItem(label, value)
        self.window_combo.setToolTip("Slices larger than the window run as overlapping windows of the size the model "
                                     "trained on, blended; a model trained on crops sees what it trained on")
        self.threshold_spin = QDoubleSpinBox()
        self.threshold_spin.setRange(0.0, 0.95)
        self.threshold_spin.setSingleStep(0.05)
        self.threshold_spin.setDecimals(2)
        self.threshold_spin.setSpecialValueText("model's choice")  # at 0: the threshold the model carries
        self.threshold_spin.setToolTip("Keep a pixel where pi(keep) exceeds this at every step (0.5: the argmax); "
                                       "higher trims, lower keeps more")
        self.all_check = QCheckBox("every image layer of this shape")
        self.all_check.setToolTip("Segment the chosen image, then each other image layer of the same shape, "
                                  "one after the other; each gets its own result layers")
        self.run_button = Q.button("Run", self.run)
        self.cancel_button = Q.button("Cancel", self.cancel, enabled=False)
        self.progress = Q.progress_bar()
        self.status = Q.status_label()
        self.play_button = Q.button("Play steps", self._toggle_play, enabled=False, checkable=True)
        self.play_timer = QTimer(self)
        self.play_timer.setInterval(400)
        self.play_timer.timeout.connect(self._advance_step)
        self.legend = QLabel(
            "Step slider: 0 = the start mask m(0), t = the mask after step t.<br>"
            + C.legend_html([(C.PREDICTION, "mask m(t)"), (C.ACTIONS[KEPT], "kept"),
                             (C.ACTIONS[ZEROED], "zeroed at step t"), (C.ACTIONS[C.STEP1_ZEROED], "zeroed at step 1")])
            + " (actions layer)"
        )
        self.legend.setWordWrap(True)
        self.step_info = QLabel("")  # what the step slider shows now, and where the episode stopped
        self.step_info.setWordWrap(True)

        form = QFormLayout()
        form.addRow("Image", self.image_combo)
        form.addRow("Start from", self.start_combo)
        form.addRow("Model", self.model_combo)
        form.addRow("Steps (t_max)", self.tmax_spin)
        form.addRow("Device", self.device_combo)
        form.addRow("Post-processing", self.post_combo)
        form.addRow("Windows", self.window_combo)
        form.addRow("Keep threshold", self.threshold_spin)
        form.addRow(self.all_check)  # the whole row: its text is the widest item
        Q.stack(self, form, Q.row(self.run_button, self.cancel_button), self.progress, self.status, self.play_button,
                self.step_info, self.legend)

        from napari_pixeldrl import _registry

        for name, source in _registry.published_models(napari_viewer).items():
            self._models.setdefault(name, source)  # trained before this widget was opened
        _registry.register_segment_widget(self)
        self.model_combo.currentTextChanged.connect(lambda _: self._explain_model())
        self.refresh_models()
        self._refresh_layers()
        self.image_combo.currentTextChanged.connect(lambda _: self._default_model())
        for ev in (self.viewer.layers.events.inserted, self.viewer.layers.events.removed):
            ev.connect(self._refresh_layers)
        self.viewer.layers.events.reordered.connect(self._refresh_layers)
        self.viewer.dims.events.current_step.connect(self._describe_step)

    # ------------------------------------------------------------------ choices

    def _refresh_layers(self, event=None) -> None:
        from napari.layers import Image, Labels, Shapes

        def fill(combo, names, first=()):
            current = combo.currentText()
            combo.blockSignals(True)
            combo.clear()
            combo.addItems([*first, *names])
            if current in names:
                combo.setCurrentText(current)
            combo.blockSignals(False)

        mine = [layer for layer in self.viewer.layers if not self._owns(layer)]
        fill(self.image_combo, [layer.name for layer in mine if isinstance(layer, Image)])
        fill(self.start_combo, [layer.name for layer in mine if isinstance(layer, (Labels, Shapes))], first=(WHOLE_IMAGE,))
        self._default_model()

    def _start_source(self):
        """The chosen start layer as the job's ``start_mask``: a Labels layer's data, or a function
        that draws a Shapes layer's shapes as one mask (in the worker, not here); None: all ones."""
        from napari.layers import Shapes

        name = self.start_combo.currentText()
        if name == WHOLE_IMAGE or name not in self.viewer.layers:
            return None
        layer = self.viewer.layers[name]
        if isinstance(layer, Shapes):
            return lambda shape: layer.to_masks(mask_shape=shape).any(axis=0)
        return layer.data

    def refresh_models(self, select: str | None = None) -> None:
        from napari_pixeldrl.model.checkpoint import bundled_models

        for name, path in bundled_models().items():
            self._models.setdefault(name, path)
        current = select or self.model_combo.currentText()
        self.model_combo.blockSignals(True)
        self.model_combo.clear()
        self.model_combo.addItems(list(self._models))
        self.model_combo.addItem(LOAD_ITEM)
        if current in self._models:
            self.model_combo.setCurrentText(current)
        self.model_combo.blockSignals(False)
        self._explain_model()

    def add_model(self, name: str, source, select: bool = True) -> str:
        """Offer a model (a checkpoint path or a LoadedModel, e.g. from the Train widget)."""
        self._models[name] = source
        self._cache.pop(name, None)
        self._configs.pop(name, None)
        if select:  # a model loaded or trained for this is the user's choice
            self._model_chosen = True
        self.refresh_models(select=name if select else None)
        return name

    def models(self) -> dict:
        """{name: LoadedModel (when already loaded) or path} of the models this widget offers."""
        return {name: self._cache.get(name, source) for name, source in self._models.items()}

    def add_checkpoint(self, path) -> str:
        path = Path(path)
        name = path.name
        return self.add_model(name, path)

    def _model_config(self, name: str) -> dict | None:
        """An offered model's config, read from its header once per name; None if unreadable."""
        if name not in self._configs:
            source = self._cache.get(name, self._models.get(name))
            self._configs[name] = None if source is None else model_config_of(source)
        return self._configs[name]

    def _model_channels(self, name: str) -> int | None:
        """Input channels of an offered model; None if unknown."""
        return config_channels(self._model_config(name))

    def box_side(self, name: str) -> int:
        """box_zoom of an offered model: a box model segments only inside a start layer's
        box, at this side; 0 for a model of whole slices (or one whose header is unreadable)."""
        config = self._model_config(name)
        return 0 if config is None else int(config.get("box_zoom") or 0)

    def _box_hint(self, name: str) -> str:
        # The bundled box models trained on the truth's box grown by 0-20 px and validate best at 5-10.
        return (f"{name} segments inside a box: draw a rectangle in a Shapes layer (or paint a region in a Labels "
                f"layer) around the object, a few pixels (5-10) clear of its edge, and choose it under Start from.")

    def _explain_model(self) -> None:
        """Say before a run that a box model needs a start layer, and keep the window choice,
        which does nothing for it, out of reach."""
        name = self.model_combo.currentText()
        boxed = name in self._models and self.box_side(name) > 0
        if boxed:
            self.window_combo.setCurrentIndex(0)  # the model's choice: a box model has no window
        self.window_combo.setEnabled(not boxed)
        if self.worker is None and not self._busy:
            if boxed:
                self.status.setText(self._box_hint(name))
            elif self.status.text().endswith("choose it under Start from."):
                self.status.setText("")

    def _default_model(self) -> None:
        """Until the user picks a model, offer one that takes the image's channels (RGB: 3),
        and of those one that segments whole slices (a box model needs a start layer)."""
        name = self.image_combo.currentText()
        if self._model_chosen or name not in self.viewer.layers:
            return
        channels = image_channels(self.viewer.layers[name])
        fits = [model for model in self._models if self._model_channels(model) == channels]
        preferred = [model for model in fits if not self.box_side(model)] or fits
        if preferred and self.model_combo.currentText() not in preferred:
            self.model_combo.setCurrentText(preferred[0])

    def _model_activated(self, index: int) -> None:
        self._model_chosen = True
        if self.model_combo.itemText(index) != LOAD_ITEM:
            return
        path, _ = QFileDialog.getOpenFileName(self, "Load a napari-pixeldrl checkpoint", "", Q.MODEL_FILES)
        if path:
            self.add_checkpoint(path)
        else:
            self.refresh_models()

    # ------------------------------------------------------------------ run

    def _owns(self, layer) -> bool:
        return layer_tag(layer).get("widget") == self._id

    def own_layers(self) -> list:
        return [layer for layer in self.viewer.layers if self._owns(layer)]

    def run(self):
        """Start a segmentation of the chosen layer (with 'every image of this shape', of each
        such layer in turn); returns the first worker (or None)."""
        if self.worker is not None or self._busy:
            return self.worker
        name = self.image_combo.currentText()
        if not name or name not in self.viewer.layers:
            _notify("warning", "Open an image first (File > Open, or File > Open Sample > PixelDRL-MG), then pick it under Image.")
            return None
        model_name = self.model_combo.currentText()
        if model_name not in self._models:
            _notify(
                "warning",
                "No model chosen: pick 'Load checkpoint file...' and choose a .safetensors checkpoint saved by napari-pixeldrl "
                "(or a .zip package made by pixeldrl export).",
            )
            return None
        if self.box_side(model_name) and self.start_combo.currentText() == WHOLE_IMAGE:
            _notify("warning", self._box_hint(model_name))
            return None
        self._queue = self.same_shape_images(name)[1:] if self.all_check.isChecked() else []
        self._cancel = threading.Event()
        return self._start(name)

    def same_shape_images(self, name: str) -> list[str]:
        """``name`` first, then every other image layer of the user's with its shape and colour kind."""
        from napari.layers import Image

        chosen = self.viewer.layers[name]
        others = [layer.name for layer in self.viewer.layers if isinstance(layer, Image) and not self._owns(layer)
                  and layer.name != name and layer.data.shape == chosen.data.shape and layer.rgb == chosen.rgb]
        return [name, *others]

    def _start(self, name: str):
        model_name = self.model_combo.currentText()
        layer = self.viewer.layers[name]
        source = self._cache.get(model_name, self._models[model_name])
        from napari.qt.threading import thread_worker

        self._image_layer = layer
        self.last_result = None
        job = thread_worker(S.segment_job, start_thread=False)
        worker = job(
            layer.data,
            rgb=bool(layer.rgb),
            model_source=source,
            model_name=model_name,
            t_max=self.tmax_spin.value(),
            device=self.device_combo.currentText(),
            batch_size=4,
            cancel=self._cancel,
            name=name,
            postprocess=self.post_combo.currentData(),
            window=self.window_combo.currentData(),
            keep_threshold=self.threshold_spin.value() or "auto",
            start_mask=self._start_source(),
        )
        worker.yielded.connect(self._on_yielded)
        worker.returned.connect(self._on_returned)
        worker.errored.connect(self._on_errored)
        worker.finished.connect(lambda w=worker: self._on_finished(w))
        self.worker = worker
        self.run_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.progress.setRange(0, 0)  # busy until the first count
        left = f" ({len(self._queue)} more image(s) after it)" if self._queue else ""
        self.status.setText(f"Segmenting {name} with {model_name}...{left}")
        Q.start_worker(worker)
        return worker

    def cancel(self) -> None:
        # iter_segment checks the flag between batches and ends with a Cancelled message.
        self._cancel.set()
        self.status.setText("Cancelling...")

    def _on_yielded(self, msg) -> None:
        if isinstance(msg, M.Stage):
            self.status.setText(msg.text.capitalize() + "...")
        elif isinstance(msg, M.SegmentProgress):
            self.progress.setRange(0, max(1, msg.total))
            self.progress.setValue(msg.done)

    def _on_returned(self, msg) -> None:
        self.last_result = msg
        if isinstance(msg, M.SegmentDone):
            self._cache[msg.model_name] = msg.loaded
            lo, hi = int(np.min(msg.steps_taken)), int(np.max(msg.steps_taken))
            taken = f"step {hi}" if lo == hi else f"steps {lo}-{hi} (by slice)"
            self.status.setText(f"Done in {msg.seconds:.1f} s. No pixel changed at {taken} of {msg.t_max}: "
                                "the episode stopped there.")
            self._busy = True
            self._show_result(msg, then=lambda: self._done_showing(msg))
            return
        self._queue = []  # a failure or a cancel ends the run over several images too
        if isinstance(msg, M.Failed):
            self.status.setText("Failed: " + msg.message)
            _notify("error", msg.message)
        elif isinstance(msg, M.Cancelled):
            self.status.setText("Cancelled.")
            _notify("info", "Segmentation cancelled; your layers are unchanged.")
        self.finished.emit(msg)

    def _done_showing(self, msg) -> None:
        self._busy = False
        self.finished.emit(msg)
        if self._queue and not self._cancel.is_set():
            self._start(self._queue.pop(0))
        else:
            self._queue = []
            self._set_idle()

    def _on_errored(self, exc) -> None:  # a bug, not a bad input: napari also relays the traceback
        self.last_result = M.Failed(f"{type(exc).__name__}: {exc}", "other")
        self.status.setText(f"Segmentation failed: {type(exc).__name__}: {exc}")
        self.finished.emit(self.last_result)

    def _on_finished(self, worker=None) -> None:
        if worker is not None and worker is not self.worker:
            return  # an earlier image's thread, ended after the next one started
        self.worker = None
        if not self._busy:
            self._set_idle()

    def _set_idle(self) -> None:
        self.run_button.setEnabled(True)
        self.cancel_button.setEnabled(False)
        self.progress.setRange(0, 1)
        self.progress.setValue(1 if isinstance(self.last_result, M.SegmentDone) else 0)

    # ------------------------------------------------------------------ results

    def _show_result(self, res: M.SegmentDone, then=None) -> None:
        """Put the result in the viewer, one layer per event-loop turn.

        Adding or removing a napari layer costs 0.1-0.2 s on the GUI thread (removal runs
        a full gc.collect), so the layers are updated in place when they exist and the
        work is split across ``QTimer.singleShot(0, ...)`` turns: the window keeps
        repainting between them. ``then`` runs after the last one.
        """
        image = self._image_layer
        base = image.name
        scale = tuple(image.scale)
        translate = tuple(image.translate)
        meta_geo = {k: v for k, v in image.metadata.items() if k in ("affine", "spacing", "source_path", "format", "disk_shape")}
        step_scale, step_translate = (1.0, *scale), (0.0, *translate)
        self.stop_play()

        def meta(role):
            tag = {"widget": self._id, "role": role, "image": base, "model": res.model_name}
            if role == "steps":  # per slice, the step at which its episode stopped
                tag["steps_taken"] = [int(t) for t in np.atleast_1d(res.steps_taken)]
            return {TAG: tag, **meta_geo}

        ours = C.label_colormap({1: C.PREDICTION})
        specs = [
            ("value", "image", res.value, dict(scale=scale, translate=translate, colormap="viridis", visible=False)),
            ("actions", "labels", res.actions, dict(scale=step_scale, translate=step_translate,
                                                    colormap=C.label_colormap(C.ACTIONS), visible=False)),
            ("steps", "labels", res.steps, dict(scale=step_scale, translate=step_translate, opacity=0.5, colormap=ours)),
            ("mask", "labels", res.mask, dict(scale=scale, translate=translate, opacity=0.5, colormap=ours)),
        ]
        tasks = [lambda spec=spec: self._put_layer(spec, base, meta(spec[0])) for spec in specs]
        tasks.append(lambda: self._label_step_axis(res.t_max))
        if then is not None:
            tasks.append(then)
        self._run_tasks(tasks)

    def _run_tasks(self, tasks) -> None:
        if not tasks:
            return
        first, rest = tasks[0], tasks[1:]
        try:
            first()
        finally:
            QTimer.singleShot(0, lambda: self._run_tasks(rest))

    def _put_layer(self, spec, base: str, metadata: dict) -> None:
        role, kind, data, kwargs = spec
        name = f"{base} {role}"
        old = self.layer_for(role, base)
        from napari.layers import Labels

        if old is not None and old.ndim == data.ndim and (kind == "labels") == isinstance(old, Labels):
            # In place: cheaper than remove + add, and keeps the user's display settings.
            old.scale, old.translate = kwargs["scale"], kwargs["translate"]
            old.data = data
            old.metadata = metadata
            old.name = name
            if kind == "image":
                old.reset_contrast_limits()
            return
        if old is not None:
            self.viewer.layers.remove(old)
        add = self.viewer.add_labels if kind == "labels" else self.viewer.add_image
        add(data, name=name, metadata=metadata, **kwargs)

    def _label_step_axis(self, t_max: int) -> None:
        """Name the step axis 'step' and show the last step; its slider counts t = 0..t_max."""
        v = self.viewer
        steps_layer = self.layer_for("steps")
        # The step axis is the first axis of the steps layer, right-aligned in the viewer's dims.
        self._step_axis = v.dims.ndim - steps_layer.ndim
        labels = list(v.dims.axis_labels)
        labels[self._step_axis] = "step"
        if steps_layer.ndim == 4 and labels[self._step_axis + 1].lstrip("-").isdigit():
            labels[self._step_axis + 1] = "slice"  # napari's default name would read "-3"
        v.dims.axis_labels = tuple(labels)
        _widen_axis_labels(v)
        v.dims.set_current_step(self._step_axis, t_max)
        self.play_button.setEnabled(True)
        self._describe_step()

    def _describe_step(self, event=None) -> None:
        """Say which mask the step slider shows, and whether this slice's episode had
        already stopped there (a fixed point: every later step repeats it)."""
        steps = self.layer_for("steps")
        taken = steps.metadata[TAG].get("steps_taken") if steps is not None else None
        if steps is None or taken is None or self._step_axis is None or self._step_axis >= self.viewer.dims.ndim:
            self.step_info.setText("")
            return
        index = [int(round(i)) for i in steps.world_to_data(self.viewer.dims.point)]
        t, t_max = min(max(index[0], 0), steps.data.shape[0] - 1), steps.data.shape[0] - 1
        z = min(max(index[1], 0), len(taken) - 1) if steps.ndim == 4 else 0
        stop = int(taken[z])
        where = f"Slice {z}, t = {t} of {t_max}: " if steps.ndim == 4 else f"t = {t} of {t_max}: "
        if t == 0:
            what = "the start mask m(0)"
        elif t <= stop:
            what = f"the mask after step {t}" + (" (no pixel changed at this step: the episode stopped here)" if t == stop < t_max else "")
        else:
            what = f"the episode stopped at step {stop} (no pixel changed), so this repeats m({stop})"
        self.step_info.setText(where + what)

    def layer_for(self, role: str, image: str | None = None):
        """Our layer of ``role`` for ``image`` (default: the image segmented last)."""
        if image is None and self._image_layer is not None:
            image = self._image_layer.name
        for layer in self.own_layers():
            tag = layer.metadata[TAG]
            if tag["role"] == role and (image is None or tag.get("image") == image):
                return layer
        return None

    # ------------------------------------------------------------------ play

    def _toggle_play(self, on: bool) -> None:
        if on and self._step_axis is not None and self.layer_for("steps") is not None:
            self.viewer.dims.set_current_step(self._step_axis, 0)  # m(0), then each step
            self.play_button.setText("Stop")
            self.play_timer.start()
        else:
            self.play_timer.stop()
            self.play_button.setText("Play steps")

    def stop_play(self) -> None:
        if self.play_button.isChecked():
            self.play_button.setChecked(False)
        self.play_timer.stop()

    def _advance_step(self) -> None:
        steps = self.layer_for("steps")
        if steps is None or self._step_axis is None or self._step_axis >= self.viewer.dims.ndim:
            self.stop_play()
            return
        n = steps.data.shape[0]
        cur = self.viewer.dims.current_step[self._step_axis]
        self.viewer.dims.set_current_step(self._step_axis, (cur + 1) % n)


def _widen_axis_labels(viewer) -> None:
    """Let the dims sliders' name boxes fit 'step': napari sizes them when a slider is made
    and when the user edits one, not when a name is set from code, so it showed '...'.
    Uses napari's private Qt dims widget; without it the name stays elided, nothing worse."""
    try:
        viewer.window._qt_viewer.dims._resize_axis_labels()
    except AttributeError:  # another napari, or a viewer without a window
        pass
