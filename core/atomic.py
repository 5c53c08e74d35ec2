"""Atomic file writes: a reader never sees half a file, a crash or a full disk leaves
the previous file intact."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable


def atomic_write(path: str | os.PathLike, write: Callable[[str], object], *, keep_suffix: str = "") -> Path:
    """Call ``write(tmp_path)`` and move the result over ``path`` only if it succeeded.

    The temporary file lies in the same folder (so the final rename is atomic) and ends
    with ``keep_suffix``, for writers that choose the format from the name (nibabel)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{keep_suffix}", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp (or the writer) made it 0600: the usual permissions
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path
