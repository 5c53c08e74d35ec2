"""Segmentation metrics of the paper: DICE, PPV, SEN, IoU, Boundary IoU and HD95.

Definitions (``/work/shared/METHOD.md`` sections 1 and 3; T = |truth|, P = |prediction|)::

    DICE = (2 TP + eps) / (T + P + eps)          PPV = (TP + eps) / (TP + FP + eps)
    SEN  = (TP + eps) / (TP + FN + eps)          IoU = (TP + eps) / (T + P - TP + eps)
    eps  = 1e-4

Masks are binary: any nonzero value is object (0.5 counts, as does 255).

Boundary IoU follows Cheng et al. (CVPR 2021) and their boundary-iou-api: band width
``d = max(1, round(0.02 * sqrt(H^2 + W^2)))`` (7 at 256x256, 9 at 320x320); the mask is
padded by one pixel of zeros, eroded ``d`` times with a 3x3 square and unpadded; the
boundary is the mask minus its erosion; ``BIoU = |Gb & Pb| / |Gb | Pb|``.

HD95 is MONAI's ``compute_hausdorff_distance(..., percentile=95)``: surfaces are the
mask XOR its binary erosion (scipy's default cross-shaped structure); the 95th
percentile of the distances from each surface to the other is taken, and the larger of
the two is returned. Distances are in pixels, or in the units of ``spacing`` when given.

Volumes are arrays (Z, H, W), Z the axial (slice) axis:

* DICE, PPV, SEN, IoU count voxels over the whole volume.
* HD95 uses 3D surfaces and 3D distances (spacing (z, y, x)).
* BIoU is only defined in 2D by the paper. The volume figure is the IoU of the stacked
  2D boundary bands: each axial slice gets its 2D band (d from that slice's H and W) and
  ``BIoU = sum_z |Gb_z & Pb_z| / sum_z |Gb_z | Pb_z|``. Pooling (rather than averaging
  per-slice BIoUs) weights slices by their boundary size and needs no rule for slices
  where the object is absent.

Empty masks never raise:

* both empty: DICE, PPV, SEN, IoU come from the eps formula (= 1 exactly), BIoU = 1,
  HD95 = 0. The prediction is perfect.
* exactly one empty: DICE, PPV, SEN, IoU from the eps formula (near 0, or exactly 1
  for PPV with an empty prediction / SEN with an empty truth, as the formula gives),
  BIoU = 0, and HD95 = the image diagonal ``sqrt(sum((n_i * spacing_i)^2))`` (pixels, or
  mm with a spacing) as a penalty. A finite penalty rather than NaN or inf keeps means
  honest: dropping such cases would flatter them.

Every result dict also carries ``empty_pred`` and ``empty_gt`` flags, so that
:func:`aggregate` can count the cases: ``empty_pred`` (prediction empty, truth not),
``empty_gt`` (truth empty, prediction not) and ``both_empty``, which exclude each other.

:func:`aggregate` reports, per metric, the mean and the *population* standard
deviation (``np.std``, ddof = 0); the paper does not say which it used.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import torch
from monai.metrics import compute_hausdorff_distance
from scipy import ndimage

from napari_pixeldrl.core.errors import InputError
from napari_pixeldrl.core.checks import check_finite_numeric

EPS = 1e-4
METRIC_NAMES = ("dice", "ppv", "sen", "iou", "biou", "hd95")
BIOU_DILATION_RATIO = 0.02
HD_PERCENTILE = 95

Spacing = float | Sequence[float] | None


# --------------------------------------------------------------------------- inputs


def _check_pair(pred, gt, ndim: int, what: str) -> tuple[np.ndarray, np.ndarray]:
    """Validate a prediction/truth pair and return them as bool arrays."""
    pred, gt = np.asarray(pred), np.asarray(gt)
    if pred.shape != gt.shape:
        raise InputError(f"prediction shape {pred.shape} does not match truth shape {gt.shape}")
    if pred.ndim != ndim:
        raise InputError(f"{what} metrics need {ndim}D masks, got shape {pred.shape}")
    pred = check_finite_numeric(pred, "the prediction")
    gt = check_finite_numeric(gt, "the truth")
    return pred != 0, gt != 0


def _check_spacing(spacing: Spacing, ndim: int) -> tuple[float, ...] | None:
    """None, or one positive finite spacing per axis (one number, or a 1-sequence, is isotropic)."""
    if spacing is None:
        return None
    values = np.atleast_1d(np.asarray(spacing, dtype=float)).ravel()
    if values.size == 1:
        values = np.repeat(values, ndim)
    if values.size != ndim or not np.all(np.isfinite(values)) or not np.all(values > 0):
        raise InputError(f"spacing must be one positive number or {ndim} of them, got {spacing!r}")
    return tuple(float(v) for v in values)


# --------------------------------------------------------------------------- metrics


def overlap_metrics(pred: np.ndarray, gt: np.ndarray) -> dict[str, float]:
    """DICE, PPV, SEN and IoU of two bool arrays of any shape (eps formulas)."""
    tp = int(np.count_nonzero(pred & gt))
    p = int(np.count_nonzero(pred))
    t = int(np.count_nonzero(gt))
    fp, fn = p - tp, t - tp
    return {
        "dice": (2 * tp + EPS) / (t + p + EPS),
        "ppv": (tp + EPS) / (tp + fp + EPS),
        "sen": (tp + EPS) / (tp + fn + EPS),
        "iou": (tp + EPS) / (t + p - tp + EPS),
    }


def boundary_width(height: int, width: int) -> int:
    """Band width d of Boundary IoU for an H x W image: max(1, round(0.02 * diagonal))."""
    return max(1, int(round(BIOU_DILATION_RATIO * math.hypot(height, width))))


def mask_boundary(mask: np.ndarray, d: int | None = None) -> np.ndarray:
    """Inner boundary band of a 2D mask: mask minus its d-fold 3x3 erosion (zero-padded)."""
    mask = np.asarray(mask) != 0
    if d is None:
        d = boundary_width(*mask.shape)
    padded = np.pad(mask, 1, constant_values=False)
    eroded = ndimage.binary_erosion(padded, structure=np.ones((3, 3), bool), iterations=d)
    return mask & ~eroded[1:-1, 1:-1]


def _boundary_counts(pred: np.ndarray, gt: np.ndarray) -> tuple[int, int]:
    """|Gb & Pb| and |Gb | Pb| of one 2D slice."""
    pb, gb = mask_boundary(pred), mask_boundary(gt)
    return int(np.count_nonzero(pb & gb)), int(np.count_nonzero(pb | gb))


def _ratio_or_one(inter: int, union: int) -> float:
    # union == 0 only when both masks are empty: a perfect (empty) prediction.
    return 1.0 if union == 0 else inter / union


def _diagonal(shape: tuple[int, ...], spacing: tuple[float, ...] | None) -> float:
    scale = np.ones(len(shape)) if spacing is None else np.asarray(spacing)
    return float(np.sqrt(np.sum((np.asarray(shape) * scale) ** 2)))


def hd95(pred: np.ndarray, gt: np.ndarray, spacing: Spacing = None) -> float:
    """HD95 of two masks (2D or 3D) with the empty-mask conventions of this module."""
    pred, gt = np.asarray(pred) != 0, np.asarray(gt) != 0
    spacing = _check_spacing(spacing, pred.ndim)
    has_pred, has_gt = bool(pred.any()), bool(gt.any())
    if not has_pred and not has_gt:
        return 0.0
    if has_pred != has_gt:
        return _diagonal(pred.shape, spacing)
    # One-hot (batch 1, channels background/object, spatial...); background excluded.
    one_hot = [torch.from_numpy(np.stack([~m, m])[None]) for m in (pred, gt)]
    with warnings.catch_warnings():
        # MONAI 1.6 warns about its own internal use of a deprecated argument.
        warnings.filterwarnings("ignore", message=".*always_return_as_numpy.*", category=FutureWarning)
        hd = compute_hausdorff_distance(
            one_hot[0],
            one_hot[1],
            include_background=False,
            percentile=HD_PERCENTILE,
            spacing=None if spacing is None else list(spacing),
        )
    return float(hd[0, 0])


def _result(overlap: dict, biou: float, hd: float, pred: np.ndarray, gt: np.ndarray) -> dict:
    return {
        **overlap,
        "biou": float(biou),
        "hd95": float(hd),
        "empty_pred": not pred.any(),
        "empty_gt": not gt.any(),
    }


def slice_metrics(pred, gt, spacing: Spacing = None) -> dict:
    """Metrics of one 2D slice (H, W); spacing (row, column) or one number, optional.

    Returns the keys of :data:`METRIC_NAMES` (floats) plus the bool flags ``empty_pred``
    and ``empty_gt``.
    """
    pred, gt = _check_pair(pred, gt, 2, "slice")
    spacing = _check_spacing(spacing, 2)
    biou = _ratio_or_one(*_boundary_counts(pred, gt))
    return _result(overlap_metrics(pred, gt), biou, hd95(pred, gt, spacing), pred, gt)


def volume_metrics(pred, gt, spacing: Spacing = None) -> dict:
    """Metrics of one 3D volume (Z, H, W); spacing (z, y, x) or one number, optional.

    Overlap metrics and HD95 are computed in 3D; BIoU pools the 2D boundary bands of the
    axial slices (see the module docstring). Same keys as :func:`slice_metrics`.
    """
    pred, gt = _check_pair(pred, gt, 3, "volume")
    spacing = _check_spacing(spacing, 3)
    inter = union = 0
    for p_slice, g_slice in zip(pred, gt):
        if p_slice.any() or g_slice.any():
            i, u = _boundary_counts(p_slice, g_slice)
            inter, union = inter + i, union + u
    biou = _ratio_or_one(inter, union)
    return _result(overlap_metrics(pred, gt), biou, hd95(pred, gt, spacing), pred, gt)


# --------------------------------------------------------------------------- summaries


def aggregate(results: Iterable[Mapping]) -> dict:
    """Mean and population SD (np.std, ddof=0) per metric, n, and the empty-mask counts.

    Returns ``{"n": int, "empty_pred": int, "empty_gt": int, "both_empty": int,
    "dice": {"mean": float, "sd": float}, ...}``. With no results, means and SDs are NaN.
    """
    results = list(results)
    out: dict = {"n": len(results)}
    flags = [(bool(r.get("empty_pred", False)), bool(r.get("empty_gt", False))) for r in results]
    out["empty_pred"] = sum(p and not g for p, g in flags)
    out["empty_gt"] = sum(g and not p for p, g in flags)
    out["both_empty"] = sum(p and g for p, g in flags)
    for name in METRIC_NAMES:
        values = np.array([float(r[name]) for r in results], dtype=float)
        if values.size == 0:
            out[name] = {"mean": float("nan"), "sd": float("nan")}
        else:
            out[name] = {"mean": float(values.mean()), "sd": float(values.std())}
    return out


def patient_bootstrap(values, patients, *, level: float = 0.95, n_boot: int = 4000, seed: int = 0) -> tuple[float, float]:
    """Percentile interval of the mean over slices when whole patients are resampled with
    replacement: slices of one patient are not independent, so resampling slices would
    give an interval too narrow. Returns (nan, nan) with no values."""
    values = np.asarray(values, dtype=float)
    if values.size == 0:
        return float("nan"), float("nan")
    keys, group = np.unique(np.asarray(patients, dtype=object).astype(str), return_inverse=True)
    sums = np.bincount(group, weights=values, minlength=len(keys))
    counts = np.bincount(group, minlength=len(keys)).astype(float)
    draws = np.random.default_rng(seed).integers(0, len(keys), size=(n_boot, len(keys)))
    means = sums[draws].sum(axis=1) / counts[draws].sum(axis=1)
    tail = (1.0 - level) / 2 * 100
    lo, hi = np.percentile(means, [tail, 100 - tail])
    return float(lo), float(hi)


class MetricsAccumulator:
    """Collects per-slice or per-volume results and summarises them with :func:`aggregate`.

    >>> acc = MetricsAccumulator()
    >>> acc.add_slice(pred, gt)          # or acc.add_volume(...), or acc.add(result_dict)
    >>> acc.summary()["dice"]["mean"]
    """

    def __init__(self) -> None:
        self.results: list[dict] = []

    def add(self, result: Mapping) -> dict:
        missing = [k for k in METRIC_NAMES if k not in result]
        if missing:
            raise InputError(f"metrics result lacks {missing}")
        self.results.append(dict(result))
        return self.results[-1]

    def add_slice(self, pred, gt, spacing: Spacing = None) -> dict:
        return self.add(slice_metrics(pred, gt, spacing))

    def add_volume(self, pred, gt, spacing: Spacing = None) -> dict:
        return self.add(volume_metrics(pred, gt, spacing))

    def __len__(self) -> int:
        return len(self.results)

    def summary(self) -> dict:
        return aggregate(self.results)
