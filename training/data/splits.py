"""Train/validation/test splits of a :class:`SliceSet`, by patient (honest) or by slice (the paper's).

Every function returns ``{"train": idx, "val": idx, "test": idx}`` (``"val"`` only where a
validation part is asked for): sorted ``int64`` arrays of slice indices into the set,
disjoint and together covering every slice. Results depend only on the inputs and ``seed``.
``data`` may be a SliceSet or a sequence of patient ids (one per slice).
"""

from __future__ import annotations

import numpy as np

from napari_pixeldrl.core.errors import InputError

PARTS3 = ("train", "val", "test")


def _patients_of(data) -> np.ndarray:
    patients = getattr(data, "patients", data)
    return np.asarray([str(p) for p in patients])


def _check_fractions(fractions) -> tuple[tuple[str, ...], np.ndarray]:
    f = np.asarray(fractions, dtype=np.float64)
    if f.ndim != 1 or len(f) not in (2, 3):
        raise InputError(f"fractions must be (train, val, test) or (train, test), got {fractions}")
    if (f < 0).any() or not np.isclose(f.sum(), 1.0, atol=1e-6):
        raise InputError(f"fractions must be non-negative and sum to 1, got {fractions}")
    return (PARTS3 if len(f) == 3 else ("train", "test")), f


def _counts(n: int, f: np.ndarray) -> np.ndarray:
    """Units per part: rounded, each nonzero fraction getting at least one unit when n allows."""
    counts = np.floor(f * n + 0.5).astype(int)
    counts[0] = n - counts[1:].sum()
    for i in range(len(f) - 1, 0, -1):  # give an empty requested part one unit taken from train
        if f[i] > 0 and counts[i] == 0 and counts[0] > 1:
            counts[i], counts[0] = 1, counts[0] - 1
    if counts[0] < 0:
        counts[0] = 0
    return counts


def _assign(units: np.ndarray, parts: tuple[str, ...], f: np.ndarray, seed: int) -> list[np.ndarray]:
    """Split a list of units (patients or slices) into parts, shuffled by seed."""
    order = np.random.default_rng(seed).permutation(len(units))
    counts = _counts(len(units), f)
    bounds = np.concatenate([[0], np.cumsum(counts)])
    return [units[order[bounds[i] : bounds[i + 1]]] for i in range(len(parts))]


def split_by_patient(data, fractions=(0.7, 0.1, 0.2), seed: int = 0) -> dict[str, np.ndarray]:
    """Patients (not slices) are divided by ``fractions``; no patient is in two parts."""
    parts, f = _check_fractions(fractions)
    patients = _patients_of(data)
    ids = np.array(sorted(set(patients.tolist())))
    if len(ids) < int((f > 0).sum()):
        raise InputError(f"{len(ids)} patient(s) cannot fill {int((f > 0).sum())} parts of a split by patient")
    groups = _assign(ids, parts, f, seed)
    return {p: np.flatnonzero(np.isin(patients, g)).astype(np.int64) for p, g in zip(parts, groups)}


def split_by_slice(data, fractions=(0.7, 0.1, 0.2), seed: int = 0) -> dict[str, np.ndarray]:
    """Slices divided at random, ignoring patients (the paper's protocol; leaks neighbours)."""
    parts, f = _check_fractions(fractions)
    n = data if isinstance(data, (int, np.integer)) else len(_patients_of(data))
    groups = _assign(np.arange(n), parts, f, seed)
    return {p: np.sort(g).astype(np.int64) for p, g in zip(parts, groups)}


def _kfold(units: np.ndarray, k: int, fold: int, seed: int, what: str,
           option: str = "--fold") -> tuple[np.ndarray, np.ndarray]:
    if k < 2:
        raise InputError(f"--folds must be at least 2, got {k}")
    if not 0 <= fold < k:
        raise InputError(f"{option} must be in 0..{k - 1} for --folds {k}, got {fold}")
    if len(units) < k:
        raise InputError(f"{len(units)} {what} cannot be divided into {k} folds")
    order = np.random.default_rng(seed).permutation(len(units))
    folds = np.array_split(order, k)
    test = units[folds[fold]]
    train = units[np.concatenate([folds[i] for i in range(k) if i != fold])]
    return train, test


