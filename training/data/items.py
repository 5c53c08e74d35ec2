"""What a layout scan finds (one :class:`Item` per patient or file pair) and what reading it yields."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class Item:
    """The files of one unit of reading: an image and its mask (plus any extra input)."""

    patient: str
    image: Path
    mask: Path
    index: int | None = None  # the slice number when one item is one 2D slice (LGG)

    @property
    def files(self) -> tuple[Path, ...]:
        return (self.image, self.mask)


@dataclass
class RawSlice:
    """One slice before normalisation: image (C, H, W) as read, mask (H, W) uint8 {0, 1}."""

    index: int
    image: np.ndarray
    mask: np.ndarray
    spacing: tuple[float, float]
    source: str
    # The value that marks the object in the mask file (1, 255, ...), when no label was
    # chosen; files of one dataset must agree (load_dataset checks).
    object_value: int | None = None
