"""napari_pixeldrl.core.io: axis convention, round trips, atomic writes, errors naming the file."""

from __future__ import annotations

import os

import nibabel as nib
import numpy as np
import pytest
import tifffile
from PIL import Image

from napari_pixeldrl.core.errors import InputError
from napari_pixeldrl.core.io import ImageFile, UnreadableFileError, read_image, read_mask, write_mask


def _nifti(path, data, zooms=(0.8, 0.9, 2.5), origin=(10.0, -5.0, 3.0)):
    affine = np.diag(list(zooms[: data.ndim]) + [1.0] * (4 - min(data.ndim, 3)))[:4, :4]
    affine[:3, 3] = origin
    nib.save(nib.Nifti1Image(data, affine), str(path))
    return affine


def test_nifti_volume_is_zyx_with_spacing_and_affine(tmp_path):
    data = np.arange(64 * 48 * 5, dtype=np.int16).reshape(64, 48, 5)  # (X, Y, Z) on disk
    affine = _nifti(tmp_path / "v.nii.gz", data)
    im = read_image(tmp_path / "v.nii.gz")
    assert im.format == "nifti" and im.array.shape == (5, 48, 64)
    np.testing.assert_array_equal(im.array, np.transpose(data, (2, 1, 0)))
    assert im.array[2, 7, 30] == data[30, 7, 2]
    assert im.spacing == pytest.approx((2.5, 0.9, 0.8))
    np.testing.assert_allclose(im.affine, affine)


def test_nifti_2d_and_one_slice_are_yx(tmp_path):
    d2 = np.random.default_rng(0).integers(0, 100, (64, 32)).astype(np.int16)
    _nifti(tmp_path / "a.nii", d2, zooms=(0.5, 0.7))
    im = read_image(tmp_path / "a.nii")
    assert im.array.shape == (32, 64) and im.spacing == pytest.approx((0.7, 0.5))
    _nifti(tmp_path / "b.nii.gz", d2[:, :, None])
    im = read_image(tmp_path / "b.nii.gz")
    np.testing.assert_array_equal(im.array, d2.T)
    assert im.spacing == pytest.approx((0.9, 0.8))


def test_tif_and_png_read_as_stored(tmp_path):
    rgb = np.random.default_rng(1).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "x.tif", rgb)
    im = read_image(tmp_path / "x.tif")
    assert im.format == "tif" and im.array.shape == (64, 64, 3) and im.spacing == (1.0, 1.0) and im.affine is None
    Image.fromarray(rgb[..., 0]).save(tmp_path / "g.png")
    im = read_image(tmp_path / "g.png")
    assert im.format == "png" and im.array.shape == (64, 64)
    np.testing.assert_array_equal(im.array, rgb[..., 0])


@pytest.mark.parametrize("name", ["m.nii.gz", "m.nii"])
def test_write_mask_nifti_round_trip_keeps_affine(tmp_path, name):
    data = np.zeros((64, 48, 4), np.int16)
    affine = _nifti(tmp_path / "img.nii.gz", data)
    like = read_image(tmp_path / "img.nii.gz")
    mask = np.zeros(like.array.shape, np.uint8)
    mask[1, 10:20, 30:40] = 1
    out = write_mask(tmp_path / name, mask, like)
    disk = nib.load(str(out))
    assert disk.get_data_dtype() == np.uint8 and disk.shape == (64, 48, 4)
    np.testing.assert_allclose(disk.affine, affine)
    np.testing.assert_array_equal(read_mask(out), mask)
    assert [f for f in os.listdir(tmp_path) if f.startswith(".")] == []  # no temp file left


def test_write_mask_one_slice_nifti_keeps_disk_shape(tmp_path):
    _nifti(tmp_path / "img.nii.gz", np.zeros((64, 48, 1), np.int16))
    like = read_image(tmp_path / "img.nii.gz")
    mask = np.zeros((48, 64), np.uint8)
    mask[5, 6] = 1
    out = write_mask(tmp_path / "m.nii.gz", mask, like)
    assert nib.load(str(out)).shape == (64, 48, 1)
    np.testing.assert_array_equal(read_mask(out), mask)


@pytest.mark.parametrize("name", ["m.tif", "m.png"])
def test_write_mask_2d_round_trip(tmp_path, name):
    mask = np.zeros((64, 64), bool)
    mask[5:9, 40:60] = True
    out = write_mask(tmp_path / name, mask)
    back = read_image(out).array
    assert back.dtype == np.uint8
    np.testing.assert_array_equal(back, mask.astype(np.uint8))


