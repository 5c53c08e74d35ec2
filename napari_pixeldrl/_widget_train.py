"""Train / fine-tune dock widget: draws and reacts only; the work runs in ``_train_job``.

Data: an image layer plus the labels layer the user painted (in a volume only the
painted slices are used; ~20 % of them are held back for validation DICE), or a dataset
folder (lgg / msd / folder). Start from a fresh ``lite`` model, a bundled model, a model
of the Segment widget, or a checkpoint file. The inputs are checked by plain functions
before any worker starts; bad input becomes a notification that says what to do.

While training: a progress bar over episodes, a live curve (loss, mean reward, validation
DICE; redrawn at most ~3 times a second) and Cancel (sets ``trainer.cancel``; the last
and best checkpoints stay in the run folder). At the end the best model is loaded and
published to the Segment widgets of the same viewer (``_registry``), and "Save model..."
writes it to a .safetensors file.
"""

from __future__ import annotations

import math
import os
import threading
from pathlib import Path

from qtpy.QtCore import QTimer, Signal
from qtpy.QtWidgets import (
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QStackedWidget,
    QWidget,
)

from napari_pixeldrl import _qt_parts as Q
from napari_pixeldrl import _registry
from napari_pixeldrl import _messages as M
from napari_pixeldrl import _train_job as T
from napari_pixeldrl.core.device import available_devices
from napari_pixeldrl.core.errors import PixelDRLError
from napari_pixeldrl._registry import bundled_channels, config_channels, image_channels, layer_role
from napari_pixeldrl.training.events import EpisodeEvent, EpochEvent
from napari_pixeldrl._qt_parts import notify as _notify

FRESH = "fresh lite model"
BUNDLED = "bundled: "
SEGMENT = "Segment widget: "
FILE_ITEM = "Checkpoint file..."
SOURCES = ("Painted layers", "Dataset folder")
PROGRESS_STEPS = 1000  # the progress bar's range: a fraction of the run, by epochs or by time
REDRAW_MS = 1000  # curve updates (a redraw costs a few ms, see _live_curves)


