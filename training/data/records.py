"""The slices a dataset loader returns: one :class:`SliceRecord` per slice, held in a :class:`SliceSet`."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class SliceRecord:
    """One 2D slice ready for the network.

    ``image`` is (C, H, W) float32 in [0, 1] (``normalize_slice``, each channel on its own);
    ``mask`` is (H, W) uint8 {0, 1}; ``spacing`` is the in-plane (row, column) spacing in mm
    (1.0 where the file format carries none); ``slice_index`` is the slice's number within
    its patient (LGG: the ``n`` of ``<CASE>_<n>.tif``; volumes: the axial index z).
    """

    image: np.ndarray
    mask: np.ndarray
    patient: str
    slice_index: int
    spacing: tuple[float, float]
    source: str

    @property
    def positive(self) -> bool:
        return bool(self.mask.any())


@dataclass
class SliceSet:
    """Parallel lists, one entry per slice, in loading order (patients sorted, slices by index)."""

    images: list[np.ndarray]
    masks: list[np.ndarray]
    patients: list[str]
    slice_index: list[int]
    spacing: list[tuple[float, float]]
    sources: list[str]
    kind: str = ""
    root: str = ""
    # Files left out because they could not be read: (file, reason). See load_dataset.
    skipped: list[tuple[str, str]] = field(default_factory=list)
    from_cache: bool = False
    positive: np.ndarray | None = None  # bool per slice: the mask holds object

    def __post_init__(self) -> None:
        n = len(self.images)
        for name in ("masks", "patients", "slice_index", "spacing", "sources"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"SliceSet: {name} has {len(getattr(self, name))} entries, images has {n}")
        if self.positive is None:
            self.positive = np.fromiter((bool(m.any()) for m in self.masks), dtype=bool, count=n)
        else:
            self.positive = np.asarray(self.positive, dtype=bool)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> SliceRecord:
        return SliceRecord(self.images[i], self.masks[i], self.patients[i], self.slice_index[i], self.spacing[i], self.sources[i])

    def __iter__(self):
        return (self[i] for i in range(len(self)))

    @property
    def in_channels(self) -> int:
        if not self.images:
            raise ValueError("empty SliceSet has no channel count")
        return int(self.images[0].shape[0])

    @property
    def patient_ids(self) -> list[str]:
        """Distinct patients, in order of first appearance."""
        return list(dict.fromkeys(self.patients))

    def subset(self, indices) -> "SliceSet":
        """A new SliceSet of the given slices (arrays are shared, not copied)."""
        idx = [int(i) for i in np.asarray(indices, dtype=np.int64).ravel()]
        n = len(self)
        bad = [i for i in idx if not -n <= i < n]
        if bad:
            raise IndexError(f"slice indices out of range for a set of {n}: {bad[:5]}")
        return SliceSet(
            images=[self.images[i] for i in idx],
            masks=[self.masks[i] for i in idx],
            patients=[self.patients[i] for i in idx],
            slice_index=[self.slice_index[i] for i in idx],
            spacing=[self.spacing[i] for i in idx],
            sources=[self.sources[i] for i in idx],
            kind=self.kind,
            root=self.root,
            skipped=list(self.skipped),
            from_cache=self.from_cache,
            positive=self.positive[idx] if idx else np.zeros(0, dtype=bool),
        )

    def summary(self) -> dict[str, int]:
        return {"patients": len(self.patient_ids), "slices": len(self), "positive_slices": int(self.positive.sum())}
