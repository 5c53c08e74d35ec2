"""bioimage.io model packages: ``pixeldrl export`` writes one that bioimage.io tools
validate and run, and napari-pixeldrl loads one wherever it loads a checkpoint.

Tests that write or run a package need bioimageio.spec / bioimageio.core (the ``bioimage``
extra) and are skipped without them; reading a package needs neither, and is tested on
packages made here by hand (``_helpers.make_package``) as well."""

import hashlib
import json
import sys
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
def exported(tiny, tmp_path_factory):
    """``pixeldrl export`` of the tiny checkpoint, tested on the 64x64 image."""
    pytest.importorskip("bioimageio.spec")
    from napari_pixeldrl.training.export import export_package

    ckpt, image = tiny
    out = tmp_path_factory.mktemp("package") / "model.zip"
    export_package(ckpt, out, test_image=image)
    return out


@pytest.fixture(scope="module")
def handmade(tiny, tmp_path_factory):
    return make_package(tmp_path_factory.mktemp("handmade") / "model.zip", tiny[0])


# ------------------------------------------------------------------ writing (bioimageio)


def test_export_writes_a_package_bioimageio_spec_validates(exported):
    spec = pytest.importorskip("bioimageio.spec")
    descr = spec.load_description(exported)
    assert not isinstance(descr, spec.InvalidDescr), descr.validation_summary.format()
    assert descr.validation_summary.status != "failed"
    with zipfile.ZipFile(exported) as zf:
        names = set(zf.namelist())
        card = zf.read("README.md").decode()
    assert {"rdf.yaml", CHECKPOINT_NAME, "weights.pt", "test_input.npy", "test_output.npy", "cover.png"} <= names
    assert "## Validation" in card and "Model card" in card
    assert str(descr.cite[0].doi) == "10.1038/s41598-025-92117-2"
    assert str(descr.license) == "BSD-3-Clause"
    assert [p.id for p in descr.inputs[0].preprocessing] == ["ensure_dtype", "scale_range", "clip", "ensure_dtype"]
    arch = descr.weights.pytorch_state_dict.architecture
    assert (arch.import_from, arch.callable) == ("napari_pixeldrl.model.bioimage", "PixelDRLEpisode")


def test_bioimageio_core_runs_the_package_and_reproduces_the_test_output(exported):
    core = pytest.importorskip("bioimageio.core")
    summary = core.test_model(exported)
    assert summary.status == "passed", summary.format()


def test_bioimageio_preprocessing_is_ours(exported):
    """The package's scale_range + clip, run by bioimageio.core, against model/preprocess.py."""
    pytest.importorskip("bioimageio.core")
    from bioimageio.core.digest_spec import get_test_input_sample
    from bioimageio.core.proc_setup import get_pre_and_postprocessing
    from bioimageio.spec import load_description

    descr = load_description(exported)
    sample = get_test_input_sample(descr)
    raw = sample.members["image"].data.values.copy()
    get_pre_and_postprocessing(descr, dataset_for_initial_statistics=[]).pre(sample)
    theirs = sample.members["image"].data.values
    np.testing.assert_allclose(theirs[0], normalize_slice(raw[0]), atol=1e-6, rtol=0)


def test_bundled_heart_package_passes_bioimageio_test(tmp_path):
    core = pytest.importorskip("bioimageio.core")
    from napari_pixeldrl.training.export import export_package

    result = export_package("heart", tmp_path / "heart.zip")
    assert "bundled heart sample" in result["test_input"] and result["test_input_shape"] == [1, 1, 256, 256]
    with zipfile.ZipFile(tmp_path / "heart.zip") as zf:
        assert "Model card: `heart`" in zf.read("README.md").decode()  # the bundled card
    summary = core.test_model(tmp_path / "heart.zip")
    assert summary.status == "passed", summary.format()
    assert load_checkpoint(tmp_path / "heart.zip").info == load_checkpoint("heart").info


def test_export_refuses_outputs_it_cannot_write_before_the_work(capsys, tmp_path, tiny, monkeypatch):
    import napari_pixeldrl.training.export as E

    def no_work(*_, **__):
        raise AssertionError("the checkpoint was loaded before the output was checked")

    monkeypatch.setattr(E, "load_checkpoint", no_work)
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    for out, says in ((a_file / "model.zip", "it is a file"), (tmp_path, "is a folder"),
                      (tmp_path / "model.tar", "ending in .zip")):
        code, _, err = run(capsys, "export", "--checkpoint", tiny[0], "--out", out)
        one_line_error(code, err, says)


def test_export_without_bioimageio_says_what_to_install(capsys, tmp_path, tiny, monkeypatch):
    monkeypatch.setitem(sys.modules, "bioimageio.spec", None)  # import fails as if not installed
    code, _, err = run(capsys, "export", "--checkpoint", tiny[0], "--out", tmp_path / "model.zip")
    one_line_error(code, err, 'pip install "napari-pixeldrl[bioimage]"')
    assert not (tmp_path / "model.zip").exists()


def test_export_names_a_pydantic_too_new_for_bioimageio_spec(capsys, tmp_path, tiny, monkeypatch):
    spec = pytest.importorskip("bioimageio.spec")
    import pydantic

    monkeypatch.setattr(spec, "__version__", "0.5.12.0")
    monkeypatch.setattr(pydantic, "VERSION", "2.14.4")
    code, _, err = run(capsys, "export", "--checkpoint", tiny[0], "--out", tmp_path / "model.zip")
    one_line_error(code, err, 'pip install "pydantic<2.14"')


def test_export_refuses_a_name_bioimageio_would_refuse(capsys, tmp_path, tiny):
    pytest.importorskip("bioimageio.spec")
    code, _, err = run(capsys, "export", "--checkpoint", tiny[0], "--out", tmp_path / "m.zip", "--name", "my/model")
    one_line_error(code, err, "--name")


# ------------------------------------------------------------------ reading (no bioimageio needed)


@pytest.mark.parametrize("package", ["handmade", "exported"])
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
