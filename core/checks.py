"""Checks of images and masks that every room uses (the model, training, the plugin).

Every check raises :class:`InputError` naming the problem and, when given, the source
(a file name or a layer name), so that no malformed array reaches torch.
"""

from __future__ import annotations

import numpy as np

from napari_pixeldrl.core.errors import InputError


def source_suffix(source: str | None) -> str:
    return f" in {source}" if source else ""


def check_finite_numeric(array: np.ndarray, source: str | None = None) -> np.ndarray:
    """Refuse non-numeric dtypes and NaN/Inf values."""
    array = np.asarray(array)
    if array.dtype == bool:
        array = array.astype(np.uint8)
    if not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)):
        raise InputError(f"image dtype {array.dtype} is not numeric{source_suffix(source)}")
    if array.size == 0:
        raise InputError(f"image is empty (shape {array.shape}){source_suffix(source)}")
    if np.issubdtype(array.dtype, np.floating) and not np.isfinite(array).all():
        bad = int((~np.isfinite(array)).sum())
        raise InputError(f"image holds {bad} NaN or Inf values{source_suffix(source)}")
    return array


def grey_of_rgb_mask(mask: np.ndarray, source: str | None = None) -> np.ndarray:
    """A grey mask saved as RGB(A), (H, W, 3|4), as (H, W): all colour channels must agree."""
    if not (mask[..., :3] == mask[..., :1]).all():
        raise InputError(f"mask is a colour image, not a label image{source_suffix(source)}")
    return mask[..., 0]


def scored_pair(pred, truth, label: int | None = None, pred_source: str | None = None,
                truth_source: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """A prediction and its ground truth as boolean masks for the metrics, with the checks
    training uses (numeric, no NaN, no ambiguous labels).

    Without ``label`` each must hold a single object value (any one: 1, 255, ...); several
    are refused, because scoring their union would be a silent wrong answer. With ``label``
    the ground truth's pixels of that label are the object (none: an empty mask, as for a
    dataset slice without the object), and so are the prediction's when it holds several
    object values; a prediction with one object value (a binary mask) is taken as it is.
    """
    def one(mask, source, is_truth: bool) -> np.ndarray:
        mask = np.asarray(mask)
        if label is None or (not is_truth and np.unique(mask[mask != 0]).size <= 1):
            return binarize_mask(mask, source=source).astype(bool)
        return check_finite_numeric(mask, source) == label

    return one(pred, pred_source, False), one(truth, truth_source, True)


def binarize_mask(
    mask: np.ndarray,
    shape: tuple[int, ...] | None = None,
    source: str | None = None,
    label: int | None = None,
) -> np.ndarray:
    """Turn a mask into uint8 {0, 1}, refusing ambiguity.

    ``label`` picks one object label. Without it, a mask with a single nonzero value
    (1, 255, ...) is binarised; a mask with several object labels is refused, because
    merging them silently would train or score the wrong object.
    """
    mask = np.asarray(mask)
    if mask.ndim == 3 and mask.shape[-1] in (3, 4) and shape is not None and mask.shape[:2] == tuple(shape[-2:]):
        mask = grey_of_rgb_mask(mask, source)
    check_finite_numeric(mask, source)
    if shape is not None and tuple(mask.shape) != tuple(shape):
        raise InputError(f"mask shape {tuple(mask.shape)} does not match image shape {tuple(shape)}{source_suffix(source)}")
    if label is not None:
        if not (mask == label).any():
            values = np.unique(mask)
            raise InputError(f"mask has no pixel with label {label} (labels present: {values.tolist()[:10]}){source_suffix(source)}")
        return (mask == label).astype(np.uint8)
    values = np.unique(mask)
    objects = values[values != 0]
    if objects.size > 1:
        raise InputError(
            f"mask holds several object labels {objects.tolist()[:10]}{source_suffix(source)}; "
            "choose one (label=N in Python, --label N on the command line, Object label in the Evaluate widget)"
        )
    return (mask != 0).astype(np.uint8)
