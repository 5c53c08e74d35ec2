"""Reading images and masks, writing masks: one convention for the CLI, the loaders and the plugin.

Axis convention (used everywhere in this package):

* NIfTI volumes are returned as ``(Z, Y, X) = np.transpose(data, (2, 1, 0))``: axial slices
  first, so ``volume[z]`` is one axial slice (rows = Y, columns = X), which is also the
  order napari shows. ``spacing`` is ``(sz, sy, sx)`` in mm from the header and the 4x4
  affine is kept so that a mask written back lands on the same grid.
* A 2D NIfTI, or a volume of one slice, is returned as ``(Y, X)`` (transposed the same way)
  with ``spacing = (sy, sx)``.
* A 4D NIfTI ``(X, Y, Z, C)`` (several modalities, as in some MSD tasks) is returned as
  ``(C, Z, Y, X)`` with the spatial spacing ``(sz, sy, sx)``.
* TIF and PNG are returned as stored: ``(H, W)`` or ``(H, W, C)`` (a multi-page TIF as
  ``(Z, H, W)``); their spacing is 1 per spatial axis.

Errors: a missing, empty or undecodable file raises :class:`UnreadableFileError` (an
:class:`~napari_pixeldrl.core.errors.InputError`) naming the file.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from napari_pixeldrl.core.atomic import atomic_write
from napari_pixeldrl.core.errors import InputError
from napari_pixeldrl.core.checks import binarize_mask, grey_of_rgb_mask

NIFTI_SUFFIXES = (".nii.gz", ".nii")
TIF_SUFFIXES = (".tif", ".tiff")
PNG_SUFFIXES = (".png",)
IMAGE_SUFFIXES = NIFTI_SUFFIXES + TIF_SUFFIXES + PNG_SUFFIXES


class UnreadableFileError(InputError):
    """A file that is missing, empty or cannot be decoded (as opposed to one that is well formed but unusable).

    ``path`` is the file at fault, so that a caller that skips such files can list them.
    """

    def __init__(self, message: str, path: str | os.PathLike | None = None):
        super().__init__(message)
        self.path = None if path is None else str(path)


@dataclass
class ImageFile:
    """An image read from disk, in this package's axis convention (see the module docstring)."""

    array: np.ndarray
    spacing: tuple[float, ...]
    affine: np.ndarray | None
    format: str  # 'nifti' | 'tif' | 'png'
    path: str
    disk_shape: tuple[int, ...] | None = None  # the array's shape as stored (NIfTI: X, Y, Z, ...)
    # NIfTI: ((qform, qform_code), (sform, sform_code)) as stored, so that a mask written
    # back keeps both (they may differ, or one be unset).
    nifti_forms: tuple | None = None


def split_suffix(path: str | os.PathLike) -> tuple[str, str]:
    """``('name', '.nii.gz')`` for ``dir/name.nii.gz``; the suffix is lower-cased."""
    name = Path(path).name
    lower = name.lower()
    for suffix in IMAGE_SUFFIXES:
        if lower.endswith(suffix):
            return name[: -len(suffix)], suffix
    return Path(name).stem, Path(name).suffix.lower()


def file_format(path: str | os.PathLike) -> str:
    suffix = split_suffix(path)[1]
    if suffix in NIFTI_SUFFIXES:
        return "nifti"
    if suffix in TIF_SUFFIXES:
        return "tif"
    if suffix in PNG_SUFFIXES:
        return "png"
    raise InputError(f"unsupported file type {suffix!r}: {path} (supported: {', '.join(IMAGE_SUFFIXES)})")


def _check_exists(path: Path) -> None:
    if not path.exists():
        raise UnreadableFileError(f"file not found: {path}", path)
    if path.is_dir():
        raise UnreadableFileError(f"expected a file, got a folder: {path}", path)
    if path.stat().st_size == 0:
        raise UnreadableFileError(f"file is empty (0 bytes): {path}", path)


def load_nifti(path: str | os.PathLike):
    """``(nibabel image, decoded array in disk order)``; a truncated or foreign file fails here, naming it."""
    import nibabel as nib

    path = Path(path)
    _check_exists(path)
    try:
        img = nib.load(str(path))
        data = np.asanyarray(img.dataobj)
    except Exception as exc:  # nibabel raises many types (ImageFileError, EOFError, zlib.error, ...)
        raise UnreadableFileError(f"cannot read NIfTI file {path}: {exc}", path) from exc
    return img, data


