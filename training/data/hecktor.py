"""HECKTOR 2020 (MICCAI head and neck tumour challenge), PET channel only as in the paper.

Layout: ``hecktor_nii/<case>/<case>_ct.nii.gz``, ``<case>_pt.nii.gz`` and the primary
tumour mask ``<case>_ct_gtvt.nii.gz``; ``root`` may be ``hecktor_nii`` or the folder
holding it. The PET volume lies on its own (coarser) grid: it is resampled onto the mask's
grid with ``nibabel.processing.resample_from_to`` (linear, order=1; outside the PET field of
view = 0), then both are read in this package's (Z, Y, X) order and cut into axial slices
(1, H, W). In-plane spacing from the mask's header. The CT file is not read.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from napari_pixeldrl.core.errors import InputError
from napari_pixeldrl.core.io import UnreadableFileError, load_nifti, nifti_to_zyx
from napari_pixeldrl.core.checks import binarize_mask

from .items import Item, RawSlice

LAYOUT = "hecktor_nii/<case>/<case>_pt.nii.gz with <case>_ct_gtvt.nii.gz"


def resolve_root(root: Path) -> Path:
    return root / "hecktor_nii" if (root / "hecktor_nii").is_dir() else root


def scan(root: Path) -> tuple[list[Item], list[tuple[str, str]]]:
    root = resolve_root(root)
    items: list[Item] = []
    problems: list[tuple[str, str]] = []
    for case in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        pet = case / f"{case.name}_pt.nii.gz"
        mask = case / f"{case.name}_ct_gtvt.nii.gz"
        if pet.is_file() and mask.is_file():
            items.append(Item(case.name, pet, mask))
        elif pet.is_file():
            problems.append((str(pet), f"no mask {mask.name}"))
        elif mask.is_file():
            problems.append((str(mask), f"no PET {pet.name}"))
    return items, problems


def read(item: Item, label: int | None) -> list[RawSlice]:
    import nibabel as nib
    from nibabel.processing import resample_from_to

    pet_img, pet_data = load_nifti(item.image)
    mask_img, mask_data = load_nifti(item.mask)
    if pet_data.ndim != 3 or mask_data.ndim != 3:
        raise InputError(f"expected 3D PET and mask, got {pet_data.shape} and {mask_data.shape}: {item.image}, {item.mask}")
    try:
        pet_on_mask = resample_from_to(
            nib.Nifti1Image(np.asarray(pet_data, dtype=np.float32), pet_img.affine),
            (mask_data.shape, mask_img.affine),
            order=1,
            mode="constant",
            cval=0.0,
        )
    except Exception as exc:
        raise UnreadableFileError(f"cannot resample {item.image} onto {item.mask}: {exc}", item.image) from exc
    zooms = tuple(mask_img.header.get_zooms()[:3])
    pet, spacing = nifti_to_zyx(np.asanyarray(pet_on_mask.dataobj), zooms)
    mask, _ = nifti_to_zyx(mask_data, zooms)
    if pet.ndim == 2:  # one-slice volumes come back as (Y, X)
        pet, mask = pet[None], mask[None]
    source = f"{item.mask} (PET {item.image})"
    if label is not None and not (mask == label).any():
        mask = np.zeros(mask.shape, dtype=np.uint8)
    else:
        mask = binarize_mask(mask, pet.shape, source=source, label=label)
    in_plane = (float(spacing[-2]), float(spacing[-1]))
    return [RawSlice(z, pet[z][None], mask[z], in_plane, str(item.image)) for z in range(pet.shape[0])]
