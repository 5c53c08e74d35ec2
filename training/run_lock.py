"""One run at a time in a run folder.

A run holds an exclusive ``fcntl`` lock on ``<run folder>/.lock`` for as long as it
trains; a second run on the same folder is refused with the holder's process id, host
and start time. The operating system drops the lock when the holder exits, however it
exits (kill -9 included), so a stale lock file never blocks a resume.
"""

from __future__ import annotations

import json
import os
import socket
from datetime import datetime, timezone
from pathlib import Path

from napari_pixeldrl.core.errors import InputError

LOCK = ".lock"


class RunFolderLock:
    def __init__(self, folder):
        self.path = Path(folder) / LOCK
        self._fh = None

    def acquire(self) -> "RunFolderLock":
        import fcntl

        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fh = open(self.path, "a+")
        except OSError as err:
            raise InputError(f"cannot use {self.path.parent} as a run folder ({err.strerror or err}); "
                             "give another --out") from None
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            fh.seek(0)
            holder = fh.read().strip() or "another process"
            fh.close()
            raise InputError(f"{self.path.parent} is in use by another run ({holder}); wait for it to end, "
                             "or give another --out") from None
        fh.seek(0)
        fh.truncate()
        fh.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                             "started": datetime.now(timezone.utc).isoformat(timespec="seconds")}))
        fh.flush()
        self._fh = fh
        return self

    def release(self) -> None:
        if self._fh is not None:
            self._fh.close()  # closing drops the lock
            self._fh = None


def remove_stale_temporaries(folder) -> list[Path]:
    """Delete the temporary files that an interrupted atomic write left in ``folder``
    (``.<name>.<random>.tmp``); call it only while holding the folder's lock."""
    removed = []
    for tmp in Path(folder).glob(".*.tmp"):
        try:
            tmp.unlink()
            removed.append(tmp)
        except OSError:
            pass
    return removed