def nifti_to_zyx(data: np.ndarray, zooms: tuple[float, ...]) -> tuple[np.ndarray, tuple[float, ...]]:
    """Disk order (X, Y, Z[, C]) to this package's order, and the spacing to match."""
    data = np.asarray(data)
    # Drop trailing singleton axes beyond the third (X, Y, Z, 1 -> X, Y, Z).
    while data.ndim > 3 and data.shape[-1] == 1:
        data = data[..., 0]
    zooms = tuple(float(z) for z in zooms)
    if data.ndim == 3 and data.shape[2] == 1:
        data = data[:, :, 0]
    if data.ndim == 2:
        return np.transpose(data, (1, 0)), (zooms[1], zooms[0])
    if data.ndim == 3:
        return np.transpose(data, (2, 1, 0)), (zooms[2], zooms[1], zooms[0])
    if data.ndim == 4:
        return np.transpose(data, (3, 2, 1, 0)), (zooms[2], zooms[1], zooms[0])
    raise InputError(f"NIfTI with {data.ndim} dimensions (shape {data.shape}) is not supported")


def read_image(path: str | os.PathLike) -> ImageFile:
    """Read a NIfTI, TIF or PNG file in this package's axis convention (module docstring)."""
    path = Path(path)
    fmt = file_format(path)
    _check_exists(path)
    if fmt == "nifti":
        img, data = load_nifti(path)
        zooms = tuple(img.header.get_zooms()) + (1.0, 1.0, 1.0)
        try:
            array, spacing = nifti_to_zyx(data, zooms)
        except InputError as exc:
            raise InputError(f"{exc}: {path}") from None
        forms = (img.get_qform(coded=True), img.get_sform(coded=True))
        return ImageFile(array, spacing, np.asarray(img.affine, dtype=np.float64), "nifti", str(path), tuple(data.shape),
                         forms)
    try:
        if fmt == "tif":
            import tifffile

            array = np.asarray(tifffile.imread(str(path)))
        else:
            from PIL import Image

            with Image.open(path) as im:
                im.load()
                array = np.asarray(im)
    except Exception as exc:
        raise UnreadableFileError(f"cannot read {fmt.upper()} file {path}: {exc}", path) from exc
    if array.size == 0:  # tifffile returns an empty array for a file whose pages cannot be found
        raise UnreadableFileError(f"no image data could be decoded from {fmt.upper()} file {path}", path)
    if array.ndim not in (2, 3):
        raise InputError(f"unsupported image shape {array.shape} in {path} (expected (H, W), (H, W, C) or (Z, H, W))")
    n_spatial = 2 if array.ndim == 2 or array.shape[-1] in (3, 4) else 3
    return ImageFile(array, (1.0,) * n_spatial, None, fmt, str(path), tuple(array.shape))


def read_mask(path: str | os.PathLike, shape: tuple[int, ...] | None = None, label: int | None = None) -> np.ndarray:
    """A mask file as uint8 {0, 1} in the same axis convention as :func:`read_image`.

    ``shape`` (the image's shape, spatial axes only) is checked; ``label`` picks one
    object label from a multi-label mask, which is otherwise refused.
    """
    image = read_image(path)
    if shape is None:
        return binarize_mask(label_array(image), source=image.path, label=label)
    return binarize_mask(image.array, shape, source=image.path, label=label)  # checks an RGB(A) grey mask itself


def label_array(image: ImageFile) -> np.ndarray:
    """A mask file's label values as stored, (H, W) for a grey mask saved as RGB(A) PNG/TIF."""
    array = image.array
    if image.format in ("tif", "png") and array.ndim == 3 and array.shape[-1] in (3, 4):
        return grey_of_rgb_mask(array, image.path)
    return array


