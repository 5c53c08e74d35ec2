"""training.data: loaders on small files written here, reliability, the cache, splits, real-data counts."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import tifffile
from PIL import Image

from napari_pixeldrl.core.errors import InputError
from napari_pixeldrl.training.data import (
    kfold_by_patient,
    kfold_by_slice,
    load_dataset,
    n_shot,
    split_by_patient,
    split_by_slice,
    summarize,
)
from napari_pixeldrl.training.data import hecktor as hecktor_mod
from napari_pixeldrl.training.data.records import SliceSet

RNG = np.random.default_rng(0)
REPO = Path(__file__).resolve().parents[2]
DATA = Path(os.environ.get("PIXELDRL_DATA", REPO.parent / "shared" / "data"))


# ---------------------------------------------------------------- synthetic layouts

def _blob(h=64, w=64, on=True, value=255):
    m = np.zeros((h, w), np.uint8)
    if on:
        y, x = RNG.integers(8, 40, 2)
        m[y : y + 12, x : x + 16] = value
    return m


def make_lgg(root: Path, cases=("TCGA_AA_0001_20000101", "TCGA_BB_0002_20000202"), n=4, empty=(1,)):
    k3 = root / "kaggle_3m"
    for case in cases:
        d = k3 / case
        d.mkdir(parents=True)
        for i in (1, 2, 10, 3)[:n]:  # numeric order must be 1, 2, 3, 10
            tifffile.imwrite(d / f"{case}_{i}.tif", RNG.integers(0, 255, (64, 64, 3), dtype=np.uint8), compression="zlib")
            tifffile.imwrite(d / f"{case}_{i}_mask.tif", _blob(on=i not in empty), compression="zlib")
    (k3 / "README.md").write_text("x")
    return k3


def _save_nifti(path, zyx, zooms=(1.25, 1.25, 1.37), dtype=None):
    data = np.transpose(zyx, (2, 1, 0))
    affine = np.diag(list(zooms) + [1.0])
    nib.save(nib.Nifti1Image(data.astype(dtype or data.dtype), affine), str(path))


def make_msd(root: Path, cases=("la_001", "la_002"), z=5, empty_z=(0,), json_list=True):
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    for c in cases:
        img = RNG.integers(0, 1000, (z, 64, 64)).astype(np.int16)
        lab = np.stack([_blob(on=k not in empty_z, value=1) for k in range(z)])
        _save_nifti(root / "imagesTr" / f"{c}.nii.gz", img)
        _save_nifti(root / "labelsTr" / f"{c}.nii.gz", lab)
        (root / "imagesTr" / f"._{c}.nii.gz").write_bytes(b"\x00\x05\x16\x07 mac resource fork")
    if json_list:
        (root / "dataset.json").write_text(
            json.dumps({"training": [{"image": f"./imagesTr/{c}.nii.gz", "label": f"./labelsTr/{c}.nii.gz"} for c in cases]})
        )
    return root


def make_folder_subdirs(root: Path, n=3):
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for i in range(n):
        Image.fromarray(RNG.integers(0, 255, (64, 64), dtype=np.uint8)).save(root / "images" / f"p{i}__{i + 5}.png")
        name = f"p{i}__{i + 5}_mask.png" if i % 2 else f"p{i}__{i + 5}.png"
        Image.fromarray(_blob()).save(root / "masks" / name)
    return root


@pytest.fixture
def cache_dir(tmp_path):
    return tmp_path / "cache"


# ---------------------------------------------------------------- loaders

def test_lgg_layout(tmp_path, cache_dir):
    root = make_lgg(tmp_path)
    ds = load_dataset("lgg", tmp_path, keep_empty=True, cache_dir=cache_dir)  # parent of kaggle_3m works too
    assert isinstance(ds, SliceSet) and len(ds) == 8 and ds.in_channels == 3
    assert ds.slice_index[:4] == [1, 2, 3, 10]
    assert ds.patient_ids == ["TCGA_AA_0001_20000101", "TCGA_BB_0002_20000202"]
    for im, m in zip(ds.images, ds.masks):
        assert im.shape == (3, 64, 64) and im.dtype == np.float32 and 0 <= im.min() and im.max() <= 1
        assert m.shape == (64, 64) and m.dtype == np.uint8 and set(np.unique(m)) <= {0, 1}
    assert ds.positive.tolist() == [False, True, True, True] * 2
    kept = load_dataset("lgg", root, cache_dir=cache_dir)
    assert len(kept) == 6 and kept.positive.all() and 1 not in kept.slice_index
    assert summarize("lgg", root, cache_dir=cache_dir) == {"patients": 2, "slices": 8, "positive_slices": 6}
    # The image's channel order is kept: channel c of slice 2 is the TIF's [..., c], normalised.
    raw = tifffile.imread(root / "TCGA_AA_0001_20000101" / "TCGA_AA_0001_20000101_2.tif")
    i = ds.slice_index.index(2)
    assert np.corrcoef(ds.images[i][1].ravel(), raw[..., 1].ravel())[0, 1] > 0.99


def test_msd_layout_ignores_dot_underscore(tmp_path, cache_dir):
    make_msd(tmp_path / "Task", z=5)
    ds = load_dataset("msd", tmp_path / "Task", keep_empty=True, cache_dir=cache_dir)
    assert len(ds) == 10 and ds.in_channels == 1 and ds.patient_ids == ["la_001", "la_002"]
    assert ds.slice_index[:5] == [0, 1, 2, 3, 4] and ds.spacing[0] == pytest.approx((1.25, 1.25))
    assert ds.images[0].shape == (1, 64, 64) and not ds.skipped
    # Slices are axial slices of the (Z, Y, X) volume, in that order.
    lab = nib.load(str(tmp_path / "Task" / "labelsTr" / "la_001.nii.gz")).get_fdata()
    np.testing.assert_array_equal(ds.masks[3], (np.transpose(lab, (2, 1, 0))[3] > 0).astype(np.uint8))
    assert len(load_dataset("msd", tmp_path / "Task", cache_dir=cache_dir)) == 8


def test_msd_without_dataset_json(tmp_path, cache_dir):
    make_msd(tmp_path / "T", cases=("a", "b", "c"), z=3, json_list=False)
    assert summarize("msd", tmp_path / "T", cache_dir=cache_dir) == {"patients": 3, "slices": 9, "positive_slices": 6}


def test_hecktor_pet_resampled_to_mask_grid(tmp_path, cache_dir):
    case = tmp_path / "hecktor_nii" / "CHGJ007"
    case.mkdir(parents=True)
    # Mask grid: 64 x 64 x 6 voxels of 1 mm, origin 0. PET grid: 32 x 32 x 4 voxels of 2 mm,
    # origin 0.5 mm, holding its own world x coordinate, so linear resampling is exact inside.
    mask_aff = np.eye(4)
    pet_aff = np.diag([2.0, 2.0, 2.0, 1.0])
    pet_aff[:3, 3] = 0.5
    i = np.arange(32, dtype=np.float32)
    pet = np.broadcast_to((2 * i + 0.5)[:, None, None], (32, 32, 4)).copy()
    mask = np.zeros((64, 64, 6), np.uint8)
    mask[20:30, 10:40, 2:4] = 1
    nib.save(nib.Nifti1Image(pet, pet_aff), str(case / "CHGJ007_pt.nii.gz"))
    nib.save(nib.Nifti1Image(mask, mask_aff), str(case / "CHGJ007_ct_gtvt.nii.gz"))
    nib.save(nib.Nifti1Image(np.zeros((64, 64, 6), np.int16), mask_aff), str(case / "CHGJ007_ct.nii.gz"))
    items, problems = hecktor_mod.scan(tmp_path)
    assert [it.patient for it in items] == ["CHGJ007"] and not problems
    raw = hecktor_mod.read(items[0], None)
    assert len(raw) == 6 and raw[0].image.shape == (1, 64, 64) and raw[0].spacing == (1.0, 1.0)
    # (Z, Y, X): value at column x is the world x coordinate x, for x inside the PET field of view.
    for z in (1, 2, 3):
        np.testing.assert_allclose(raw[z].image[0, 5, 1:62], np.arange(1, 62), atol=1e-4)
        np.testing.assert_array_equal(raw[z].mask, np.transpose(mask, (2, 1, 0))[z])
    ds = load_dataset("hecktor", tmp_path / "hecktor_nii", cache_dir=cache_dir)
    assert len(ds) == 2 and ds.slice_index == [2, 3] and ds.in_channels == 1
    assert summarize("hecktor", tmp_path, cache_dir=cache_dir) == {"patients": 1, "slices": 6, "positive_slices": 2}


def test_folder_subdirs_and_patient_prefix(tmp_path, cache_dir):
    make_folder_subdirs(tmp_path / "f")
    ds = load_dataset("folder", tmp_path / "f", cache_dir=cache_dir)
    assert len(ds) == 3 and ds.patients == ["p0", "p1", "p2"] and ds.slice_index == [5, 6, 7]
    assert ds.in_channels == 1


def test_folder_flat_pairs_and_nifti_volume(tmp_path, cache_dir):
    f = tmp_path / "flat"
    f.mkdir()
    for name in ("a", "b"):
        tifffile.imwrite(f / f"{name}.tif", RNG.integers(0, 255, (64, 64, 3), dtype=np.uint8))
        Image.fromarray(_blob()).save(f / f"{name}_mask.png")
    ds = load_dataset("folder", f, cache_dir=cache_dir)
    assert len(ds) == 2 and ds.in_channels == 3 and ds.patients == ["a", "b"]
    v = tmp_path / "vol"
    v.mkdir()
    _save_nifti(v / "s1.nii.gz", RNG.normal(size=(4, 64, 64)).astype(np.float32))
    _save_nifti(v / "s1_mask.nii.gz", np.stack([_blob(on=k > 0, value=1) for k in range(4)]))
    ds = load_dataset("folder", v, keep_empty=True, cache_dir=cache_dir)
    assert len(ds) == 4 and ds.slice_index == [0, 1, 2, 3] and ds.positive.tolist() == [False, True, True, True]
    assert ds.spacing[0] == pytest.approx((1.25, 1.25))


def test_masks_marking_the_object_with_different_labels_are_refused(tmp_path, cache_dir):
    f = tmp_path / "mixed"
    f.mkdir()
    for name, value in (("a", 1), ("b", 2), ("c", 255)):
        tifffile.imwrite(f / f"{name}.tif", RNG.integers(0, 255, (64, 64), dtype=np.uint8))
        Image.fromarray(_blob(value=value)).save(f / f"{name}_mask.png")
    with pytest.raises(InputError, match="different labels in different files .*--label"):
        load_dataset("folder", f, cache_dir=cache_dir)
    assert int(load_dataset("folder", f, label=2, cache_dir=cache_dir).positive.sum()) == 1
    (f / "b.tif").unlink()
    (f / "b_mask.png").unlink()
    assert len(load_dataset("folder", f, cache_dir=cache_dir)) == 2  # 1 and 255 both mean "object"


# ---------------------------------------------------------------- reliability

def test_no_pairs_names_the_folder(tmp_path, cache_dir):
    (tmp_path / "empty").mkdir()
    for kind in ("lgg", "msd", "hecktor", "folder"):
        with pytest.raises(InputError, match="empty"):
            load_dataset(kind, tmp_path / "empty", cache_dir=cache_dir)
    with pytest.raises(InputError, match="not found"):
        load_dataset("folder", tmp_path / "nope", cache_dir=cache_dir)
    with pytest.raises(InputError, match="unknown dataset kind"):
        load_dataset("brats", tmp_path / "empty", cache_dir=cache_dir)


def test_shape_mismatch_names_the_file(tmp_path, cache_dir):
    root = make_lgg(tmp_path, cases=("C1",), n=2)
    tifffile.imwrite(root / "C1" / "C1_2_mask.tif", np.zeros((32, 64), np.uint8))
    with pytest.raises(InputError, match="C1_2_mask.tif"):
        load_dataset("lgg", root, cache_dir=cache_dir)


def test_multilabel_needs_label(tmp_path, cache_dir):
    root = make_msd(tmp_path / "T", cases=("x",), z=3)
    lab = np.zeros((3, 64, 64), np.uint8)
    lab[1, :10] = 1
    lab[2, 20:30] = 2
    _save_nifti(root / "labelsTr" / "x.nii.gz", lab)
    with pytest.raises(InputError, match="labelsTr/x.nii.gz"):
        load_dataset("msd", root, cache_dir=cache_dir)
    ds = load_dataset("msd", root, label=2, cache_dir=cache_dir)
    assert len(ds) == 1 and ds.slice_index == [2]
    with pytest.raises(InputError, match="label 7"):
        load_dataset("msd", root, label=7, cache_dir=cache_dir)


def test_corrupt_file_is_skipped_counted_and_warned(tmp_path, cache_dir):
    root = make_lgg(tmp_path, cases=("C1", "C2"), n=3, empty=())
    bad = root / "C2" / "C2_2.tif"
    bad.write_bytes(b"II*\x00 this is not a tif")
    (root / "C1" / "C1_10_mask.tif").unlink()  # an image left without its mask
    with pytest.warns(UserWarning, match="C2_2.tif"):
        ds = load_dataset("lgg", root, cache_dir=cache_dir)
    assert len(ds) == 4
    skipped = [Path(f).name for f, _ in ds.skipped]
    assert sorted(skipped) == ["C1_10.tif", "C2_2.tif"]
    with pytest.warns(UserWarning, match="C2_2.tif"):  # the cached load warns too
        again = load_dataset("lgg", root, cache_dir=cache_dir)
    assert again.from_cache and len(again.skipped) == 2
    with pytest.raises(InputError):
        load_dataset("lgg", root, cache=False, strict=True)


def test_nothing_readable_fails(tmp_path, cache_dir):
    root = make_lgg(tmp_path, cases=("C1",), n=1, empty=())
    (root / "C1" / "C1_1.tif").write_bytes(b"garbage")
    with pytest.raises(InputError, match="C1_1.tif"):
        load_dataset("lgg", root, cache_dir=cache_dir)


# ---------------------------------------------------------------- cache

def test_second_load_comes_from_cache(tmp_path, cache_dir):
    root = make_msd(tmp_path / "T", z=4)
    first = load_dataset("msd", root, keep_empty=True, cache_dir=cache_dir)
    assert not first.from_cache and len(list(cache_dir.glob("*.npz"))) == 1
    # Overwrite the volumes with garbage of the same size and mtime: only a cache hit can succeed.
    for f in sorted((root / "imagesTr").glob("la_*.nii.gz")):
        st = f.stat()
        f.write_bytes(b"\x00" * st.st_size)
        os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))
    second = load_dataset("msd", root, keep_empty=True, cache_dir=cache_dir)
    assert second.from_cache and len(second) == len(first)
    for a, b in zip(first.images, second.images):
        np.testing.assert_array_equal(a, b)  # exact, not approximate
    for a, b in zip(first.masks, second.masks):
        np.testing.assert_array_equal(a, b)
    assert second.patients == first.patients and second.slice_index == first.slice_index
    assert second.spacing == first.spacing and second.sources == first.sources
    # A changed file (new mtime) misses the cache: now the garbage is read, and nothing is readable.
    f = root / "imagesTr" / "la_001.nii.gz"
    os.utime(f, ns=(time.time_ns() + 10**9, time.time_ns() + 10**9))
    with pytest.raises(InputError, match="la_001.nii.gz"):
        load_dataset("msd", root, keep_empty=True, cache_dir=cache_dir)


def test_cache_options_and_env(tmp_path, monkeypatch):
    root = make_lgg(tmp_path, cases=("C1",), n=2)
    monkeypatch.setenv("PIXELDRL_CACHE", str(tmp_path / "envcache"))
    load_dataset("lgg", root)
    assert len(list((tmp_path / "envcache").glob("lgg-*.npz"))) == 1
    load_dataset("lgg", root, label=255)  # another option, another entry
    assert len(list((tmp_path / "envcache").glob("lgg-*.npz"))) == 2
    assert load_dataset("lgg", root, keep_empty=True).from_cache  # keep_empty shares the entry
    load_dataset("lgg", root, cache=False)
    # A truncated cache file is ignored (with a warning) and rebuilt.
    for f in (tmp_path / "envcache").glob("*.npz"):
        f.write_bytes(b"PK\x03\x04 broken")
    with pytest.warns(UserWarning, match="cache"):
        ds = load_dataset("lgg", root)
    assert not ds.from_cache and len(ds) == 1


# ---------------------------------------------------------------- splits

def _fake_set(n_patients=20, seed=0):
    rng = np.random.default_rng(seed)
    patients = [f"P{p:02d}" for p in range(n_patients) for _ in range(int(rng.integers(1, 8)))]
    return patients


def _check_partition(parts, n):
    allidx = np.concatenate(list(parts.values()))
    assert len(allidx) == n and len(np.unique(allidx)) == n  # disjoint and covering
    for v in parts.values():
        assert v.dtype == np.int64 and (np.diff(v) > 0).all()


def test_split_by_patient():
    patients = _fake_set()
    parts = split_by_patient(patients, (0.7, 0.1, 0.2), seed=3)
    assert list(parts) == ["train", "val", "test"]
    _check_partition(parts, len(patients))
    owners = {k: {patients[i] for i in v} for k, v in parts.items()}
    assert not (owners["train"] & owners["val"] or owners["train"] & owners["test"] or owners["val"] & owners["test"])
    assert [len(owners[k]) for k in ("train", "val", "test")] == [14, 2, 4]
    again = split_by_patient(patients, (0.7, 0.1, 0.2), seed=3)
    assert all(np.array_equal(parts[k], again[k]) for k in parts)
    other = split_by_patient(patients, (0.7, 0.1, 0.2), seed=4)
    assert any(not np.array_equal(parts[k], other[k]) for k in parts)
    two = split_by_patient(patients, (0.8, 0.2))
    assert list(two) == ["train", "test"]
    _check_partition(two, len(patients))
    with pytest.raises(InputError):
        split_by_patient(patients, (0.5, 0.1, 0.1))
    with pytest.raises(InputError):
        split_by_patient(["a", "a", "b"], (0.7, 0.1, 0.2))


def test_split_by_slice_and_on_sliceset(tmp_path):
    root = make_lgg(tmp_path, cases=("A", "B", "C"), n=4, empty=())
    ds = load_dataset("lgg", root, cache=False)
    parts = split_by_slice(ds, (0.5, 0.25, 0.25), seed=0)
    _check_partition(parts, len(ds))
    assert [len(v) for v in parts.values()] == [6, 3, 3]
    assert all(np.array_equal(parts[k], split_by_slice(len(ds), (0.5, 0.25, 0.25), seed=0)[k]) for k in parts)
    pp = split_by_patient(ds, (0.34, 0.33, 0.33))
    _check_partition(pp, len(ds))
    assert sorted(len({ds.patients[i] for i in v}) for v in pp.values()) == [1, 1, 1]
    sub = ds.subset(pp["test"])
    assert len(sub) == 4 and len(set(sub.patients)) == 1


def test_kfold_by_patient_and_slice():
    patients = _fake_set(12)
    tests = []
    for fold in range(5):
        parts = kfold_by_patient(patients, k=5, fold=fold, seed=1)
        assert list(parts) == ["train", "test"]
        _check_partition(parts, len(patients))
        assert not {patients[i] for i in parts["train"]} & {patients[i] for i in parts["test"]}
        tests.append(parts["test"])
        with_val = kfold_by_patient(patients, k=5, fold=fold, seed=1, val_fraction=0.1)
        assert list(with_val) == ["train", "val", "test"]
        _check_partition(with_val, len(patients))
        np.testing.assert_array_equal(with_val["test"], parts["test"])
        owners = [{patients[i] for i in with_val[k]} for k in with_val]
        assert not (owners[0] & owners[1] or owners[0] & owners[2] or owners[1] & owners[2])
    _check_partition(dict(enumerate(tests)), len(patients))  # each slice tested once
    for fold in range(5):
        _check_partition(kfold_by_slice(len(patients), k=5, fold=fold, val_fraction=0.1), len(patients))
    with pytest.raises(InputError):
        kfold_by_patient(patients, k=5, fold=5)
    with pytest.raises(InputError):
        kfold_by_patient(["a", "b"], k=5, fold=0)


def test_val_fold_keeps_the_test_patients_and_validates_every_other_patient_once():
    """--val-fold: the default split's test patients never train or validate; over the folds
    each development patient validates exactly once and never trains in its own fold."""
    from napari_pixeldrl.training.data.splits import make_split

    patients = _fake_set(16)
    default = split_by_patient(patients, seed=0)
    test = {patients[i] for i in default["test"]}
    validated = []
    for fold in range(4):
        parts = make_split(patients, val_fold=fold, folds=4)
        assert list(parts) == ["train", "val", "test"]
        _check_partition(parts, len(patients))
        np.testing.assert_array_equal(parts["test"], default["test"])
        owners = {k: {patients[i] for i in v} for k, v in parts.items()}
        assert not owners["train"] & owners["val"] and not (owners["train"] | owners["val"]) & test
        validated += sorted(owners["val"])
    assert sorted(validated) == sorted(set(patients) - test)  # each once
    with pytest.raises(InputError, match="exclude each other"):
        make_split(patients, fold=0, val_fold=0)
    with pytest.raises(InputError, match="--split-by patient"):
        make_split(patients, split_by="slice", val_fold=0)
    with pytest.raises(InputError, match="--val-fold must be in 0..3"):
        make_split(patients, val_fold=4, folds=4)


def test_n_shot():
    train = np.arange(100, 300, 2)
    a = n_shot(train, 50, seed=0)
    assert len(a) == 50 and len(set(a)) == 50 and set(a) <= set(train) and (np.diff(a) > 0).all()
    np.testing.assert_array_equal(a, n_shot(train, 50, seed=0))
    assert not np.array_equal(a, n_shot(train, 50, seed=1))
    assert len(n_shot(train, 100)) == 100
    with pytest.raises(InputError, match="only 100"):
        n_shot(train, 101)
    with pytest.raises(InputError):
        n_shot(train, 0)


# ---------------------------------------------------------------- the real data

@pytest.fixture(scope="module")
def real_cache(tmp_path_factory):
    d = tmp_path_factory.mktemp("realcache")
    yield d
    shutil.rmtree(d, ignore_errors=True)  # about 1 GB for LGG: do not leave it behind


@pytest.mark.skipif(not (DATA / "lgg" / "kaggle_3m").is_dir(), reason="real LGG data not present")
def test_real_lgg_counts(real_cache):
    root = DATA / "lgg" / "kaggle_3m"
    assert summarize("lgg", root, cache_dir=real_cache) == {"patients": 90, "slices": 1139, "positive_slices": 1079}
    ds = load_dataset("lgg", root, cache_dir=real_cache)
    assert ds.from_cache and len(ds) == 1079 and ds.in_channels == 3 and ds.images[0].shape == (3, 256, 256)
    parts = split_by_patient(ds, seed=0)
    _check_partition(parts, len(ds))
    assert [len({ds.patients[i] for i in v}) for v in parts.values()] == [63, 9, 18]


@pytest.mark.skipif(not (DATA / "heart" / "Task02_Heart").is_dir(), reason="real heart data not present")
def test_real_heart_counts(real_cache):
    root = DATA / "heart" / "Task02_Heart"
    assert summarize("msd", root, cache_dir=real_cache) == {"patients": 16, "slices": 1214, "positive_slices": 1086}
    ds = load_dataset("msd", root, cache_dir=real_cache)
    assert len(ds) == 1086 and ds.in_channels == 1 and ds.spacing[0] == pytest.approx((1.25, 1.25))
