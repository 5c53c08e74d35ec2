"""Small helpers shared by the test modules."""


def drain(gen):
    """Run a generator to the end: (the values it yielded, its return value)."""
    msgs = []
    while True:
        try:
            msgs.append(next(gen))
        except StopIteration as stop:
            return msgs, stop.value


class Heartbeat:
    """A Qt timer on the GUI thread that records when it ticks (every 20 ms).

    ``gaps(t0, t1)``: the intervals between ticks from t0 to t1 (perf_counter seconds),
    ends included, so a stall at either end counts. A stall of the GUI thread shows as
    one long gap. Each tick also records the process's CPU time, which tells a GUI thread
    blocked by this process's own work (the process kept computing through the gap) from
    a process the operating system did not run (a busy machine).
    """

    def __init__(self, qtbot, interval_ms: int = 20):
        import time

        from qtpy.QtCore import QTimer

        self.beats: list[float] = []
        self.cpu: list[float] = []
        self.timer = QTimer()
        self.timer.setInterval(interval_ms)
        self.timer.timeout.connect(self._tick)
        self.timer.start()
        qtbot.wait(200)  # let the event loop settle before anything is measured

    def _tick(self) -> None:
        import time

        self.beats.append(time.perf_counter())
        self.cpu.append(time.process_time())

    def stop(self) -> None:
        self.timer.stop()

    def gaps(self, t0: float, t1: float):
        import numpy as np

        return np.diff([t0, *[b for b in self.beats if t0 < b <= t1], t1])

    def cpu_share(self, t0: float, t1: float):
        """Per gap between ticks inside [t0, t1]: the process's CPU seconds per wall second."""
        import numpy as np

        idx = [i for i, b in enumerate(self.beats) if t0 < b <= t1]
        wall = np.diff([self.beats[i] for i in idx])
        cpu = np.diff([self.cpu[i] for i in idx])
        return wall, cpu / np.maximum(wall, 1e-9)

    def assert_no_stall(self, qtbot, t0: float, t1: float, limit: float = 0.2) -> None:
        """Fail if the GUI thread stalled ``limit`` or longer between t0 and t1 while this
        process kept computing (its own work blocked the GUI thread). Skip, saying so, if the
        long gaps are the machine's (the process got under half a core through them, or the
        idle event loop stalls as long right after): a busy machine cannot fail the run, and
        a stall the code causes fails on a quiet one."""
        import time

        import pytest

        gaps = self.gaps(t0, t1)
        if gaps.max() < limit:
            return
        wall, share = self.cpu_share(t0, t1)
        ours = [(w, s) for w, s in zip(wall, share) if w >= limit and s >= 0.5]
        if ours:
            w, s = max(ours)
            raise AssertionError(f"a {w * 1000:.0f} ms stall of the GUI thread while the process used {s:.1f} cores")
        t2 = time.perf_counter()
        qtbot.wait(1000)
        idle = self.gaps(t2, time.perf_counter())
        pytest.skip(f"machine too busy to measure GUI stalls: a {gaps.max() * 1000:.0f} ms gap while the process got "
                    f"little CPU (idle event loop right after: {idle.max() * 1000:.0f} ms gaps)")

    @staticmethod
    def describe(gaps, what: str) -> str:
        return f"{what}: {len(gaps) - 1} beats, max gap {gaps.max() * 1000:.0f} ms"
