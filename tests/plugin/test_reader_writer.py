"""NIfTI reader and labels writer of the napari plugin (plain functions, no napari needed)."""

import nibabel as nib
import numpy as np
import pytest
import tifffile

from napari_pixeldrl._reader import napari_get_reader, origin_zyx
from napari_pixeldrl._writer import write_labels
from napari_pixeldrl.core.errors import InputError
from napari_pixeldrl.core.io import read_image


def _affine():
    a = np.diag([0.8, 0.9, 2.5, 1.0])  # sx, sy, sz
    a[:3, 3] = (-10.0, 20.0, 30.0)  # x, y, z origin
    return a


@pytest.fixture
def volume(tmp_path):
    rng = np.random.default_rng(0)
    disk = rng.integers(0, 1000, (12, 10, 5)).astype(np.int16)  # (X, Y, Z)
    path = tmp_path / "scan.nii.gz"
    nib.save(nib.Nifti1Image(disk, _affine()), path)
    return path, disk


def test_reader_claims_nifti_only(tmp_path):
    assert napari_get_reader(str(tmp_path / "a.nii.gz")) is not None
    assert napari_get_reader(str(tmp_path / "a.NII")) is not None
    assert napari_get_reader(str(tmp_path / "a.tif")) is None
    assert napari_get_reader([str(tmp_path / "a.nii"), str(tmp_path / "b.png")]) is None


def test_reader_geometry(volume):
    path, disk = volume
    [(data, kwargs, kind)] = napari_get_reader(str(path))(str(path))
    assert kind == "image"
    np.testing.assert_array_equal(data, np.transpose(disk, (2, 1, 0)))
    assert kwargs["scale"] == pytest.approx((2.5, 0.9, 0.8))
    assert kwargs["translate"] == pytest.approx((30.0, 20.0, -10.0))
    md = kwargs["metadata"]
    np.testing.assert_allclose(md["affine"], _affine())
    assert md["spacing"] == pytest.approx((2.5, 0.9, 0.8))
    assert md["source_path"] == str(path)


def test_reader_opens_masks_as_labels(tmp_path):
    path = tmp_path / "case_mask.nii.gz"
    nib.save(nib.Nifti1Image((np.arange(60).reshape(5, 4, 3) % 2).astype(np.uint8), np.eye(4)), path)
    [(_, _, kind)] = napari_get_reader(str(path))(str(path))
    assert kind == "labels"


def test_writer_nifti_keeps_source_geometry(volume, tmp_path):
    path, disk = volume
    [(data, kwargs, _)] = napari_get_reader(str(path))(str(path))
    mask = (data > 500).astype(np.uint8)
    meta = {"metadata": kwargs["metadata"], "scale": kwargs["scale"], "translate": kwargs["translate"]}
    out = tmp_path / "out" / "mask.nii.gz"
    assert write_labels(str(out), mask, meta) == [str(out)]
    img = nib.load(out)
    np.testing.assert_allclose(img.affine, _affine())
    np.testing.assert_array_equal(np.asanyarray(img.dataobj), (disk > 500).astype(np.uint8))
    back = read_image(out)
    np.testing.assert_array_equal(back.array, mask)


def test_writer_nifti_without_metadata_uses_scale_translate(tmp_path):
    mask = np.zeros((3, 4, 5), np.uint8)
    mask[1, 2, 3] = 1
    out = tmp_path / "m.nii"
    write_labels(str(out), mask, {"metadata": {}, "scale": (3.0, 2.0, 1.0), "translate": (7.0, 8.0, 9.0)})
    img = read_image(out)
    np.testing.assert_array_equal(img.array, mask)
    assert img.spacing == pytest.approx((3.0, 2.0, 1.0))
    assert origin_zyx(img.affine, 3) == pytest.approx((7.0, 8.0, 9.0))


@pytest.mark.parametrize("suffix", [".tif", ".png"])
def test_writer_2d_tif_png(tmp_path, suffix):
    mask = np.zeros((6, 7), np.uint8)
    mask[2:4, 3:5] = 2
    out = tmp_path / f"m{suffix}"
    write_labels(str(out), mask, {"metadata": {}})
    np.testing.assert_array_equal(read_image(out).array, mask)


def test_writer_refuses_3d_png_and_big_labels(tmp_path):
    with pytest.raises(InputError, match="PNG"):
        write_labels(str(tmp_path / "m.png"), np.zeros((2, 3, 4), np.uint8), {"metadata": {}})
    with pytest.raises(InputError, match="0..255"):
        write_labels(str(tmp_path / "m.tif"), np.full((3, 4), 300, np.int32), {"metadata": {}})
    tifffile.imwrite(tmp_path / "ok.tif", np.zeros((2, 2), np.uint8))  # nothing half-written beside it
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ok.tif"]


def test_manifest_is_valid():
    npe2 = pytest.importorskip("npe2")
    from importlib.resources import files

    manifest = npe2.PluginManifest.from_file(str(files("napari_pixeldrl") / "napari.yaml"))
    assert manifest.display_name == "PixelDRL-MG"
    assert "Segmentation" in manifest.categories
    menu = manifest.contributions.menus["napari/layers/segment"]
    assert {m.command for m in menu} == {"napari-pixeldrl.segment", "napari-pixeldrl.evaluate", "napari-pixeldrl.train"}