def _mask_to_uint8(mask: np.ndarray, path: Path) -> np.ndarray:
    mask = np.asarray(mask)
    if mask.dtype == bool:
        return mask.astype(np.uint8)
    if not (np.issubdtype(mask.dtype, np.integer) or np.issubdtype(mask.dtype, np.floating)):
        raise InputError(f"mask dtype {mask.dtype} cannot be written to {path}")
    if mask.size and (not np.isfinite(mask).all() or mask.min() < 0 or mask.max() > 255 or (mask != np.round(mask)).any()):
        raise InputError(f"mask values must be integers in 0..255 to be written as uint8: {path}")
    return mask.astype(np.uint8)


def check_output_folder(folder: str | os.PathLike) -> Path:
    """Create ``folder`` if needed and prove a file can be written in it, before any long
    work whose result would go there; one clear error otherwise."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise InputError(f"cannot write into {folder}: it is a file, not a folder; choose another output path")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".pixeldrl-write-check.", suffix=".tmp")
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise InputError(f"cannot write into {folder} ({err.strerror or err}); choose another output path") from None
    return folder


def check_output_file(path: str | os.PathLike) -> Path:
    """:func:`check_output_folder` for a mask file: a supported suffix, not a folder, a
    parent folder that can be written."""
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{path} is a folder; give a file name, e.g. {path / ('mask' + IMAGE_SUFFIXES[0])}")
    file_format(path)
    check_output_folder(path.parent)
    return path


def write_mask(path: str | os.PathLike, mask: np.ndarray, like: ImageFile | None = None) -> Path:
    """Write ``mask`` as uint8 in the format given by the suffix, atomically.

    ``.nii``/``.nii.gz``: ``mask`` is in this package's order ((Z, Y, X) or (Y, X)) and is
    transposed back to disk order; ``like``'s affine is kept (without ``like``, a diagonal
    affine of unit spacing). ``.tif``/``.tiff``: 2D or a (Z, H, W) stack. ``.png``: 2D only.
    The file is written to a temporary name in the same folder and renamed, so a reader
    never sees half a file.
    """
    path = Path(path)
    fmt = file_format(path)
    data = _mask_to_uint8(mask, path)
    if like is not None:
        like_shape = tuple(like.array.shape)
        if like.format in ("tif", "png") and like.array.ndim == 3 and like.array.shape[-1] in (3, 4):
            like_shape = like_shape[:2]
        if like.format == "nifti" and like.array.ndim == 4:
            like_shape = like_shape[1:]
        if tuple(data.shape) != like_shape:
            raise InputError(f"mask shape {data.shape} does not match the image {like.path} of shape {like_shape}")
    if fmt == "png" and data.ndim != 2:
        raise InputError(f"PNG holds one 2D mask; got shape {data.shape} for {path} (use .tif or .nii.gz)")
    if data.ndim not in (2, 3):
        raise InputError(f"mask must be 2D or 3D, got shape {data.shape} for {path}")

    def write(tmp: str) -> None:
        if fmt == "nifti":
            import nibabel as nib

            disk = np.transpose(data, (1, 0)) if data.ndim == 2 else np.transpose(data, (2, 1, 0))
            if like is not None and like.disk_shape is not None and len(like.disk_shape) >= 3 and data.ndim == 2:
                disk = disk[:, :, None]  # the image was one slice stored as (X, Y, 1)
            if like is not None and like.affine is not None:
                affine = np.asarray(like.affine, dtype=np.float64)
            else:
                sp = tuple(like.spacing) if like is not None else (1.0,) * data.ndim
                sp = sp[-data.ndim:]
                affine = np.diag(list(sp[::-1]) + [1.0] * (4 - data.ndim))
            img = nib.Nifti1Image(np.ascontiguousarray(disk), affine)
            if like is not None and like.nifti_forms is not None:
                (qform, qcode), (sform, scode) = like.nifti_forms
                img.set_qform(qform, code=int(qcode))
                img.set_sform(sform, code=int(scode))
            else:
                img.set_qform(affine, code=1)
                img.set_sform(affine, code=1)
            img.set_data_dtype(np.uint8)
            nib.save(img, tmp)
        elif fmt == "tif":
            import tifffile

            tifffile.imwrite(tmp, data, compression="zlib")
        else:
            from PIL import Image

            Image.fromarray(data, mode="L").save(tmp, format="PNG")

    return atomic_write(path, write, keep_suffix=split_suffix(path)[1])