def _carve_val(train_units: np.ndarray, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    if not 0 < val_fraction < 1:
        raise InputError(f"val_fraction must be in (0, 1), got {val_fraction}")
    order = np.random.default_rng(seed + 1).permutation(len(train_units))
    n_val = max(1, int(np.floor(val_fraction * len(train_units) + 0.5)))
    if n_val >= len(train_units):
        raise InputError(f"val_fraction {val_fraction} leaves no training unit out of {len(train_units)}")
    return train_units[order[n_val:]], train_units[order[:n_val]]


def kfold_by_patient(data, k: int = 5, fold: int = 0, seed: int = 0, val_fraction: float = 0.0) -> dict[str, np.ndarray]:
    """Fold ``fold`` of ``k`` over patients: its patients are the test part, the rest train.

    ``val_fraction > 0`` also carves a validation part out of the training patients. Over
    ``fold = 0..k-1`` (same seed) every slice is in exactly one test part.
    """
    patients = _patients_of(data)
    ids = np.array(sorted(set(patients.tolist())))
    train, test = _kfold(ids, k, fold, seed, "patients")
    out = {}
    if val_fraction:
        train, val = _carve_val(train, val_fraction, seed)
        out["val"] = np.flatnonzero(np.isin(patients, val)).astype(np.int64)
    out["train"] = np.flatnonzero(np.isin(patients, train)).astype(np.int64)
    out["test"] = np.flatnonzero(np.isin(patients, test)).astype(np.int64)
    return {p: out[p] for p in PARTS3 if p in out}


def val_fold_by_patient(data, k: int = 5, fold: int = 0, seed: int = 0) -> dict[str, np.ndarray]:
    """Cross-validation on the development patients: the test part of :func:`split_by_patient`
    (same seed) stays the test part, and its train and validation patients are divided into
    ``k`` folds, fold ``fold`` validating and the others training. Over ``fold = 0..k-1`` every
    development patient validates once, so a choice can rest on all of them while the test
    patients are never seen."""
    base = split_by_patient(data, seed=seed)
    patients = _patients_of(data)
    dev = np.array(sorted(set(patients[np.concatenate([base["train"], base["val"]])].tolist())))
    train, val = _kfold(dev, k, fold, seed, "development patients", option="--val-fold")
    return {"train": np.flatnonzero(np.isin(patients, train)).astype(np.int64),
            "val": np.flatnonzero(np.isin(patients, val)).astype(np.int64), "test": base["test"]}


def kfold_by_slice(data, k: int = 5, fold: int = 0, seed: int = 0, val_fraction: float = 0.0) -> dict[str, np.ndarray]:
    """As :func:`kfold_by_patient` over slices (the paper's 5-fold CV)."""
    n = data if isinstance(data, (int, np.integer)) else len(_patients_of(data))
    train, test = _kfold(np.arange(n), k, fold, seed, "slices")
    out = {}
    if val_fraction:
        train, out["val"] = _carve_val(train, val_fraction, seed)
    out["train"], out["test"] = train, test
    return {p: np.sort(out[p]).astype(np.int64) for p in PARTS3 if p in out}


def n_shot(indices, n: int, seed: int = 0) -> np.ndarray:
    """``n`` of ``indices`` (e.g. a split's training slices), chosen by ``seed``, sorted.

    The same (indices, n, seed) always gives the same subset. ``n`` larger than what is
    available is refused.
    """
    idx = np.asarray(indices, dtype=np.int64).ravel()
    if int(n) != n or n < 1:
        raise InputError(f"n-shot needs a positive whole number of slices, got {n}")
    if n > len(idx):
        raise InputError(f"n-shot asks for {n} training slices but only {len(idx)} are available")
    chosen = np.random.default_rng(seed).choice(len(idx), size=int(n), replace=False)
    return np.sort(idx[chosen])


HELD_BACK = 0.2  # the fraction of one image's painted slices held back for validation


def hold_back(data, fraction: float = HELD_BACK, seed: int = 0) -> dict[str, np.ndarray]:
    """{'train', 'val'}: ~``fraction`` of the slices (at least one when there are two or
    more) held back for validation, the rule for one image's painted slices, which have no
    patients to split by. A single slice is both: there is nothing to hold back."""
    n = data if isinstance(data, (int, np.integer)) else len(_patients_of(data))
    if n < 1:
        raise InputError("no training slices")
    if n == 1:
        return {"train": np.zeros(1, np.int64), "val": np.zeros(1, np.int64)}
    n_val = min(n - 1, max(1, int(round(n * fraction))))
    order = np.random.default_rng(seed).permutation(n)
    return {"train": np.sort(order[n_val:]).astype(np.int64), "val": np.sort(order[:n_val]).astype(np.int64)}


def make_split(data, *, split_by: str = "patient", fold: int | None = None, folds: int = 5, seed: int = 0,
               val_fold: int | None = None) -> dict:
    """{'train', 'val', 'test'} index arrays: 70/10/20, fold ``fold`` of a k-fold split, or
    the 70/10/20 test part with validation fold ``val_fold`` of its other patients
    (:func:`val_fold_by_patient`); ``held_back``: {'train', 'val'} of :func:`hold_back`."""
    if split_by == "held_back":
        return hold_back(data, seed=seed)
    if split_by not in ("patient", "slice"):
        raise InputError(f"--split-by must be patient or slice, got {split_by!r}")
    if val_fold is not None:
        if fold is not None:
            raise InputError("--fold (a fold as the test part) and --val-fold (a fold of the other patients as the "
                             "validation part) exclude each other; give one")
        if split_by != "patient":
            raise InputError("--val-fold divides patients: use it with --split-by patient")
        return val_fold_by_patient(data, k=folds, fold=val_fold, seed=seed)
    if fold is not None:
        fn = kfold_by_patient if split_by == "patient" else kfold_by_slice
        return fn(data, k=folds, fold=fold, seed=seed, val_fraction=0.1)
    fn = split_by_patient if split_by == "patient" else split_by_slice
    return fn(data, seed=seed)


def select_split(data, provenance: dict, which: str):
    """The slices of split ``which`` (train/val/test/all) for a run's data provenance
    (split_by, fold, folds, val_fold, seed, n_shot): the one rule the command line and the plugin
    both train and evaluate by."""
    if which == "all":
        return data
    split = make_split(data, split_by=provenance.get("split_by", "patient"), fold=provenance.get("fold"),
                       folds=provenance.get("folds", 5), seed=provenance.get("seed", 0), val_fold=provenance.get("val_fold"))
    idx = split.get(which)
    if idx is None:
        raise InputError(f"the split has no {which!r} part")
    if which == "train" and provenance.get("n_shot"):
        idx = n_shot(idx, provenance["n_shot"], seed=provenance.get("seed", 0))
    return data.subset(idx)
