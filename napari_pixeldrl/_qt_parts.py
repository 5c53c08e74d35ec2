"""Small Qt building blocks the three dock widgets share (drawing only, no logic)."""

from __future__ import annotations

from qtpy.QtCore import QEvent, QSize, Qt, QTimer
from qtpy.QtWidgets import (
    QComboBox,
    QFrame,
    QHBoxLayout,
    QLabel,
    QLayout,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QVBoxLayout,
    QWidget,
)

STATUS_LINES = 4  # the status label's fixed height: a changing message never moves the widgets below

# The file dialogs that open a model: a checkpoint, or a bioimage.io package made by `pixeldrl export`.
MODEL_FILES = "Models (*.safetensors *.zip);;All files (*)"


def button(text: str, slot, *, enabled: bool = True, tooltip: str | None = None, checkable: bool = False) -> QPushButton:
    """A push button wired to ``slot`` (``toggled`` for a checkable one, else ``clicked``)."""
    b = QPushButton(text)
    b.setCheckable(checkable)
    b.setEnabled(enabled)
    if tooltip:
        b.setToolTip(tooltip)
    (b.toggled if checkable else b.clicked).connect(slot)
    return b


def combo() -> QComboBox:
    """A combo box that a narrow dock can shrink: its width does not follow its longest
    item (a long layer or model name would widen the whole widget past the window and cut
    its right edge); the open list shows every item in full."""
    box = QComboBox()
    box.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
    box.setMinimumContentsLength(12)
    return box


def progress_bar() -> QProgressBar:
    """An idle progress bar (0 of 1); workers set its range when they start."""
    bar = QProgressBar()
    bar.setRange(0, 1)
    bar.setValue(0)
    return bar


class StatusLabel(QLabel):
    """A wrapped status message of fixed height, its full text also in the tooltip."""

    def __init__(self):
        super().__init__("")
        self.setWordWrap(True)
        self.setAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop)
        self.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.setFixedHeight(self.fontMetrics().lineSpacing() * STATUS_LINES + 4)

    def setText(self, text: str) -> None:  # noqa: N802 - Qt's name
        super().setText(text)
        self.setToolTip(text)


def status_label() -> QLabel:
    return StatusLabel()


def row(*widgets: QWidget) -> QHBoxLayout:
    """Widgets side by side (e.g. Run and Cancel)."""
    layout = QHBoxLayout()
    for w in widgets:
        layout.addWidget(w)
    return layout


def stack(parent: QWidget, *items: QWidget | QLayout, stretch: bool = True) -> QVBoxLayout:
    """Lay ``items`` (widgets or layouts) top to bottom in ``parent``, inside a scroll area so
    that a dock taller than the screen scrolls instead of pushing napari's sliders off it;
    spare room goes below."""
    content = QWidget()
    layout = QVBoxLayout(content)
    scroll = _VerticalScroll()
    scroll.setWidgetResizable(True)
    scroll.setFrameShape(QFrame.Shape.NoFrame)
    scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
    scroll.setWidget(content)
    outer = QVBoxLayout(parent)
    outer.setContentsMargins(0, 0, 0, 0)
    outer.addWidget(scroll)
    for item in items:
        if isinstance(item, QLayout):
            layout.addLayout(item)
        else:
            layout.addWidget(item)
    if stretch:
        layout.addStretch(1)
    return layout


class _VerticalScroll(QScrollArea):
    """A scroll area that scrolls up and down only, so it asks for the width its content
    needs (read when the dock is laid out, after the widget has filled its lists):
    narrower, the dock would cut the widgets' right edge."""

    def setWidget(self, widget: QWidget) -> None:  # noqa: N802 - Qt's name
        super().setWidget(widget)
        widget.installEventFilter(self)  # its layout changes (lists filled, texts set) re-size the dock

    def eventFilter(self, obj, event) -> bool:  # noqa: N802 - Qt's name
        if obj is self.widget() and event.type() == QEvent.Type.LayoutRequest:
            self.updateGeometry()
        return super().eventFilter(obj, event)

    def showEvent(self, event) -> None:  # noqa: N802 - Qt's name
        super().showEvent(event)
        QTimer.singleShot(0, self.updateGeometry)  # the dock read a width before the widget was filled

    def minimumSizeHint(self) -> QSize:  # noqa: N802 - Qt's name
        hint = super().minimumSizeHint()
        need = self.widget().minimumSizeHint().width() + self.verticalScrollBar().sizeHint().width()
        return QSize(max(hint.width(), need), hint.height())


__all__ = ["button", "progress_bar", "row", "stack", "status_label"]


def notify(kind: str, message: str) -> None:
    """A napari notification ('error', 'warning' or 'info'); napari is imported only here."""
    from napari.utils.notifications import show_error, show_info, show_warning

    {"error": show_error, "warning": show_warning, "info": show_info}[kind](message)
    if len(message) > TOAST_LINE:
        _open_toast(message)


TOAST_LINE = 60  # about the characters a collapsed napari toast shows before it elides


def _open_toast(message: str) -> None:
    """Open the toast just shown for ``message`` to its full text, and keep it up long
    enough to read (about 60 ms a character, at least napari's 4 s).

    napari draws a toast as one elided line until it is clicked, which cuts our messages
    (the problem, then what to do) in the middle. This uses napari's toast class, which
    is private: if it changes, the toast stays as napari draws it.
    """

    try:
        from napari._qt.dialogs.qt_notification import NapariQtNotification

        toast = NapariQtNotification._instances[-1]
        if toast.message.text() != message:  # not shown (no visible window): leave the others alone
            return
        toast.timer.setInterval(max(toast.DISMISS_AFTER, 60 * len(message)))
    except (ImportError, AttributeError, IndexError):
        return

    def expand() -> None:
        try:
            if not toast.property("expanded"):
                toast.expand()
        except RuntimeError:  # closed before its slide-in ended
            pass

    QTimer.singleShot(toast.FADE_IN_RATE + 20, expand)


def start_worker(worker) -> None:
    """Start a background worker, first moving every object alive now (napari, Qt, torch,
    the layers: ~600,000 of them) to the garbage collector's permanent generation.

    A full collection, which the worker's allocations trigger, otherwise walks all of them
    while holding the GIL: measured 0.4-0.6 s without a repaint, mid-segmentation or
    mid-training (``gc.callbacks``). Frozen, a full collection walks only what was made
    since. The cost: cyclic garbage that exists at this moment stays in memory.
    """
    import gc

    gc.freeze()
    worker.start()
