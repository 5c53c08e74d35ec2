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
    one long gap.
    """

    def __init__(self, qtbot, interval_ms: int = 20):
        import time

        from qtpy.QtCore import QTimer

        self.beats: list[float] = []
        self.timer = QTimer()
        self.timer.setInterval(interval_ms)
        self.timer.timeout.connect(lambda: self.beats.append(time.perf_counter()))
        self.timer.start()
        qtbot.wait(200)  # let the event loop settle before anything is measured

    def stop(self) -> None:
        self.timer.stop()

    def gaps(self, t0: float, t1: float):
        import numpy as np

        return np.diff([t0, *[b for b in self.beats if t0 < b <= t1], t1])

    def assert_no_stall(self, qtbot, gaps, limit: float = 0.2) -> None:
        """Fail if a gap reached ``limit``, unless the idle event loop stalls as long right
        after (the machine is busy, not the GUI thread blocked): then skip, saying so. A
        stall the code causes fails on a quiet machine, and a busy one cannot fail the run."""
        import time

        import pytest

        if gaps.max() < limit:
            return
        t0 = time.perf_counter()
        qtbot.wait(1000)
        idle = self.gaps(t0, time.perf_counter())
        if idle.max() >= limit / 2:
            pytest.skip(f"machine too busy to measure GUI stalls: the idle event loop stalled {idle.max() * 1000:.0f} ms")
        assert gaps.max() < limit, f"a {gaps.max() * 1000:.0f} ms stall (idle stalls now: {idle.max() * 1000:.0f} ms)"

    @staticmethod
    def describe(gaps, what: str) -> str:
        return f"{what}: {len(gaps) - 1} beats, max gap {gaps.max() * 1000:.0f} ms"
