"""The Train widget's live learning curves: loss, mean reward, validation DICE.

Drawing happens on the GUI thread, so it must be cheap: a full matplotlib redraw of the
three axes cost ~100 ms on a quiet 2-core machine and ~250 ms on a loaded one (with
tight_layout and default ticks), enough to break the 200 ms responsiveness bound if done
every second. So the layout is fixed, the ticks few, and the axes, ticks and titles
are drawn only when a limit has to grow (limits grow with headroom, so that is rare), and
every other update restores the cached background and draws just the three lines
(matplotlib blitting: animated artists, ``copy_from_bbox`` / ``restore_region`` / ``blit``).
"""

from __future__ import annotations

import math

from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

HEADROOM = 0.5  # a limit that must grow grows by this fraction of the data's span on top


class LiveCurves(FigureCanvasQTAgg):
    """A canvas with three stacked axes; feed it points, call :meth:`redraw` when convenient."""

    def __init__(self):
        self.figure = Figure(figsize=(3.5, 4.2))
        super().__init__(self.figure)
        # Fixed margins: tight_layout on a draw doubled its cost.
        self.figure.subplots_adjust(left=0.2, right=0.97, top=0.94, bottom=0.1, hspace=0.5)
        self.ax_loss, self.ax_reward, self.ax_dice = self.figure.subplots(3, 1, sharex=True)
        for ax, title in ((self.ax_loss, "loss"), (self.ax_reward, "mean reward"), (self.ax_dice, "validation DICE")):
            ax.set_title(title, fontsize=8)
            ax.tick_params(labelsize=7)
            # Few ticks: text is most of a full draw's cost (3 y ticks: 80 ms against 130 ms).
            ax.yaxis.set_major_locator(MaxNLocator(3))
            ax.xaxis.set_major_locator(MaxNLocator(4, integer=True))
        self.ax_dice.set_xlabel("epoch", fontsize=7)
        self.ax_dice.set_ylim(0, 1)
        self.lines = (
            self.ax_loss.plot([], [], lw=1, animated=True)[0],
            self.ax_reward.plot([], [], lw=1, color="tab:green", animated=True)[0],
            self.ax_dice.plot([], [], marker=".", color="tab:red", animated=True)[0],
        )
        self._background = None
        self.full_draws = 0  # how many times axes and text were drawn (tests read it)
        self.mpl_connect("draw_event", self._grab_background)
        self.reset()

    # ------------------------------------------------------------------ data

    def reset(self, epochs: int | None = None) -> None:
        self.history = {"ep_x": [], "loss": [], "reward": [], "val_x": [], "val": []}
        self.ax_dice.set_xlim(0, max(1, int(epochs or 1)) + 0.5)
        for ax in (self.ax_loss, self.ax_reward):
            ax.set_ylim(0, 1)
        self._needs_full = True
        self.dirty = True

    def set_epochs(self, epochs: float) -> None:
        """The run is now expected to end after ``epochs`` (e.g. a time budget that binds
        before the epoch count): the x axis is fitted to that, once."""
        right = max(1, math.ceil(epochs)) + 0.5
        if abs(self.ax_dice.get_xlim()[1] - right) > 0.01:
            self.ax_dice.set_xlim(0, right)
            self._needs_full = True
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
        """Show the points added since the last call (cheap unless a limit must grow)."""
        h = self.history
        for line, (xs, ys) in zip(self.lines, ((h["ep_x"], h["loss"]), (h["ep_x"], h["reward"]), (h["val_x"], h["val"]))):
            line.set_data(xs, ys)
        grew = self._grow_x(max([0.0, *h["ep_x"], *h["val_x"]]))
        grew |= self._grow_y(self.ax_loss, h["loss"])
        grew |= self._grow_y(self.ax_reward, h["reward"])
        if grew or self._needs_full or self._background is None:
            self.draw()  # axes and text; _grab_background caches them, then the lines go on top
        else:
            self.restore_region(self._background)
            self._draw_lines()
        self.dirty = False

    def _grab_background(self, event=None) -> None:
        self.full_draws += 1
        self._background = self.copy_from_bbox(self.figure.bbox)
        self._needs_full = False
        self._draw_lines()

    def _draw_lines(self) -> None:
        for ax, line in zip((self.ax_loss, self.ax_reward, self.ax_dice), self.lines):
            ax.draw_artist(line)
        self.blit(self.figure.bbox)

    def _grow_x(self, x_max: float) -> bool:
        right = self.ax_dice.get_xlim()[1]
        if x_max <= right:
            return False
        self.ax_dice.set_xlim(0, math.ceil(x_max * (1 + HEADROOM)) + 0.5)
        return True

    @staticmethod
    def _grow_y(ax, values) -> bool:
        finite = [v for v in values if math.isfinite(v)]
        if not finite:
            return False
        lo, hi = min(finite), max(finite)
        bottom, top = ax.get_ylim()
        pad = max(HEADROOM * (hi - lo), 0.25 * max(abs(lo), abs(hi)), 1e-3)
        # Inside, and not much looser than a re-fit would make it: a re-fit that is never
        # judged good enough would redraw everything on every call.
        if bottom <= lo and hi <= top and (top - bottom) <= 2 * (hi - lo + 2 * pad):
            return False
        ax.set_ylim(lo - pad, hi + pad)
        return True
