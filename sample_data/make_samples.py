"""Cut the small samples in this folder from the real data in ../shared/data.

Run from the project root (the folder holding pyproject.toml)::

    python sample_data/make_samples.py [--data ../shared/data]

Both patients are in the *test* part of the default split by patient (seed 0), so the
bundled models, trained on the train part, never saw them and the demo's figures are
honest test figures.

LGG: slices 18..25 of patient TCGA_DU_7306_19930512 (all with tumour), stacked as a
(Z, 256, 256, 3) uint8 TIF and its (Z, 256, 256) uint8 {0, 1} mask TIF.
Heart: 8 consecutive axial slices of la_004 around the slice with the largest atrium
area, written as NIfTI with the affine's origin moved to the first kept slice, so the
slab sits where it sat in the full volume.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import tifffile

HERE = Path(__file__).resolve().parent
LGG_CASE = "TCGA_DU_7306_19930512"
LGG_SLICES = range(18, 26)
HEART_CASE = "la_004"
HEART_SLICES = 8


def make_lgg(data: Path) -> None:
    folder = data / "lgg" / "kaggle_3m" / LGG_CASE
    images = [tifffile.imread(folder / f"{LGG_CASE}_{i}.tif") for i in LGG_SLICES]
    masks = [tifffile.imread(folder / f"{LGG_CASE}_{i}_mask.tif") for i in LGG_SLICES]
    image = np.stack(images).astype(np.uint8)
    mask = (np.stack(masks) > 0).astype(np.uint8)
    assert image.shape[1:] == (256, 256, 3) and all(m.any() for m in mask)
    tifffile.imwrite(HERE / "lgg_image.tif", image, compression="zlib", photometric="rgb")
    tifffile.imwrite(HERE / "lgg_mask.tif", mask, compression="zlib")
    meta = {
        "case": LGG_CASE,
        "slices": [f"{LGG_CASE}_{i}.tif" for i in LGG_SLICES],
        "channels": ["pre-contrast", "FLAIR", "post-contrast"],
        "source": "kaggle_3m (Buda, Saha & Mazurowski 2019), TCIA TCGA-LGG, CC BY 3.0",
    }
    (HERE / "lgg.json").write_text(json.dumps(meta, indent=2) + "\n")


def make_heart(data: Path) -> None:
    folder = data / "heart" / "Task02_Heart"
    img = nib.load(folder / "imagesTr" / f"{HEART_CASE}.nii.gz")
    lab = nib.load(folder / "labelsTr" / f"{HEART_CASE}.nii.gz")
    image = np.asanyarray(img.dataobj)  # (X, Y, Z) on disk
    label = (np.asanyarray(lab.dataobj) > 0).astype(np.uint8)
    area = label.sum(axis=(0, 1))
    centre = int(np.argmax(area))
    z0 = max(0, min(centre - HEART_SLICES // 2, image.shape[2] - HEART_SLICES))
    z1 = z0 + HEART_SLICES
    affine = img.affine.copy()
    affine[:3, 3] = img.affine[:3, :3] @ np.array([0, 0, z0]) + img.affine[:3, 3]
    for name, arr, dtype in (("heart_image.nii.gz", image, np.int16), ("heart_mask.nii.gz", label, np.uint8)):
        out = nib.Nifti1Image(np.ascontiguousarray(arr[:, :, z0:z1]).astype(dtype), affine)
        out.set_qform(affine, code=1)
        out.set_sform(affine, code=1)
        out.header.set_zooms(img.header.get_zooms()[:3])
        nib.save(out, HERE / name)
    meta = {
        "case": HEART_CASE,
        "z_range_in_source": [z0, z1],
        "structure": "left atrium",
        "source": "Medical Segmentation Decathlon Task02_Heart (King's College London), CC-BY-SA 4.0",
    }
    (HERE / "heart.json").write_text(json.dumps(meta, indent=2) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    args = parser.parse_args()
    make_lgg(args.data)
    make_heart(args.data)
    for p in sorted(HERE.glob("*")):
        if p.suffix in (".tif", ".gz", ".json"):
            print(f"{p.name}: {p.stat().st_size / 1024:.0f} KiB")


if __name__ == "__main__":
    main()
