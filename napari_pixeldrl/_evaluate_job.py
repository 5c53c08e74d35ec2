"""The computation behind the Evaluate widget: the six metrics of two labels layers."""

from __future__ import annotations

import numpy as np

from napari_pixeldrl._messages import EvaluateDone, Failed, Stage
from napari_pixeldrl.core.errors import InputError, PixelDRLError


def evaluate_job(pred, gt, *, spacing=None, pred_name: str = "prediction", gt_name: str = "ground truth",
                 label: int | None = None):
    """Six metrics per slice (3D) or for the image (2D), then the overall rows. ``label``
    picks the object in multi-label layers (see :func:`scored_pair`); without it a layer
    with several labels is refused rather than scored as their union."""
    from napari_pixeldrl.core.checks import scored_pair
    from napari_pixeldrl.training.metrics import aggregate, slice_metrics, volume_metrics

    yield Stage("evaluating")
    try:
        pred, gt = np.asarray(pred), np.asarray(gt)
        if pred.shape != gt.shape:
            raise InputError(
                f"{pred_name!r} has shape {pred.shape} but {gt_name!r} has shape {gt.shape}; "
                "pick two labels layers drawn on the same image"
            )
        if pred.ndim not in (2, 3):
            raise InputError(f"labels layers must be 2D or 3D, {pred_name!r} has shape {pred.shape}")
        pred, gt = scored_pair(pred, gt, label, f"layer {pred_name!r}", f"layer {gt_name!r}")
        agreement = agreement_map(pred, gt)
        rows: list[tuple[str, dict]] = []
        if pred.ndim == 2:
            rows.append(("image", slice_metrics(pred, gt, spacing=spacing)))
        else:
            sp2 = tuple(spacing[-2:]) if spacing is not None else None
            per_slice = []
            for z in range(pred.shape[0]):
                m = slice_metrics(pred[z], gt[z], spacing=sp2)
                per_slice.append(m)
                rows.append((f"slice {z}", m))
            agg = aggregate(per_slice)
            rows.append(("mean of slices", {k: v["mean"] for k, v in agg.items() if isinstance(v, dict) and "mean" in v}))
            rows.append(("volume", volume_metrics(pred, gt, spacing=spacing)))
        return EvaluateDone(rows, pred.ndim, agreement)
    except PixelDRLError as exc:
        return Failed(str(exc), "input")


def agreement_map(pred, gt) -> np.ndarray:
    """uint8, per pixel: AGREE (object in both), MISSED (truth only), EXTRA (prediction only), 0."""
    from napari_pixeldrl._colors import AGREE, EXTRA, MISSED

    pred, gt = np.asarray(pred, bool), np.asarray(gt, bool)
    out = np.zeros(pred.shape, np.uint8)
    out[pred & gt] = AGREE
    out[gt & ~pred] = MISSED
    out[pred & ~gt] = EXTRA
    return out
