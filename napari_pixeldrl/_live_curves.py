"""The Train widget's live learning curves: loss, mean reward, validation DICE.

Drawing happens on the GUI thread while the training worker holds the GIL much of the
time, so it must be cheap. A matplotlib canvas was not: each redraw of its axes and text
(needed whenever a limit grew, first of all when the first losses arrived) took 0.13-0.31 s
of the GUI thread during training, the Train widget's only GUI stalls. pyqtgraph draws
with Qt's own painter: new points and a re-ranged axis cost a few milliseconds.
"""

from __future__ import annotations

import math

import pyqtgraph as pg


AXIS_WIDTH = 38  # pixels: room for tick labels such as "1500" or "-0.25" at 7 pt


class LiveCurves(pg.GraphicsLayoutWidget):
    """Three stacked plots sharing the epoch axis; feed them points, call :meth:`redraw`
    when convenient (the widget's timer does)."""

    def __init__(self):
        super().__init__()
        self.plots = []
        for row, title in enumerate(("loss", "mean reward", "validation DICE")):
            plot = self.addPlot(row=row, col=0)
            plot.setTitle(title, size="8pt")
            plot.setMouseEnabled(x=False, y=False)
            plot.hideButtons()
            plot.setMenuEnabled(False)
            for side in ("left", "bottom"):
                plot.getAxis(side).setStyle(tickFont=_small_font())
            # One width for every y axis: linked x ranges line up on screen only if the plot
            # areas start at the same place, whatever the width of each axis's tick labels.
            plot.getAxis("left").setWidth(AXIS_WIDTH)
            self.plots.append(plot)
        self.plot_loss, self.plot_reward, self.plot_dice = self.plots
        for plot in self.plots[:2]:
            plot.setXLink(self.plot_dice)
            plot.enableAutoRange(axis="y")
        self.plot_dice.setLabel("bottom", "epoch", size="7pt")
        self.plot_dice.setYRange(0, 1, padding=0)
        self.plot_dice.enableAutoRange(axis="y", enable=False)
        self.lines = (
            self.plot_loss.plot([], [], pen=pg.mkPen("#1f77b4", width=1)),
            self.plot_reward.plot([], [], pen=pg.mkPen("#2ca02c", width=1)),
            self.plot_dice.plot([], [], pen=pg.mkPen("#d62728", width=1), symbol="o", symbolSize=4,
                                symbolBrush="#d62728", symbolPen=None),
        )
        self.reset()

    # ------------------------------------------------------------------ data

    def reset(self, epochs: int | None = None) -> None:
        self.history = {"ep_x": [], "loss": [], "reward": [], "val_x": [], "val": []}
        self._set_right(max(1, int(epochs or 1)) + 0.5)
        self.dirty = True

    def set_epochs(self, epochs: float) -> None:
        """The run is now expected to end after ``epochs`` (e.g. a time budget that binds
        before the epoch count): the epoch axis is fitted to that."""
        self._set_right(max(1, math.ceil(epochs)) + 0.5)
        self.dirty = True

    def add_episode(self, x: float, loss: float, reward: float) -> None:
        self.history["ep_x"].append(x)
        self.history["loss"].append(loss)
        self.history["reward"].append(reward)
        self.dirty = True

    def add_validation(self, epoch: int, dice: float) -> None:
        self.history["val_x"].append(epoch)
        self.history["val"].append(dice)
        self.dirty = True

    # ------------------------------------------------------------------ drawing

    def redraw(self) -> None:
        """Show the points added since the last call."""
        h = self.history
        for line, (xs, ys) in zip(self.lines, ((h["ep_x"], h["loss"]), (h["ep_x"], h["reward"]),
                                               (h["val_x"], h["val"]))):
            finite = [(x, y) for x, y in zip(xs, ys) if math.isfinite(y)]  # a NaN loss would blank the plot
            line.setData([x for x, _ in finite], [y for _, y in finite])
        last = max([0.0, *h["ep_x"], *h["val_x"]])
        if last > self.right:
            self._set_right(math.ceil(last * 1.5) + 0.5)  # with headroom: the axis moves rarely
        self.dirty = False

    def x_range(self) -> tuple[float, float]:
        return tuple(self.plot_dice.getViewBox().viewRange()[0])

    def y_range(self, which: int) -> tuple[float, float]:
        """The shown y range of plot ``which`` (0 loss, 1 reward, 2 DICE), once drawn."""
        return tuple(self.plots[which].getViewBox().viewRange()[1])

    def _set_right(self, right: float) -> None:
        self.right = right
        self.plot_dice.setXRange(0, right, padding=0)


def _small_font():
    from qtpy.QtGui import QFont

    font = QFont()
    font.setPointSize(7)
    return font
