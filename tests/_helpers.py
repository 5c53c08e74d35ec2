"""Small helpers shared by the test modules."""


def drain(gen):
    """Run a generator to the end: (the values it yielded, its return value)."""
    from napari_pixeldrl.training.events import drive

    msgs: list = []
    return msgs, drive(gen, msgs.append)


def write_per_slice(path, rows):
    """Write rows (dicts with the same keys) as a report's per_slice.csv would hold them."""
    import csv

    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def require_napari_display():
    """Skip the calling test module, at import, without a display, napari or pytest-qt; napari."""
    import os
    import sys

    import pytest

    if sys.platform.startswith("linux") and not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"):
        pytest.skip("napari widget tests need a display: run them under xvfb-run -a", allow_module_level=True)
    napari = pytest.importorskip("napari")
    pytest.importorskip("pytestqt")
    return napari


def _machine_busy_seconds() -> float:
    """CPU seconds all cores of the machine have been busy since boot (Linux), else NaN."""
    import os

    try:
        with open("/proc/stat") as fh:
            fields = fh.readline().split()[1:]
    except OSError:
        return float("nan")
    user, nice, system, idle, iowait, irq, softirq, steal = (int(x) for x in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


class Heartbeat:
    """A Qt timer on the GUI thread that records when it ticks (every 20 ms).

    ``gaps(t0, t1)``: the intervals between ticks from t0 to t1 (perf_counter seconds),
    ends included, so a stall at either end counts. A stall of the GUI thread shows as
    one long gap. Each tick also records the CPU time of this process and of the whole
    machine (Linux /proc/stat), which tells a GUI thread blocked by this process's own work
    from one that waited because other processes had the cores (a busy machine).
    """

    def __init__(self, qtbot, interval_ms: int = 20):
        import os

        import pytest
        from qtpy.QtCore import QTimer

        if not os.environ.get("PIXELDRL_TIMED_TESTS"):
            # A stall limit in wall time passes or fails with the machine, so it is not in the
            # default suite (the project measures speed in benchmarks, not in timed tests).
            pytest.skip("a timed test of GUI stalls: run it with PIXELDRL_TIMED_TESTS=1 on a quiet machine")

        self.beats: list[float] = []
        self.cpu: list[float] = []
        self.machine: list[float] = []
        self.timer = QTimer()
        self.timer.setInterval(interval_ms)
        self.timer.timeout.connect(self._tick)
        self.timer.start()
        qtbot.wait(200)  # let the event loop settle before anything is measured

    def _tick(self) -> None:
        import time

        self.beats.append(time.perf_counter())
        self.cpu.append(time.process_time())
        self.machine.append(_machine_busy_seconds())

    def stop(self) -> None:
        self.timer.stop()

    def gaps(self, t0: float, t1: float):
        import numpy as np

        return np.diff([t0, *[b for b in self.beats if t0 < b <= t1], t1])

    def others_share(self, t0: float, t1: float):
        """Per gap between ticks inside [t0, t1]: (wall seconds, cores used by other
        processes during it); the latter is NaN where the machine's CPU time is unknown."""
        import numpy as np

        idx = [i for i, b in enumerate(self.beats) if t0 < b <= t1]
        wall = np.diff([self.beats[i] for i in idx])
        ours = np.diff([self.cpu[i] for i in idx])
        machine = np.diff([self.machine[i] for i in idx])
        return wall, (machine - ours) / np.maximum(wall, 1e-9)

    def assert_no_stall(self, qtbot, t0: float, t1: float, limit: float = 0.2) -> None:
        """Fail if the GUI thread stalled ``limit`` or longer between t0 and t1 while no
        other process kept a core busy (so this process's own work blocked it). Skip, saying
        so, when other processes used half a core or more through a long gap: a busy machine
        cannot fail the run, and a stall the code causes fails on a quiet one."""
        import math

        import pytest

        gaps = self.gaps(t0, t1)
        if gaps.max() < limit:
            return
        wall, share = self.others_share(t0, t1)
        long = [(w, o) for w, o in zip(wall, share) if w >= limit]
        edges = [gaps[0], gaps[-1]]  # before the first tick and after the last: no CPU reading at their ends
        if max(edges) >= limit:  # judged by the other processes' share over the whole window
            overall = float((share * wall).sum() / wall.sum()) if len(wall) else float("nan")
            long.append((max(edges), overall))
        quiet = [(w, o) for w, o in long if not math.isnan(o) and o < 0.5]
        if quiet or not long:
            w = max(quiet)[0] if quiet else gaps.max()
            raise AssertionError(f"a {w * 1000:.0f} ms stall of the GUI thread while other processes were quiet")
        w, o = max(long)
        pytest.skip(f"machine too busy to measure GUI stalls: during a {w * 1000:.0f} ms gap other processes used "
                    f"{o:.1f} cores")

    @staticmethod
    def describe(gaps, what: str) -> str:
        return f"{what}: {len(gaps) - 1} beats, max gap {gaps.max() * 1000:.0f} ms"


def make_package(path, checkpoint, *, description: str | None = None):
    """A minimal bioimage.io package around ``checkpoint``, as napari-pixeldrl reads one: a
    zip with an rdf.yaml that lists the attached checkpoint's sha256 (what ``pixeldrl export``
    writes, less what only bioimage.io tools use). Needs no bioimageio."""
    import hashlib
    import zipfile
    from pathlib import Path

    from napari_pixeldrl.model.package import CHECKPOINT_NAME

    data = Path(checkpoint).read_bytes()
    rdf = description if description is not None else (
        "type: model\nformat_version: 0.5.12\nattachments:\n"
        f"  - source: {CHECKPOINT_NAME}\n    sha256: {hashlib.sha256(data).hexdigest()}\n")
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("rdf.yaml", rdf)
        zf.writestr(CHECKPOINT_NAME, data)
    return Path(path)
