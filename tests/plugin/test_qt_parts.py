"""The widgets' shared Qt parts, in a shown napari window."""

from __future__ import annotations

import pytest
from _helpers import require_napari_display

require_napari_display()

from napari_pixeldrl import _qt_parts as Q  # noqa: E402


def newest_toast():
    from napari._qt.dialogs.qt_notification import NapariQtNotification

    return NapariQtNotification._instances[-1] if NapariQtNotification._instances else None


def test_a_long_notification_opens_to_its_full_text(make_napari_viewer, qtbot):
    make_napari_viewer(show=True)
    message = ("cannot read runs/x/checkpoint_best.safetensors: it is not a napari-pixeldrl checkpoint; "
               "pick a .safetensors file written by pixeldrl train, or a bioimage.io .zip from pixeldrl export")
    Q.notify("warning", message)
    toast = newest_toast()
    if toast is None or toast.message.text() != message:
        pytest.skip("napari showed no toast in this session (its window is not active)")
    qtbot.waitUntil(lambda: bool(toast.property("expanded")), timeout=3000)
    assert toast.timer.interval() >= 60 * len(message)  # up long enough to read
    # napari grows the toast by an animation after it sets "expanded": wait for it, as a loaded machine is slow
    qtbot.waitUntil(lambda: toast.height() > toast.minimumHeight(), timeout=3000)


def test_a_short_notification_stays_as_napari_draws_it(make_napari_viewer, qtbot):
    make_napari_viewer(show=True)
    Q.notify("info", "Training cancelled.")
    toast = newest_toast()
    if toast is None or toast.message.text() != "Training cancelled.":
        pytest.skip("napari showed no toast in this session (its window is not active)")
    qtbot.wait(400)
    assert not toast.property("expanded")
