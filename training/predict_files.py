"""``pixeldrl predict`` on one file or on a whole folder.

A folder run segments every image file (TIF, PNG, NIfTI) in it and writes each mask under
the same name in the output folder (NIfTI keeps its geometry). A file it cannot use is
listed with the reason and the run goes on. Masks are written atomically, so a mask that
is there is whole: a second run skips them and so resumes where a stopped one ended.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from napari_pixeldrl.core.errors import PixelDRLError
from napari_pixeldrl.core.io import IMAGE_SUFFIXES, read_image, split_suffix, write_mask
from napari_pixeldrl.model.inference import iter_segment

from .predict import run_with_progress


def segment_file(model, config, source: Path, output: Path, *, start_mask=None, progress: bool = False, **options):
    """Segment one image file and write its mask (0/1 in NIfTI, 0/255 in TIF and PNG, like
    the LGG release, visible in any viewer). Returns the Segmentation."""
    image = read_image(source)
    seg = run_with_progress(iter_segment(model, config, image.array, source=str(source), start_mask=start_mask,
                                         **options), "segmenting", enabled=progress)
    mask = seg.mask
    if split_suffix(output)[1] not in (".nii", ".nii.gz"):
        mask = (mask * 255).astype(np.uint8)
    write_mask(output, mask, like=image)
    return seg


@dataclass
class FolderResult:
    segmented: list[str] = field(default_factory=list)
    already_done: list[str] = field(default_factory=list)  # a mask was there: skipped (resume)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (file, why)
    not_images: list[str] = field(default_factory=list)  # other files in the folder


def segment_folder(model, config, in_dir: Path, out_dir: Path, *, overwrite: bool = False, progress: bool = False,
                   **options) -> FolderResult:
    """Segment every image file of ``in_dir`` into ``out_dir`` (see the module's docstring)."""
    result = FolderResult()
    files = []
    for path in sorted(p for p in Path(in_dir).iterdir() if p.is_file() and not p.name.startswith(".")):
        (files if split_suffix(path)[1] in IMAGE_SUFFIXES else result.not_images).append(path)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(files), unit="file", desc="segmenting", file=sys.stderr, dynamic_ncols=True)
    try:
        for path in files:
            output = Path(out_dir) / path.name
            if output.exists() and not overwrite:
                result.already_done.append(path.name)
            else:
                try:
                    segment_file(model, config, path, output, **options)
                    result.segmented.append(path.name)
                except PixelDRLError as err:  # unreadable, wrong channels, constant, ...: listed, the run goes on
                    result.failed.append((path.name, str(err)))
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    return result
