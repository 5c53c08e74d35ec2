"""Medical Segmentation Decathlon task folder (e.g. ``Task02_Heart``).

Layout: ``dataset.json``, ``imagesTr/<case>.nii.gz``, ``labelsTr/<case>.nii.gz``. The pairs
are taken from ``dataset.json``'s ``training`` list when present, otherwise by equal file
names in ``imagesTr`` and ``labelsTr``. macOS ``._*`` files are ignored. Volumes are read
with :func:`napari_pixeldrl.core.io.read_image` as (Z, Y, X) and cut into axial slices (1, H, W)
(a 4D multi-modal volume gives (C, H, W)); in-plane spacing (sy, sx) from the header.
Patient = the file name without ``.nii.gz``; slice index = z.
"""

from __future__ import annotations

import json
from pathlib import Path

from napari_pixeldrl.core.errors import InputError
from napari_pixeldrl.core.io import NIFTI_SUFFIXES, split_suffix

from .items import Item, RawSlice
from .slicing import read_pair

LAYOUT = "dataset.json, imagesTr/<case>.nii.gz, labelsTr/<case>.nii.gz"


def _visible_nifti(folder: Path) -> dict[str, Path]:
    if not folder.is_dir():
        return {}
    return {
        split_suffix(f)[0]: f
        for f in sorted(folder.iterdir())
        if f.is_file() and not f.name.startswith(".") and split_suffix(f)[1] in NIFTI_SUFFIXES
    }


def extra_files(root: Path) -> list[Path]:
    """Files that are not images but shape the dataset (part of the cache key)."""
    return [root / "dataset.json"] if (root / "dataset.json").is_file() else []


def scan(root: Path) -> tuple[list[Item], list[tuple[str, str]]]:
    items: list[Item] = []
    problems: list[tuple[str, str]] = []
    meta = root / "dataset.json"
    if meta.is_file():
        try:
            training = json.loads(meta.read_text())["training"]
            pairs = [(root / e["image"], root / e["label"]) for e in training]
        except (ValueError, KeyError, TypeError) as exc:
            raise InputError(f"cannot read the training list of {meta}: {exc}") from exc
        for image, mask in pairs:
            if image.name.startswith("._"):
                continue
            missing = [str(p) for p in (image, mask) if not p.is_file()]
            if missing:
                problems.append((missing[0], "listed in dataset.json but missing"))
                continue
            items.append(Item(split_suffix(image)[0], image, mask))
    else:
        images, labels = _visible_nifti(root / "imagesTr"), _visible_nifti(root / "labelsTr")
        for name, image in images.items():
            if name in labels:
                items.append(Item(name, image, labels[name]))
            else:
                problems.append((str(image), "no label in labelsTr"))
        problems += [(str(p), "no image in imagesTr") for n, p in labels.items() if n not in images]
    items.sort(key=lambda it: it.patient)
    return items, problems


def read(item: Item, label: int | None) -> list[RawSlice]:
    return read_pair(item.image, item.mask, label)
