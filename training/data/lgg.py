"""LGG brain FLAIR abnormality, Kaggle "lgg-mri-segmentation" release (Buda et al. 2019).

Layout: ``kaggle_3m/<CASE>/<CASE>_<n>.tif`` (256x256x3 uint8: pre-contrast, FLAIR,
post-contrast) with ``<CASE>_<n>_mask.tif`` (256x256, 0/255). ``root`` may be the
``kaggle_3m`` folder or the folder holding it. Patient = ``<CASE>``; slices sorted by ``n``
numerically; image read as (H, W, 3) and returned as (3, H, W); spacing unknown (1.0).
"""

from __future__ import annotations

import re
from pathlib import Path

from .items import Item, RawSlice
from .slicing import read_pair

LAYOUT = "kaggle_3m/<CASE>/<CASE>_<n>.tif with <CASE>_<n>_mask.tif"
_MASK = re.compile(r"^(?P<stem>.+_(?P<n>\d+))_mask\.tiff?$", re.IGNORECASE)
_IMAGE = re.compile(r"^(?P<stem>.+_(?P<n>\d+))\.tiff?$", re.IGNORECASE)


def resolve_root(root: Path) -> Path:
    return root / "kaggle_3m" if (root / "kaggle_3m").is_dir() else root


def scan(root: Path) -> tuple[list[Item], list[tuple[str, str]]]:
    """Items (one per slice) and problems (file, reason) for files without a partner."""
    root = resolve_root(root)
    items: list[Item] = []
    problems: list[tuple[str, str]] = []
    for case in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        masks, images = {}, {}
        for f in case.iterdir():
            if f.name.startswith(".") or not f.is_file():
                continue
            m = _MASK.match(f.name)
            if m:
                masks[m["stem"]] = (int(m["n"]), f)
                continue
            m = _IMAGE.match(f.name)
            if m:
                images[m["stem"]] = (int(m["n"]), f)
        for stem, (n, mask) in sorted(masks.items(), key=lambda kv: kv[1][0]):
            if stem in images:
                items.append(Item(case.name, images[stem][1], mask, n))
            else:
                problems.append((str(mask), "no image for this mask"))
        for stem, (n, image) in sorted(images.items(), key=lambda kv: kv[1][0]):
            if stem not in masks:
                problems.append((str(image), "no mask for this image"))
    return items, problems


def read(item: Item, label: int | None) -> list[RawSlice]:
    return read_pair(item.image, item.mask, label, index=item.index)
