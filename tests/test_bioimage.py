"""bioimage.io model packages: napari-pixeldrl loads one wherever it loads a checkpoint,
and bioimage.io tools run the whole episode as one forward of PixelDRLEpisode.

Reading a package needs no bioimageio: it is tested on packages made here by hand
(``_helpers.make_package``)."""

import hashlib
import json
import zipfile

import numpy as np
import pytest
import tifffile
import torch

from _helpers import make_package
from _synthetic import TINY
from napari_pixeldrl.core.errors import CheckpointError
from napari_pixeldrl.model.bioimage import PixelDRLEpisode
from napari_pixeldrl.model.checkpoint import load_checkpoint, read_header, save_checkpoint
from napari_pixeldrl.model.config import preset_config
from napari_pixeldrl.model.inference import segment
from napari_pixeldrl.model.network import build_model
from napari_pixeldrl.model.package import CHECKPOINT_NAME
from napari_pixeldrl.model.preprocess import normalize_slice
from napari_pixeldrl.training.cli import main


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def one_line_error(code, err, says):
    assert code == 2 and says in err and "Traceback" not in err, err
    assert len(err.strip().splitlines()) == 1, err


def blob(size=(64, 64), seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[: size[0], : size[1]]
    disc = (yy - size[0] / 2) ** 2 + (xx - size[1] / 2.5) ** 2 < (min(size) / 4) ** 2
    return (rng.normal(40, 5, size) + 120 * disc).astype(np.float32)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A tiny one-channel checkpoint and a 64x64 image file to test it on."""
    folder = tmp_path_factory.mktemp("tiny")
    torch.manual_seed(0)
    cfg = preset_config("lite", **TINY)
    info = {"epoch": 2, "val_dice": 0.5, "data": {"dataset": "folder", "path": "discs", "split_by": "patient", "seed": 0}}
    ckpt = save_checkpoint(folder / "tiny.safetensors", build_model(cfg), cfg, info)
    image = folder / "scan.tif"
    tifffile.imwrite(image, blob())
    return ckpt, image


@pytest.fixture(scope="module")
def handmade(tiny, tmp_path_factory):
    return make_package(tmp_path_factory.mktemp("handmade") / "model.zip", tiny[0])


# ------------------------------------------------------------------ reading (no bioimageio needed)


@pytest.mark.parametrize("package", ["handmade"])
def test_a_package_loads_as_the_checkpoint_it_carries(request, tiny, package, tmp_path):
    path = request.getfixturevalue(package)
    ckpt, image = tiny
    source, loaded = load_checkpoint(ckpt), load_checkpoint(path)
    assert loaded.path == path and loaded.config == source.config and loaded.info == source.info
    assert read_header(path) == read_header(ckpt)
    for (k, a), (_, b) in zip(source.model.state_dict().items(), loaded.model.state_dict().items()):
        assert torch.equal(a, b), k
    slice_ = tifffile.imread(image)
    assert np.array_equal(segment(loaded.model, loaded.config, slice_).mask,
                          segment(source.model, source.config, slice_).mask)
    # Unpacked: the folder, or its rdf.yaml, loads the same.
    with zipfile.ZipFile(path) as zf:
        zf.extractall(tmp_path / "unpacked")
    for where in (tmp_path / "unpacked", tmp_path / "unpacked" / "rdf.yaml"):
        assert load_checkpoint(where).config == source.config


def test_pixeldrl_predict_and_info_take_a_package(capsys, tmp_path, tiny, handmade):
    ckpt, image = tiny
    for model, out in ((ckpt, tmp_path / "a.tif"), (handmade, tmp_path / "b.tif")):
        code, _, err = run(capsys, "predict", "--checkpoint", model, image, out)
        assert code == 0, err
    assert np.array_equal(tifffile.imread(tmp_path / "a.tif"), tifffile.imread(tmp_path / "b.tif"))
    code, out, err = run(capsys, "info", "--checkpoint", handmade, "--json")
    assert code == 0 and json.loads(out)["info"]["val_dice"] == 0.5, err


def test_damaged_or_foreign_packages_are_refused_with_one_line(capsys, tmp_path, tiny):
    ckpt, image = tiny
    data = ckpt.read_bytes()
    cases = []
    # The description without the checkpoint (another tool's model, or a part left out).
    bare = tmp_path / "bare.zip"
    with zipfile.ZipFile(bare, "w") as zf:
        zf.writestr("rdf.yaml", "type: model\n")
    cases.append((bare, f"without {CHECKPOINT_NAME}"))
    # A checkpoint other than the one the description lists.
    other = tmp_path / "other.safetensors"
    other.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    swapped = make_package(tmp_path / "swapped.zip", other,
                           description=f"attachments:\n  - sha256: {hashlib.sha256(data).hexdigest()}\n")
    cases.append((swapped, "sha256 differs"))
    # Listed correctly but truncated: not a safetensors file any more.
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(data[:20])
    cases.append((make_package(tmp_path / "cut.zip", cut), "not a readable safetensors file"))
    # Bytes changed in transit: the zip's checksum catches it.
    flipped = tmp_path / "flipped.zip"
    with zipfile.ZipFile(flipped, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("rdf.yaml", f"sha256: {hashlib.sha256(data).hexdigest()}\n")
        zf.writestr(CHECKPOINT_NAME, data)
    raw = bytearray(flipped.read_bytes())
    raw[raw.find(data[-64:]) + 10] ^= 0xFF
    flipped.write_bytes(bytes(raw))
    cases.append((flipped, "cannot read the bioimage.io package"))
    # A zip that is no package at all.
    plain = tmp_path / "plain.zip"
    with zipfile.ZipFile(plain, "w") as zf:
        zf.writestr("notes.txt", "hello")
    cases.append((plain, "not a bioimage.io model package"))
    for path, says in cases:
        with pytest.raises(CheckpointError, match=says):
            load_checkpoint(path)
        code, _, err = run(capsys, "predict", "--checkpoint", path, image, tmp_path / "mask.tif")
        one_line_error(code, err, says)


# ------------------------------------------------------------------ the wrapper bioimage.io runs


@pytest.mark.parametrize("preset, overrides", [
    ("lite", dict(TINY, postprocess="largest-component")),
    ("paper", dict(TINY, t_max=3)),
    ("unet", dict(unet_base=4)),
])
def test_episode_wrapper_gives_the_mask_pixeldrl_predict_gives(preset, overrides):
    """One forward on the preprocessed slice = the whole segment(), on a size no multiple of 8."""
    torch.manual_seed(1)
    cfg = preset_config(preset, **overrides)
    model = build_model(cfg).eval()
    episode = PixelDRLEpisode(**json.loads(json.dumps(cfg.to_dict()))).eval()  # kwargs as rdf.yaml gives them
    episode.network.load_state_dict(model.state_dict())
    images = [blob((61, 70), seed) for seed in (0, 1)]
    x = torch.from_numpy(np.stack([normalize_slice(im[None]) for im in images]))
    with torch.no_grad():
        out = episode(x)
    assert out.dtype == torch.float32 and out.shape == (2, 1, 61, 70)
    for i, image in enumerate(images):
        assert np.array_equal(out[i, 0].numpy(), segment(model, cfg, image).mask.astype(np.float32))
