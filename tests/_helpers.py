"""Small helpers shared by the test modules."""


def drain(gen):
    """Run a generator to the end: (the values it yielded, its return value)."""
    msgs = []
    while True:
        try:
            msgs.append(next(gen))
        except StopIteration as stop:
            return msgs, stop.value
