"""A plain folder of image/mask pairs (PNG, TIF, NIfTI), for a user's own data.

Pairing rule (checked in this order):

1. ``root/images/`` with ``root/masks/`` (or ``root/labels/``): an image and a mask pair up
   when their names without suffix are equal, or the mask's is the image's plus ``_mask``
   (``images/a.png`` + ``masks/a.png`` or ``masks/a_mask.png``). Suffixes may differ.
2. Otherwise, files directly in ``root``: ``X.<ext>`` pairs with ``X_mask.<ext>``.

Hidden files (``.*``, including macOS ``._*``) are ignored. Supported: .png, .tif/.tiff,
.nii/.nii.gz. A 2D image gives one slice: (H, W) -> (1, H, W), RGB(A) -> (3, H, W) with alpha
dropped. A NIfTI volume (or a multi-page TIF) is cut into axial slices (1, H, W) in this
package's (Z, Y, X) order. Patient id: the name without suffix, or the part before ``__``
(``p01__12.png`` is slice 12 of patient ``p01``), so that 2D slices of one patient are kept
together by the patient split.
"""

from __future__ import annotations

from pathlib import Path

from napari_pixeldrl.core.io import IMAGE_SUFFIXES, split_suffix

from .items import Item, RawSlice
from .slicing import read_pair

LAYOUT = "images/ + masks/ (or labels/) with matching names, or X.<ext> + X_mask.<ext>"


def _files(folder: Path) -> list[Path]:
    return sorted(
        f for f in folder.iterdir() if f.is_file() and not f.name.startswith(".") and split_suffix(f)[1] in IMAGE_SUFFIXES
    )


def _patient_and_index(stem: str) -> tuple[str, int | None]:
    patient, sep, rest = stem.partition("__")
    if sep and rest.isdigit():
        return patient, int(rest)
    return (patient if sep else stem), None


def scan(root: Path) -> tuple[list[Item], list[tuple[str, str]]]:
    pairs: list[tuple[str, Path, Path]] = []
    problems: list[tuple[str, str]] = []
    mask_dir = next((root / d for d in ("masks", "labels") if (root / d).is_dir()), None)
    if (root / "images").is_dir() and mask_dir is not None:
        masks = {split_suffix(f)[0]: f for f in _files(mask_dir)}
        used = set()
        for image in _files(root / "images"):
            stem = split_suffix(image)[0]
            key = stem if stem in masks else f"{stem}_mask" if f"{stem}_mask" in masks else None
            if key is None:
                problems.append((str(image), f"no mask named {stem}.* or {stem}_mask.* in {mask_dir}"))
                continue
            used.add(key)
            pairs.append((stem, image, masks[key]))
        problems += [(str(f), "no image for this mask") for k, f in masks.items() if k not in used]
    else:
        files = _files(root)
        by_stem = {split_suffix(f)[0]: f for f in files}
        for stem, f in by_stem.items():
            if stem.endswith("_mask"):
                if stem[: -len("_mask")] not in by_stem:
                    problems.append((str(f), "no image for this mask"))
                continue
            if f"{stem}_mask" in by_stem:
                pairs.append((stem, f, by_stem[f"{stem}_mask"]))
            else:
                problems.append((str(f), f"no mask {stem}_mask.*"))
    items = []
    counters: dict[str, int] = {}
    for stem, image, mask in sorted(pairs, key=lambda p: p[0]):
        patient, index = _patient_and_index(stem)
        if index is None:
            index = counters.get(patient, 0)
        counters[patient] = max(counters.get(patient, 0), index + 1)
        items.append(Item(patient, image, mask, index))
    items.sort(key=lambda it: (it.patient, it.index))
    return items, problems


def read(item: Item, label: int | None) -> list[RawSlice]:
    return read_pair(item.image, item.mask, label, index=item.index)