def test_write_mask_refuses_bad_input(tmp_path):
    with pytest.raises(InputError, match="PNG"):
        write_mask(tmp_path / "m.png", np.zeros((2, 8, 8), np.uint8))
    with pytest.raises(InputError, match="0..255"):
        write_mask(tmp_path / "m.tif", np.full((8, 8), 300))
    like = ImageFile(np.zeros((8, 8)), (1.0, 1.0), None, "tif", "img.tif")
    with pytest.raises(InputError, match="img.tif"):
        write_mask(tmp_path / "m.tif", np.zeros((9, 8), np.uint8), like)
    with pytest.raises(InputError, match="unsupported"):
        write_mask(tmp_path / "m.jpg", np.zeros((8, 8), np.uint8))


def test_write_is_atomic_on_failure(tmp_path, monkeypatch):
    target = tmp_path / "m.tif"
    write_mask(target, np.ones((8, 8), np.uint8))
    before = target.read_bytes()

    def boom(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(tifffile, "imwrite", boom)
    with pytest.raises(RuntimeError):
        write_mask(target, np.zeros((8, 8), np.uint8))
    assert target.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["m.tif"]


def test_unreadable_files_name_the_file(tmp_path):
    with pytest.raises(UnreadableFileError, match="missing.nii.gz"):
        read_image(tmp_path / "missing.nii.gz")
    (tmp_path / "empty.tif").write_bytes(b"")
    with pytest.raises(InputError, match="empty.tif"):
        read_image(tmp_path / "empty.tif")
    (tmp_path / "junk.png").write_bytes(b"not a png at all")
    with pytest.raises(UnreadableFileError, match="junk.png") as info:
        read_image(tmp_path / "junk.png")
    assert info.value.path.endswith("junk.png")
    (tmp_path / "junk.nii.gz").write_bytes(b"\x1f\x8b garbage")
    with pytest.raises(UnreadableFileError, match="junk.nii.gz"):
        read_image(tmp_path / "junk.nii.gz")
    with pytest.raises(InputError, match="unsupported"):
        read_image(tmp_path / "x.bmp")


def test_read_mask_binarises_and_refuses_multilabel(tmp_path):
    m = np.zeros((64, 64), np.uint8)
    m[:10] = 255
    Image.fromarray(m).save(tmp_path / "m.png")
    out = read_mask(tmp_path / "m.png", shape=(64, 64))
    assert out.dtype == np.uint8 and set(np.unique(out)) == {0, 1}
    m[20:30] = 2
    tifffile.imwrite(tmp_path / "ml.tif", m)
    with pytest.raises(InputError, match="ml.tif"):
        read_mask(tmp_path / "ml.tif")
    np.testing.assert_array_equal(read_mask(tmp_path / "ml.tif", label=2), (m == 2).astype(np.uint8))
    with pytest.raises(InputError, match="does not match"):
        read_mask(tmp_path / "m.png", shape=(32, 64))
    rgb = np.stack([m == 255] * 3, -1).astype(np.uint8) * 255
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    np.testing.assert_array_equal(read_mask(tmp_path / "rgb.png"), (m == 255).astype(np.uint8))


def test_tif_without_pages_is_unreadable(tmp_path):
    (tmp_path / "bad.tif").write_bytes(b"II*\x00 this is not a tif")
    with pytest.raises(UnreadableFileError, match="bad.tif"):
        read_image(tmp_path / "bad.tif")


def test_write_mask_keeps_a_qform_that_differs_from_the_sform(tmp_path):
    import nibabel as nib

    from napari_pixeldrl.core.io import read_image, write_mask

    data = np.zeros((8, 8, 3), np.float32)
    data[2:5, 2:5, 1] = 1
    sform = np.diag([1.25, 1.25, 1.37, 1.0])
    qform = sform.copy()
    qform[:3, 3] = (89.0, 0.0, 0.0)  # 89 mm apart, as the hostile test had them
    img = nib.Nifti1Image(data, sform)
    img.set_sform(sform, code=2)
    img.set_qform(qform, code=1)
    nib.save(img, tmp_path / "in.nii.gz")
    like = read_image(tmp_path / "in.nii.gz")
    write_mask(tmp_path / "out.nii.gz", (like.array > 0).astype(np.uint8), like=like)
    out = nib.load(tmp_path / "out.nii.gz")
    q, qcode = out.get_qform(coded=True)
    s, scode = out.get_sform(coded=True)
    assert (int(qcode), int(scode)) == (1, 2)
    assert np.allclose(q, qform) and np.allclose(s, sform)


def test_lzw_compressed_tif_is_read(tmp_path):
    image = (np.arange(64 * 64) % 251).astype(np.uint8).reshape(64, 64)
    tifffile.imwrite(tmp_path / "lzw.tif", image, compression="lzw")
    assert np.array_equal(read_image(tmp_path / "lzw.tif").array, image)
