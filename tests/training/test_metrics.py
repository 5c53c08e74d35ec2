"""Tests of napari_pixeldrl.training.metrics: hand cases and independent references."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage
from skimage.morphology import erosion

from napari_pixeldrl.core.errors import InputError
from napari_pixeldrl.training.metrics import (
    EPS,
    METRIC_NAMES,
    MetricsAccumulator,
    aggregate,
    boundary_width,
    mask_boundary,
    slice_metrics,
    volume_metrics,
)


def square(shape, r0, r1, c0, c1):
    m = np.zeros(shape, np.uint8)
    m[r0:r1, c0:c1] = 1
    return m


# --------------------------------------------------------------------------- references


def ref_edges(mask):
    """Object pixels with a 4-neighbour (or 2n-neighbour in nD) outside the object; outside = background."""
    m = np.pad(mask != 0, 1)
    interior = m.copy()
    for axis in range(m.ndim):
        interior &= np.roll(m, 1, axis) & np.roll(m, -1, axis)
    inner = tuple(slice(1, -1) for _ in range(m.ndim))
    return m[inner] & ~interior[inner]


def ref_hd95(pred, gt, spacing=None):
    """Brute force: all pairwise distances between edge pixels, 95th percentile each way, max."""
    scale = np.ones(pred.ndim) if spacing is None else np.asarray(spacing, float)
    a = np.argwhere(ref_edges(pred)) * scale
    b = np.argwhere(ref_edges(gt)) * scale
    dist = np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).sum(-1))
    return max(np.percentile(dist.min(axis=1), 95), np.percentile(dist.min(axis=0), 95))


def ref_boundary(mask, d):
    """boundary-iou-api logic with skimage: pad 1 zero pixel, erode d times with a 3x3 square, unpad."""
    m = (mask != 0).astype(np.uint8)
    padded = np.pad(m, 1)
    for _ in range(d):
        padded = erosion(padded, np.ones((3, 3), np.uint8))
    return m - padded[1:-1, 1:-1]


def ref_biou(pred, gt):
    h, w = pred.shape
    d = max(1, int(round(0.02 * np.sqrt(h**2 + w**2))))
    pb, gb = ref_boundary(pred, d).astype(bool), ref_boundary(gt, d).astype(bool)
    return (pb & gb).sum() / (pb | gb).sum()


def random_blob(rng, shape, sigma=4.0):
    """Smoothed-noise blobs: several components, holes and border contact occur."""
    field = ndimage.gaussian_filter(rng.standard_normal(shape), sigma)
    level = np.quantile(field, rng.uniform(0.55, 0.9))
    return (field > level).astype(np.uint8)


RNG_CASES = 20


def random_pairs(shape, n=RNG_CASES, seed=0):
    rng = np.random.default_rng(seed)
    return [(random_blob(rng, shape), random_blob(rng, shape)) for _ in range(n)]


# --------------------------------------------------------------------------- overlap metrics


def test_overlap_hand_case():
    gt = square((32, 32), 0, 10, 0, 10)  # T = 100
    pred = square((32, 32), 0, 10, 0, 20)  # P = 200, TP = 100, FP = 100, FN = 0
    m = slice_metrics(pred, gt)
    assert m["dice"] == pytest.approx((200 + EPS) / (300 + EPS), rel=1e-12)
    assert m["ppv"] == pytest.approx((100 + EPS) / (200 + EPS), rel=1e-12)
    assert m["sen"] == pytest.approx(1.0, rel=1e-12)
    assert m["iou"] == pytest.approx((100 + EPS) / (200 + EPS), rel=1e-12)
    assert EPS == 1e-4


def test_overlap_partial_shift():
    gt = square((40, 40), 0, 10, 0, 10)
    pred = square((40, 40), 5, 15, 0, 20)  # P = 200; TP = 50; FP = 150; FN = 50
    m = slice_metrics(pred, gt)
    assert m["dice"] == pytest.approx((100 + EPS) / (300 + EPS))
    assert m["ppv"] == pytest.approx((50 + EPS) / (200 + EPS))
    assert m["sen"] == pytest.approx((50 + EPS) / (100 + EPS))
    assert m["iou"] == pytest.approx((50 + EPS) / (250 + EPS))


def test_any_nonzero_is_object():
    gt = square((32, 32), 4, 12, 4, 12)
    a = slice_metrics(gt * 255, gt)
    b = slice_metrics(gt.astype(float) * 0.5, gt.astype(bool))
    for m in (a, b):
        assert m["dice"] == 1.0 and m["biou"] == 1.0 and m["hd95"] == 0.0


# --------------------------------------------------------------------------- boundary IoU


def test_band_width():
    assert boundary_width(256, 256) == 7
    assert boundary_width(320, 320) == 9
    assert boundary_width(10, 10) == 1  # round(0.28) = 0 -> at least 1


@pytest.mark.parametrize("size, d", [(256, 7), (320, 9)])
def test_band_is_d_pixels_wide(size, d):
    m = square((size, size), 100, 200, 100, 200)
    band = mask_boundary(m)
    assert band.sum() == 100**2 - (100 - 2 * d) ** 2
    assert band[150, 100 + d - 1] and not band[150, 100 + d]
    # A mask touching the image border gets a band there too (the zero padding).
    full = np.ones((size, size), np.uint8)
    assert mask_boundary(full).sum() == size**2 - (size - 2 * d) ** 2


def test_biou_hand_case():
    # 50x50 squares at 256x256 (d = 7), the prediction 3 rows lower.
    gt = square((256, 256), 50, 100, 50, 100)
    pred = square((256, 256), 53, 103, 50, 100)
    # |Gb| = |Pb| = 50^2 - 36^2 = 1204. Gb & Pb = (G & P) minus (inner G | inner P)
    # = 47*50 - 39*36 = 946; union = 1204 + 1204 - 946 = 1462.
    assert slice_metrics(pred, gt)["biou"] == pytest.approx(946 / 1462, rel=1e-12)


def test_biou_matches_reference_on_random_masks():
    for size in (64, 128):  # d = 2 and d = 4
        for pred, gt in random_pairs((size, size), n=10, seed=size):
            assert slice_metrics(pred, gt)["biou"] == pytest.approx(ref_biou(pred, gt), abs=1e-12)


def test_volume_biou_pools_slices():
    shape = (2, 256, 256)
    gt = np.zeros(shape, np.uint8)
    pred = np.zeros(shape, np.uint8)
    gt[0, 50:100, 50:100] = pred[0, 50:100, 50:100] = 1  # bands agree: 1204 / 1204
    gt[1, 10:30, 10:30] = 1  # missed: band 20^2 - 6^2 = 364 in the union only
    # pooled: 1204 / (1204 + 364); the mean of the slice BIoUs would be 0.5
    assert volume_metrics(pred, gt)["biou"] == pytest.approx(1204 / 1568, rel=1e-12)
    # Slices where neither mask has object do not change it.
    pad = np.zeros((1, 256, 256), np.uint8)
    m = volume_metrics(np.concatenate([pred, pad]), np.concatenate([gt, pad]))
    assert m["biou"] == pytest.approx(1204 / 1568, rel=1e-12)


# --------------------------------------------------------------------------- HD95


@pytest.mark.parametrize("k", [1, 3, 6])
def test_hd95_shifted_squares(k):
    gt = square((64, 64), 10, 40, 10, 40)
    pred = square((64, 64), 10 + k, 40 + k, 10, 40)
    assert slice_metrics(pred, gt)["hd95"] == pytest.approx(k, abs=1e-5)


def test_hd95_with_spacing():
    gt = square((64, 64), 10, 40, 10, 40)
    pred = square((64, 64), 13, 43, 10, 40)  # shifted 3 rows
    assert slice_metrics(pred, gt, spacing=(2.0, 1.0))["hd95"] == pytest.approx(6.0, abs=1e-5)
    assert slice_metrics(pred, gt, spacing=(1.0, 0.5))["hd95"] == pytest.approx(3.0, abs=1e-5)
    assert slice_metrics(pred, gt, spacing=0.5)["hd95"] == pytest.approx(1.5, abs=1e-5)


def test_hd95_is_percentile_not_max():
    # An isolated far-away pixel in the prediction: HD (max) would see it, HD95 hardly.
    gt = square((64, 64), 10, 40, 10, 40)
    pred = gt.copy()
    pred[60, 60] = 1
    hd = slice_metrics(pred, gt)["hd95"]
    assert hd == pytest.approx(ref_hd95(pred, gt), abs=1e-4)
    assert hd < math.hypot(20, 20)


def test_hd95_matches_brute_force_on_random_masks():
    for pred, gt in random_pairs((64, 64), seed=1):
        assert slice_metrics(pred, gt)["hd95"] == pytest.approx(ref_hd95(pred, gt), abs=1e-4)
    for pred, gt in random_pairs((64, 64), n=5, seed=2):
        spacing = (0.7, 1.3)
        got = slice_metrics(pred, gt, spacing=spacing)["hd95"]
        assert got == pytest.approx(ref_hd95(pred, gt, spacing), abs=1e-4)


def test_volume_hd95_matches_brute_force_3d():
    for pred, gt in random_pairs((12, 24, 24), n=4, seed=3):
        spacing = (3.0, 0.8, 0.8)
        got = volume_metrics(pred, gt, spacing=spacing)["hd95"]
        assert got == pytest.approx(ref_hd95(pred, gt, spacing), abs=1e-4)


# --------------------------------------------------------------------------- empty masks


def test_both_empty():
    z = np.zeros((256, 256), np.uint8)
    m = slice_metrics(z, z)
    assert {k: m[k] for k in METRIC_NAMES} == {"dice": 1.0, "ppv": 1.0, "sen": 1.0, "iou": 1.0, "biou": 1.0, "hd95": 0.0}
    assert m["empty_pred"] and m["empty_gt"]


def test_empty_prediction():
    gt = square((256, 256), 50, 100, 50, 100)
    m = slice_metrics(np.zeros_like(gt), gt)
    assert m["dice"] == pytest.approx(EPS / (2500 + EPS))
    assert m["sen"] == pytest.approx(EPS / (2500 + EPS))
    assert m["ppv"] == 1.0  # eps / eps, as the paper's formula gives
    assert m["biou"] == 0.0
    assert m["hd95"] == pytest.approx(math.hypot(256, 256))
    assert m["empty_pred"] and not m["empty_gt"]
    # with a spacing the penalty is the diagonal in those units
    m = slice_metrics(np.zeros_like(gt), gt, spacing=(0.5, 2.0))
    assert m["hd95"] == pytest.approx(math.hypot(128, 512))


def test_empty_truth_volume():
    pred = np.zeros((4, 32, 32), np.uint8)
    pred[1, 5:9, 5:9] = 1
    m = volume_metrics(pred, np.zeros_like(pred), spacing=(5.0, 1.0, 1.0))
    assert m["biou"] == 0.0 and m["sen"] == 1.0 and m["ppv"] < 1e-5
    assert m["hd95"] == pytest.approx(math.sqrt(20**2 + 32**2 + 32**2))
    assert m["empty_gt"] and not m["empty_pred"]
    assert np.isfinite([m[k] for k in METRIC_NAMES]).all()


# --------------------------------------------------------------------------- aggregate


def test_aggregate_mean_population_sd_and_counts():
    gt = square((64, 64), 10, 40, 10, 40)
    z = np.zeros_like(gt)
    acc = MetricsAccumulator()
    acc.add_slice(gt, gt)  # perfect
    acc.add_slice(z, gt)  # empty prediction
    acc.add_slice(gt, z)  # empty truth
    acc.add_slice(z, z)  # both empty
    s = acc.summary()
    assert s == aggregate(acc.results)
    assert (s["n"], s["empty_pred"], s["empty_gt"], s["both_empty"]) == (4, 1, 1, 1)
    assert s["biou"]["mean"] == pytest.approx(0.5)
    assert s["biou"]["sd"] == pytest.approx(0.5)  # population SD; the sample SD would be 0.577
    diag = math.hypot(64, 64)
    assert s["hd95"]["mean"] == pytest.approx(diag / 2)
    assert set(METRIC_NAMES) <= set(s)


def test_aggregate_empty_list():
    s = aggregate([])
    assert s["n"] == 0 and math.isnan(s["dice"]["mean"])


# --------------------------------------------------------------------------- validation


def test_shape_mismatch_names_both_shapes():
    with pytest.raises(InputError, match=r"\(32, 32\).*\(32, 33\)"):
        slice_metrics(np.zeros((32, 32)), np.zeros((32, 33)))
    with pytest.raises(InputError, match=r"\(2, 8, 8\).*\(3, 8, 8\)"):
        volume_metrics(np.zeros((2, 8, 8)), np.zeros((3, 8, 8)))


def test_dimension_checks():
    with pytest.raises(InputError, match="2D"):
        slice_metrics(np.zeros((2, 8, 8)), np.zeros((2, 8, 8)))
    with pytest.raises(InputError, match="3D"):
        volume_metrics(np.zeros((8, 8)), np.zeros((8, 8)))


def test_nan_refused():
    gt = np.zeros((8, 8))
    pred = gt.copy()
    pred[2, 2] = np.nan
    with pytest.raises(InputError, match="NaN"):
        slice_metrics(pred, gt)


@pytest.mark.parametrize("spacing", [(1.0, 0.0), (1.0, -2.0), (1.0, float("nan")), (1.0, 1.0, 1.0)])
def test_bad_spacing_refused(spacing):
    with pytest.raises(InputError, match="spacing"):
        slice_metrics(np.ones((8, 8)), np.ones((8, 8)), spacing=spacing)


def test_patient_bootstrap_matches_scipys_bootstrap_for_one_slice_per_patient():
    """With one slice per patient, resampling patients is the ordinary bootstrap of the mean."""
    from scipy.stats import bootstrap

    from napari_pixeldrl.training.metrics import patient_bootstrap

    values = np.random.default_rng(1).uniform(0.3, 0.9, size=25)
    lo, hi = patient_bootstrap(values, [f"p{i}" for i in range(25)], n_boot=20000)
    ref = bootstrap((values,), np.mean, n_resamples=20000, method="percentile", random_state=0).confidence_interval
    assert lo == pytest.approx(ref.low, abs=0.01) and hi == pytest.approx(ref.high, abs=0.01)


def test_patient_bootstrap_is_wider_when_slices_of_a_patient_agree():
    from napari_pixeldrl.training.metrics import patient_bootstrap

    rng = np.random.default_rng(2)
    level = rng.uniform(0.3, 0.9, size=6)  # six patients, twenty alike slices each
    values = np.repeat(level, 20) + rng.normal(0, 0.01, 120)
    patients = np.repeat([f"p{i}" for i in range(6)], 20)
    lo, hi = patient_bootstrap(values, patients)
    slo, shi = patient_bootstrap(values, [f"s{i}" for i in range(120)])  # as if slices were independent
    assert lo < values.mean() < hi and (hi - lo) > 3 * (shi - slo)