class TrainWidget(QWidget):
    """Fine-tune (or train from scratch) on painted slices or a dataset folder."""

    finished = Signal(object)  # TrainDone / Failed

    def __init__(self, napari_viewer, parent=None):
        super().__init__(parent)
        self.viewer = napari_viewer
        self.worker = None
        self.result: M.TrainDone | None = None
        self.last_result = None
        self.model_name: str | None = None
        self._cancel = threading.Event()
        self._checkpoint_path: str | None = None
        self._start_chosen = False  # the user picked 'Start from' (then it is never changed for them)
        self._run = None  # the TrainStarted of the run in progress
        self._budget_min: float | None = None  # its time budget
        # Tests (and power users) may inject a base TrainConfig, e.g. a tiny model.
        self.base_config = None

        # data
        self.source_combo = Q.combo()
        self.source_combo.addItems(SOURCES)
        self.image_combo = Q.combo()
        self.labels_combo = Q.combo()
        self.label_spin = QSpinBox()
        self.label_spin.setRange(0, 65535)
        self.label_spin.setSpecialValueText("auto (the only one painted)")
        self.kind_combo = Q.combo()
        self.kind_combo.addItems(T.DATASET_KINDS)
        self.path_edit = QLineEdit()
        self.path_edit.setPlaceholderText("dataset folder")
        browse = QPushButton("Browse...")
        browse.clicked.connect(self._browse_dataset)
        layers_page, data_page = QWidget(), QWidget()
        lf = QFormLayout(layers_page)
        lf.setContentsMargins(0, 0, 0, 0)
        lf.addRow("Image", self.image_combo)
        lf.addRow("Painted labels", self.labels_combo)
        lf.addRow("Label", self.label_spin)
        df = QFormLayout(data_page)
        df.setContentsMargins(0, 0, 0, 0)
        df.addRow("Kind", self.kind_combo)
        row = QHBoxLayout()
        row.addWidget(self.path_edit)
        row.addWidget(browse)
        df.addRow("Folder", row)
        self.pages = QStackedWidget()
        self.pages.addWidget(layers_page)
        self.pages.addWidget(data_page)
        self.source_combo.currentIndexChanged.connect(self.pages.setCurrentIndex)

        # training
        self.nshot_spin = QSpinBox()
        self.nshot_spin.setRange(0, 100000)
        self.nshot_spin.setSpecialValueText("all")
        self.epochs_spin = QSpinBox()
        self.epochs_spin.setRange(1, 100000)
        self.epochs_spin.setValue(50)
        self.budget_spin = QDoubleSpinBox()
        self.budget_spin.setRange(0, 10000)
        self.budget_spin.setDecimals(1)
        self.budget_spin.setSpecialValueText("none")
        self.budget_spin.setSuffix(" min")
        # Augmentation beyond flips and rotations; at the minimum, the start model's (a fresh one: off).
        self.zoom_spin = _jitter_spin(0.5, 0.05, "zoom each training slice by a factor in [1 - S, 1 + S] (half of "
                                      "them); the heart's recipe uses 0.2")
        self.gamma_spin = _jitter_spin(2.0, 0.1, "raise each training slice's intensities to a power in "
                                       "[1 / (1 + G), 1 + G] (half of them); the heart's recipe uses 0.4")
        self.start_combo = Q.combo()
        self.start_combo.activated.connect(self._start_activated)
        self.start_combo.currentIndexChanged.connect(self._start_changed)
        self.device_combo = Q.combo()
        self.device_combo.addItems(available_devices())
        self.out_edit = QLineEdit()
        self.out_edit.setPlaceholderText("new folder under ~/.cache/napari-pixeldrl/runs")
        out_browse = Q.button("Browse...", self._browse_out)

        self.train_button = Q.button("Train", self.run)
        self.cancel_button = Q.button("Cancel", self.cancel, enabled=False)
        self.save_button = Q.button("Save model...", self._save_clicked, enabled=False)
        self.progress = Q.progress_bar()
        self.status = Q.status_label()

        from napari_pixeldrl._live_curves import LiveCurves

        self.canvas = LiveCurves()
        self.canvas.setMinimumHeight(260)
        self.redraw_timer = QTimer(self)
        self.redraw_timer.setInterval(REDRAW_MS)
        self.redraw_timer.timeout.connect(self._redraw_if_dirty)

        T.preload_training_stack()

        form = QFormLayout()
        form.addRow("Data", self.source_combo)
        form.addRow(self.pages)
        form.addRow("N-shot (slices)", self.nshot_spin)
        form.addRow("Epochs", self.epochs_spin)
        form.addRow("Time budget", self.budget_spin)
        form.addRow("Zoom jitter", self.zoom_spin)
        form.addRow("Gamma jitter", self.gamma_spin)
        form.addRow("Start from", self.start_combo)
        form.addRow("Device", self.device_combo)
        form.addRow("Output folder", Q.row(self.out_edit, out_browse))
        Q.stack(self, form, Q.row(self.train_button, self.cancel_button), self.progress, self.status, self.canvas, self.save_button)

        self.refresh_starts()
        self._refresh_layers()
        self.image_combo.currentTextChanged.connect(lambda _: self._default_start())
        for ev in (self.viewer.layers.events.inserted, self.viewer.layers.events.removed, self.viewer.layers.events.reordered):
            ev.connect(self._refresh_layers)

    # ------------------------------------------------------------------ choices

    def _refresh_layers(self, event=None) -> None:
        """Keep the user's choices; otherwise offer the first image and the newest labels
        layer the user made (the one just painted), never one of our result layers."""
        from napari.layers import Image, Labels

        images = [layer.name for layer in self.viewer.layers if isinstance(layer, Image) and layer_role(layer) is None]
        labels = [layer.name for layer in self.viewer.layers if isinstance(layer, Labels) and layer_role(layer) is None]
        for combo, names, default in ((self.image_combo, images, images[:1]), (self.labels_combo, labels, labels[-1:])):
            current = combo.currentText()
            combo.blockSignals(True)
            combo.clear()
            combo.addItems(names)
            if current in names:
                combo.setCurrentText(current)
            elif default:
                combo.setCurrentText(default[0])
            combo.blockSignals(False)
        self._default_start()

    def _default_start(self) -> None:
        """Until the user picks one, start from the bundled model that takes the image's channels."""
        if self._start_chosen or self.image_combo.currentText() not in self.viewer.layers:
            return
        channels = image_channels(self.viewer.layers[self.image_combo.currentText()])
        for name, taken in bundled_channels().items():
            if taken == channels and self.start_combo.findText(BUNDLED + name) >= 0:
                self.start_combo.blockSignals(True)  # not the user's choice
                self.start_combo.setCurrentText(BUNDLED + name)
                self.start_combo.blockSignals(False)
                return

    def start_sources(self) -> dict:
        """{combo text: None (fresh) | path | LoadedModel} of the starting points on offer."""
        from napari_pixeldrl.model.checkpoint import bundled_models

        out: dict = {FRESH: None}
        for name, path in bundled_models().items():
            out[BUNDLED + name] = path
        models = dict(_registry.published_models(self.viewer))
        for w in _registry.segment_widgets(self.viewer):
            models.update(w.models())
        bundled = {Path(p).resolve() for p in bundled_models().values()}
        for name, source in models.items():
            if isinstance(source, (str, Path)) and Path(source).resolve() in bundled:
                continue  # already offered as 'bundled: ...'
            out.setdefault(SEGMENT + name, source)
        if self._checkpoint_path:
            out[self._checkpoint_path] = Path(self._checkpoint_path)
        return out

    def refresh_starts(self, select: str | None = None) -> None:
        current = select or self.start_combo.currentText()
        items = list(self.start_sources())
        self.start_combo.blockSignals(True)
        self.start_combo.clear()
        self.start_combo.addItems(items)
        self.start_combo.addItem(FILE_ITEM)
        self.start_combo.setCurrentText(current if current in items else FRESH)
        self.start_combo.blockSignals(False)

    def showEvent(self, event):  # the Segment widget may have gained models meanwhile
        super().showEvent(event)
        if self.worker is None:
            self.refresh_starts()

    def set_checkpoint(self, path) -> None:
        self._checkpoint_path = str(path)
        self.refresh_starts(select=str(path))

    def _start_changed(self, index: int) -> None:
        self._start_chosen = True  # programmatic updates block the combo's signals

    def _start_activated(self, index: int) -> None:
        if self.start_combo.itemText(index) != FILE_ITEM:
            return
        path, _ = QFileDialog.getOpenFileName(self, "Start from a napari-pixeldrl checkpoint", "", Q.MODEL_FILES)
        if path:
            self.set_checkpoint(path)
        else:
            self.refresh_starts()

    def _browse_dataset(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Dataset folder")
        if path:
            self.path_edit.setText(path)

    def _browse_out(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Output folder for the run")
        if path:
            self.out_edit.setText(path)

    # ------------------------------------------------------------------ run

    def train_config(self):
        """The TrainConfig for a run: the injected base (or defaults) with the widget's choices."""
        import dataclasses

        from napari_pixeldrl.training.train_config import TrainConfig

        cfg = dataclasses.replace(self.base_config) if self.base_config is not None else TrainConfig()
        cfg.epochs = int(self.epochs_spin.value())
        budget = float(self.budget_spin.value())
        cfg.time_budget_min = budget if budget > 0 else None
        cfg.device = self.device_combo.currentText()
        cfg.progress = False
        return cfg

    def prepare(self):
        """Check the inputs (no worker yet); returns the job's arguments or raises PixelDRLError."""
        start_text = self.start_combo.currentText()
        sources = self.start_sources()
        if start_text not in sources:
            raise T.InputError("choose a starting model under 'Start from' (or 'Checkpoint file...')")
        start = sources[start_text]
        header = T.start_header(start)  # foreign checkpoint -> CheckpointError
        model_channels = None if header is None else config_channels(header.get("model") or {})
        cfg = self.train_config()
        if header is not None:
            from napari_pixeldrl.training.train_config import finetune_config

            cfg = finetune_config(cfg, header)  # as `pixeldrl finetune` does
        for spin, name in ((self.zoom_spin, "scale_jitter"), (self.gamma_spin, "gamma_jitter")):
            if spin.value() >= 0:  # not 'as the start model'
                setattr(cfg, name, round(spin.value(), 2))
        if cfg.scale_jitter and header is not None and (header.get("model") or {}).get("box_zoom"):
            raise T.InputError("Zoom jitter does nothing for a box model (its crops are the box resized to one size): "
                               "set it to 'as the start model'")
        n_shot = self.nshot_spin.value() or None
        cfg.data = {"source": SOURCES[self.source_combo.currentIndex()], "n_shot": n_shot,
                    "init_checkpoint": None if start is None else str(getattr(start, "path", start) or start_text)}
        if self.source_combo.currentIndex() == 0:
            from napari.layers import Image, Labels

            iname, lname = self.image_combo.currentText(), self.labels_combo.currentText()
            if not iname or iname not in self.viewer.layers or not isinstance(self.viewer.layers[iname], Image):
                raise T.InputError("open an image first and pick it under Image")
            if not lname or lname not in self.viewer.layers or not isinstance(self.viewer.layers[lname], Labels):
                raise T.InputError(
                    "paint the object first: select the image, add a labels layer (Layers > New Labels layer), "
                    "paint a few slices, then pick it under 'Painted labels'"
                )
            image, labels = self.viewer.layers[iname], self.viewer.layers[lname]
            painted = T.PaintedLayers(image.data, labels.data, rgb=bool(image.rgb), label=self.label_spin.value() or None,
                                      image_name=iname, labels_name=lname)
            slices, channels = T.check_painted(painted, n_shot, cfg.seed)  # the slices are read in the job
            T.check_channels(channels, model_channels, self._start_label(start_text))
            cfg.data.update(image=iname, labels=lname, slices=slices)
            out = self._out_dir_checked()
            return dict(data=painted, config=cfg, out_dir=out, start=start, n_shot=n_shot)
        kind = self.kind_combo.currentText()
        path = T.check_dataset(kind, self.path_edit.text().strip())
        cfg.data.update(dataset=kind, path=str(path))
        out = self._out_dir_checked()
        return dict(data=None, config=cfg, out_dir=out, start=start, dataset=(kind, str(path), None), n_shot=n_shot)

    def _out_dir_checked(self):
        """The run folder, checked (and created) last, once every other input is good."""
        return T.check_out_dir(self.out_edit.text().strip() or T.default_run_dir())

    @staticmethod
    def _start_label(text: str) -> str:
        return f"the starting model ({text})"

    def run(self):
        """Check the inputs and start training; returns the worker, or None (notified why)."""
        if self.worker is not None:
            return self.worker
        try:
            kwargs = self.prepare()
        except PixelDRLError as exc:
            self.status.setText(str(exc))
            _notify("error" if isinstance(exc, T.CheckpointError) else "warning", str(exc))
            return None
        from napari.qt.threading import thread_worker

        self._cancel = threading.Event()
        self.result = None
        self.last_result = None
        self.save_button.setEnabled(False)
        self.canvas.reset(self.epochs_spin.value())
        self._run = None
        self._start_text = self.start_combo.currentText()
        self._data_text = (self.labels_combo.currentText() if self.source_combo.currentIndex() == 0
                           else Path(self.path_edit.text().strip()).name)
        self._budget_min = kwargs["config"].time_budget_min
        job = thread_worker(T.train_job, start_thread=False)
        worker = job(cancel=self._cancel, **kwargs)
        worker.yielded.connect(self._on_yielded)
        worker.returned.connect(self._on_returned)
        worker.errored.connect(self._on_errored)
        worker.finished.connect(self._on_finished)
        self.worker = worker
        self._out_dir = kwargs["out_dir"]
        self.train_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.progress.setRange(0, 0)
        self.status.setText(f"Preparing; run folder {kwargs['out_dir']}")
        self.redraw_timer.start()
        Q.start_worker(worker)
        return worker

    def cancel(self) -> None:
        """Stop before the next episode; the best model so far is still loaded and offered."""
        self._cancel.set()
        self.status.setText("Cancelling (after the current episode)...")

    def closeEvent(self, event):  # closing the widget stops a run (checkpoints stay)
        self._cancel.set()
        super().closeEvent(event)

    # ------------------------------------------------------------------ progress

    def _on_yielded(self, msg) -> None:
        if isinstance(msg, M.Stage):
            self.status.setText(msg.text.capitalize() + "...")
        elif isinstance(msg, M.TrainStarted):
            self._run = msg
            self.progress.setRange(0, PROGRESS_STEPS)
            self.progress.setValue(0)
            self.status.setText(f"Training on {msg.n_train} slice(s), validating on {msg.n_val} ({msg.note}).")
        elif isinstance(msg, EpisodeEvent):
            x = msg.epoch - 1 + msg.episode / max(1, msg.episodes_per_epoch)
            self.canvas.add_episode(x, float(msg.stats.loss), float(msg.stats.mean_reward))
            self._show_progress(x, msg.elapsed)
        elif isinstance(msg, EpochEvent):
            self._show_progress(msg.epoch, msg.elapsed)
            budget = self._budget_seconds()
            if budget and msg.elapsed > 0:  # the budget binds first: fit the curves to where it will end
                self.canvas.set_epochs(min(msg.epochs, msg.epoch * budget / msg.elapsed))
            if msg.val_dice is not None:
                self.canvas.add_validation(msg.epoch, msg.val_dice)
            val = "-" if msg.val_dice is None else f"{msg.val_dice:.3f}"
            self.status.setText(
                f"Epoch {msg.epoch}/{msg.epochs}: loss {msg.train.get('loss', math.nan):.3f}, "
                f"reward {msg.train.get('mean_reward', math.nan):.3f}, "
                f"validation DICE {val} (best {max(msg.best_dice, 0):.3f} at epoch {msg.best_epoch})"
            )

    def _budget_seconds(self) -> float | None:
        return self._budget_min * 60 if self._budget_min else None

    def _show_progress(self, epochs_done: float, elapsed: float) -> None:
        """Progress towards whichever limit ends the run first: the epochs or the time budget."""
        if self._run is None:
            return
        fraction = epochs_done / max(1, self._run.epochs)
        budget = self._budget_seconds()
        if budget:
            fraction = max(fraction, elapsed / budget)
        self.progress.setValue(int(PROGRESS_STEPS * min(1.0, fraction)))

    def _redraw_if_dirty(self) -> None:
        if self.canvas.dirty:
            self.canvas.redraw()

    # ------------------------------------------------------------------ end

    def _on_returned(self, msg) -> None:
        self.last_result = msg
        if isinstance(msg, M.TrainDone):
            self.result = msg
            self.model_name = self._publish(msg)
            how = {"done": "Done", "time_budget": "Time budget reached", "cancelled": "Cancelled"}.get(msg.reason, msg.reason)
            dice = "n/a" if msg.best_dice is None or (isinstance(msg.best_dice, float) and math.isnan(msg.best_dice)) else f"{msg.best_dice:.3f}"
            self.status.setText(
                f"{how} after {msg.epochs_done} epoch(s) in {msg.seconds:.0f} s; best validation DICE {dice} "
                f"(epoch {msg.best_epoch}). {msg.note}. Model '{self.model_name}' is in the Segment widget's list; "
                f"run folder {msg.out_dir}"
            )
            self.save_button.setEnabled(True)
            if msg.reason == "cancelled":
                _notify("info", f"Training cancelled; the best model so far is listed as '{self.model_name}' in the Segment "
                                f"widget, which keeps your current choice (checkpoints kept in {msg.out_dir}).")
        elif isinstance(msg, M.Failed):
            self.status.setText("Failed: " + msg.message)
            _notify("error", msg.message)
        self.finished.emit(msg)

    def _publish(self, msg: M.TrainDone) -> str:
        """Offer the trained model to the Segment widgets under a name that says what it is;
        a cancelled run's model is listed but not selected in place of the user's choice."""
        name = _registry.unique_name(self.viewer, model_label(self._start_text, self._data_text, msg))
        told = _registry.publish_model(self.viewer, name, msg.loaded, select=msg.reason != "cancelled")
        if not told:
            self._open_segment_widget()
        self.refresh_starts()
        return name

    def _open_segment_widget(self) -> None:
        """Dock the Segment widget (it lists the published model) when none is open."""
        window = getattr(self.viewer, "window", None)
        if window is None or os.environ.get("PIXELDRL_NO_AUTODOCK"):
            return
        try:
            window.add_plugin_dock_widget("napari-pixeldrl", "Segment")
        except Exception:  # noqa: BLE001 - the model stays published for a Segment widget opened later
            pass

    def _on_errored(self, exc) -> None:  # a bug: napari also relays the traceback
        self.last_result = M.Failed(f"{type(exc).__name__}: {exc}", "other")
        self.status.setText(f"Training failed: {type(exc).__name__}: {exc}")
        self.finished.emit(self.last_result)

    def _on_finished(self) -> None:
        self.worker = None
        self.redraw_timer.stop()
        self.canvas.redraw()
        self.train_button.setEnabled(True)
        self.cancel_button.setEnabled(False)
        res = self.last_result
        if not (isinstance(res, M.TrainDone) and res.reason == "cancelled"):  # a cancelled run stays where it stopped
            self.progress.setRange(0, 1)
            self.progress.setValue(1 if isinstance(res, M.TrainDone) else 0)

    # ------------------------------------------------------------------ save

    def _save_clicked(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Save the trained model", "model.safetensors", "Checkpoints (*.safetensors)")
        if path:
            self.save_model(path)

    def save_model(self, path) -> Path | None:
        """Write the trained (best) model to ``path`` (.safetensors added when missing)."""
        if self.result is None:
            _notify("warning", "Train a model first.")
            return None
        path = Path(path)
        if path.suffix != ".safetensors":
            path = path.with_name(path.name + ".safetensors")
        try:
            out = T.save_model(self.result.loaded, path)
        except OSError as exc:
            _notify("error", f"cannot write {path}: {exc}")
            return None
        self.status.setText(f"Saved {out}")
        return out


def _jitter_spin(top: float, step: float, tip: str) -> QDoubleSpinBox:
    """A jitter's box: 0 (off) to ``top``; one step below 0 means 'as the start model'."""
    spin = QDoubleSpinBox()
    spin.setDecimals(2)
    spin.setRange(-step, top)
    spin.setSingleStep(step)
    spin.setSpecialValueText("as the start model")
    spin.setValue(-step)
    spin.setToolTip("Augmentation: " + tip + ". 'As the start model': the jitter it was trained with (a fresh "
                    "model: off).")
    return spin


def model_label(start: str, data: str, done) -> str:
    """A trained model's name: what it started from, what it trained on, how long, how well."""
    start = {FRESH: "fresh"}.get(start, start.removeprefix(BUNDLED).removeprefix(SEGMENT))
    dice = "" if done.best_dice is None or done.best_dice < 0 else f", val DICE {done.best_dice:.3f}"
    stopped = " (cancelled)" if done.reason == "cancelled" else ""
    return f"{start} + {data}: {done.epochs_done} ep{dice}{stopped}"
