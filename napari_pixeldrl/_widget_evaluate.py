"""Evaluate dock widget: a prediction labels layer against a ground-truth labels layer.

Six metrics (DICE, PPV, SEN, IoU, Boundary IoU, HD95) per slice and overall, in a table
with a Copy button (tab-separated, for a spreadsheet). HD95 is in the layers' scale
units (mm for NIfTI read with this plugin). The computation runs in a thread worker.
"""

from __future__ import annotations

import math

from qtpy.QtCore import Signal
from qtpy.QtWidgets import (
    QApplication,
    QFormLayout,
    QLabel,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QWidget,
)

from napari_pixeldrl import _qt_parts as Q
from napari_pixeldrl import _colors as C
from napari_pixeldrl import _evaluate_job as E
from napari_pixeldrl._registry import TAG, layer_role
from napari_pixeldrl import _messages as M
from napari_pixeldrl.training.metrics import METRIC_NAMES
from napari_pixeldrl._qt_parts import notify as _notify

HEADERS = {"dice": "DICE", "ppv": "PPV", "sen": "SEN", "iou": "IoU", "biou": "BIoU", "hd95": "HD95"}


class EvaluateWidget(QWidget):
    finished = Signal(object)

    def __init__(self, napari_viewer, parent=None):
        super().__init__(parent)
        self.viewer = napari_viewer
        self.worker = None
        self.last_result = None
        self.pred_combo = Q.combo()
        self.gt_combo = Q.combo()
        self.label_spin = QSpinBox()
        self.label_spin.setRange(0, 65535)
        self.label_spin.setSpecialValueText("the one label")
        self.label_spin.setToolTip("The object's label in multi-label layers; with 'the one label', a layer holding several labels is refused")
        self.run_button = Q.button("Evaluate", self.run)
        self.copy_button = Q.button("Copy", self.copy, tooltip="Copy the table to the clipboard, tab-separated")
        self.table = QTableWidget(0, len(METRIC_NAMES))
        self.table.setHorizontalHeaderLabels([HEADERS[m] for m in METRIC_NAMES])
        self.status = Q.status_label()
        self.legend = QLabel(C.legend_html([(C.AGREEMENT[C.AGREE], "agree"), (C.AGREEMENT[C.MISSED], "missed (truth only)"),
                                            (C.AGREEMENT[C.EXTRA], "extra (prediction only)")]))
        self.legend.setToolTip("Colours of the agreement layer that each evaluation adds")
        form = QFormLayout()
        form.addRow("Prediction", self.pred_combo)
        form.addRow("Ground truth", self.gt_combo)
        form.addRow("Object label", self.label_spin)
        Q.stack(self, form, Q.row(self.run_button, self.copy_button), self.legend, self.status, self.table, stretch=False)
        self._refresh_layers()
        for ev in (self.viewer.layers.events.inserted, self.viewer.layers.events.removed):
            ev.connect(self._refresh_layers)

    def _refresh_layers(self, event=None) -> None:
        """Offer the labels layers that hold one mask per image: not the step-by-step layers
        of a segmentation. By default the prediction is the newest segmentation's mask (or
        the first labels layer) and the truth the first other user layer of its shape."""
        from napari.layers import Labels

        layers = [layer for layer in self.viewer.layers if isinstance(layer, Labels) and layer_role(layer) not in
                  ("steps", "actions", "agreement")]
        names = [layer.name for layer in layers]
        ours = [layer for layer in layers if layer_role(layer) == "mask"]
        pred = ours[-1] if ours else (layers[0] if layers else None)
        truths = [layer for layer in layers if layer is not pred and layer_role(layer) is None
                  and pred is not None and layer.data.shape == pred.data.shape]
        others = [layer for layer in layers if layer is not pred and layer_role(layer) is None]
        truth = (truths or others or [None])[0]
        defaults = (pred.name if pred is not None else None, truth.name if truth is not None else None)
        for combo, default in zip((self.pred_combo, self.gt_combo), defaults):
            current = combo.currentText()
            combo.blockSignals(True)
            combo.clear()
            combo.addItems(names)
            if current in names:
                combo.setCurrentText(current)
            elif default is not None:
                combo.setCurrentText(default)
            combo.blockSignals(False)

    def run(self):
        if self.worker is not None:
            return self.worker
        pred_name, gt_name = self.pred_combo.currentText(), self.gt_combo.currentText()
        if not pred_name or not gt_name:
            _notify("warning", "Evaluate needs two labels layers: a prediction and a ground truth drawn on the same image.")
            return None
        pred, gt = self.viewer.layers[pred_name], self.viewer.layers[gt_name]
        from napari.qt.threading import thread_worker

        spacing = tuple(float(s) for s in gt.scale)
        worker = thread_worker(E.evaluate_job, start_thread=False)(
            pred.data, gt.data, spacing=spacing, pred_name=pred_name, gt_name=gt_name, label=self.label_spin.value() or None
        )
        worker.returned.connect(self._on_returned)
        worker.finished.connect(self._on_finished)
        self.worker = worker
        self.last_result = None
        self.run_button.setEnabled(False)
        self.status.setText("Evaluating...")
        Q.start_worker(worker)
        return worker

    def _on_returned(self, msg) -> None:
        self.last_result = msg
        if isinstance(msg, M.Failed):
            self.status.setText("Failed: " + msg.message)
            _notify("error", msg.message)
        elif isinstance(msg, M.EvaluateDone):
            self.fill(msg.rows)
            note = ("" if msg.ndim == 2 else " The volume's HD95 is 3D: a boundary point may match one on the next "
                    "slice, so it can be below every slice's.")
            self.status.setText(f"{len(msg.rows)} rows; HD95 in the ground-truth layer's scale units.{note}")
            if msg.agreement is not None:
                self._show_agreement(msg.agreement)
        self.finished.emit(msg)

    def _show_agreement(self, agreement) -> None:
        """One layer, replaced at each evaluation: where prediction and truth agree or not."""
        gt = self.viewer.layers[self.gt_combo.currentText()]
        name = f"agreement: {self.pred_combo.currentText()} vs {self.gt_combo.currentText()}"
        old = [layer for layer in self.viewer.layers if layer_role(layer) == "agreement"]
        if old:
            layer = old[0]
            layer.data, layer.name = agreement, name
            layer.scale, layer.translate = gt.scale, gt.translate
        else:
            self.viewer.add_labels(agreement, name=name, colormap=C.label_colormap(C.AGREEMENT), opacity=0.7,
                                   scale=gt.scale, translate=gt.translate, metadata={TAG: {"role": "agreement"}})

    def _on_finished(self) -> None:
        self.worker = None
        self.run_button.setEnabled(True)

    def fill(self, rows) -> None:
        self.table.setRowCount(len(rows))
        self.table.setVerticalHeaderLabels([label for label, _ in rows])
        for r, (_, metrics) in enumerate(rows):
            for c, name in enumerate(METRIC_NAMES):
                value = metrics.get(name, math.nan)
                self.table.setItem(r, c, QTableWidgetItem(f"{value:.4f}" if name != "hd95" else f"{value:.2f}"))
        self.table.resizeColumnsToContents()

    def as_tsv(self) -> str:
        header = ["row"] + [self.table.horizontalHeaderItem(c).text() for c in range(self.table.columnCount())]
        lines = ["\t".join(header)]
        for r in range(self.table.rowCount()):
            label = self.table.verticalHeaderItem(r)
            cells = [self.table.item(r, c).text() if self.table.item(r, c) else "" for c in range(self.table.columnCount())]
            lines.append("\t".join([label.text() if label else str(r)] + cells))
        return "\n".join(lines) + "\n"

    def copy(self) -> str:
        text = self.as_tsv()
        QApplication.clipboard().setText(text)
        return text
