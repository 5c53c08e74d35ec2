import json
import os
import pickle

import pytest
import torch
from safetensors.torch import save_file

from napari_pixeldrl.core.errors import CheckpointError
from napari_pixeldrl.model import checkpoint as ckpt
from napari_pixeldrl.model.checkpoint import load_checkpoint, read_header, save_checkpoint
from napari_pixeldrl.model.network import build_model


def test_roundtrip_keeps_weights_config_and_info(tmp_path, tiny_config):
    cfg = tiny_config("lite", in_channels=3)
    model = build_model(cfg)
    path = save_checkpoint(tmp_path / "m.safetensors", model, cfg, {"trained_on": "lgg", "metrics": {"dice": 0.5}})
    loaded = load_checkpoint(path)
    assert loaded.config == cfg
    assert loaded.info["trained_on"] == "lgg" and loaded.info["metrics"]["dice"] == 0.5
    assert "package_version" in loaded.info
    for (k, a), (_, b) in zip(model.state_dict().items(), loaded.model.state_dict().items()):
        assert torch.equal(a, b), k


def test_half_precision_loads_as_float32(tmp_path, tiny_config):
    cfg = tiny_config("lite")
    model = build_model(cfg)
    path = save_checkpoint(tmp_path / "h.safetensors", model, cfg, half=True)
    loaded = load_checkpoint(path)
    w = loaded.model.policy.out.weight
    assert w.dtype == torch.float32
    assert torch.allclose(w, model.policy.out.weight, atol=1e-3)


def test_foreign_files_are_refused_with_names(tmp_path, tiny_config):
    pickled = tmp_path / "model.pt"
    torch.save({"a": torch.zeros(2)}, pickled)
    with pytest.raises(CheckpointError, match="pickled"):
        load_checkpoint(pickled)
    raw = tmp_path / "raw.pkl"
    raw.write_bytes(pickle.dumps({"x": 1}))
    with pytest.raises(CheckpointError, match="pickled"):
        load_checkpoint(raw)
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="junk.safetensors is not a readable safetensors"):
        load_checkpoint(junk)
    other = tmp_path / "other.safetensors"
    save_file({"w": torch.zeros(3)}, str(other), metadata={"format": "someone-else"})
    with pytest.raises(CheckpointError, match="not a napari-pixeldrl checkpoint"):
        load_checkpoint(other)
    with pytest.raises(CheckpointError, match="neither a file nor a bundled model"):
        load_checkpoint(tmp_path / "missing.safetensors")


def test_other_format_version_is_refused(tmp_path, tiny_config):
    cfg = tiny_config("lite")
    path = tmp_path / "v.safetensors"
    header = {"format": "napari-pixeldrl", "format_version": "99", "config": json.dumps({"model": cfg.to_dict()})}
    save_file({k: v.contiguous() for k, v in build_model(cfg).state_dict().items()}, str(path), metadata=header)
    with pytest.raises(CheckpointError, match="format version 99"):
        load_checkpoint(path)


def test_weights_not_matching_config_are_refused(tmp_path, tiny_config):
    cfg = tiny_config("lite")
    path = save_checkpoint(tmp_path / "m.safetensors", build_model(cfg), cfg)
    # Same weights, header now claims three input channels.
    header = read_header(path)
    header["model"]["in_channels"] = 3
    from safetensors.torch import load_file

    save_file(load_file(str(path)), str(path), metadata={"format": "napari-pixeldrl", "format_version": "1", "config": json.dumps(header)})
    with pytest.raises(CheckpointError, match="wrong shape"):
        load_checkpoint(path)


def test_failed_write_keeps_previous_checkpoint(tmp_path, tiny_config, monkeypatch):
    cfg = tiny_config("lite")
    path = save_checkpoint(tmp_path / "m.safetensors", build_model(cfg), cfg, {"epoch": 1})

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ckpt, "save_file", disk_full)
    with pytest.raises(OSError, match="No space"):
        save_checkpoint(path, build_model(cfg), cfg, {"epoch": 2})
    assert load_checkpoint(path).info["epoch"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]  # no temp file left behind


def test_header_length_starting_like_pickle_is_still_read(tmp_path, tiny_config):
    """The 8-byte header length of a safetensors file may begin with 0x80 or b'PK'."""
    cfg = tiny_config("lite")
    model = build_model(cfg)
    for pad in range(0, 300):
        path = save_checkpoint(tmp_path / "m.safetensors", model, cfg, {"pad": "x" * pad})
        first = path.read_bytes()[:2]
        if first[:1] == b"\x80":
            break
    else:
        pytest.skip("no padding gave a header length starting with 0x80")
    assert load_checkpoint(path).info["pad"] == "x" * pad


def test_written_files_get_the_usual_permissions(tmp_path, tiny_config):
    cfg = tiny_config("lite")
    old = os.umask(0o022)
    try:
        path = save_checkpoint(tmp_path / "m.safetensors", build_model(cfg), cfg)
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o644


@pytest.mark.parametrize("field, value", [("in_channels", "3"), ("in_channels", -1), ("widths", 5), ("arch", "bogus"),
                                          ("t_max", "ten"), ("widths", [10**9, 8, 8, 8]), ("head_scale", 3)])
def test_config_of_wrong_type_or_size_is_refused_before_building(tmp_path, tiny_config, field, value):
    import json

    from safetensors.torch import load_file, save_file

    from napari_pixeldrl.core.errors import CheckpointError

    cfg = tiny_config("lite")
    path = save_checkpoint(tmp_path / "m.safetensors", build_model(cfg), cfg)
    header = read_header(path)
    header["model"][field] = value
    meta = {"format": "napari-pixeldrl", "format_version": "1", "config": json.dumps(header)}
    save_file(load_file(str(path)), str(path), metadata=meta)
    with pytest.raises(CheckpointError, match=field):
        load_checkpoint(path)


def test_info_that_is_not_an_object_is_refused(tmp_path, tiny_config):
    import json

    from safetensors.torch import load_file, save_file

    from napari_pixeldrl.core.errors import CheckpointError

    cfg = tiny_config("lite")
    path = save_checkpoint(tmp_path / "m.safetensors", build_model(cfg), cfg)
    header = {**read_header(path), "info": "a string"}
    save_file(load_file(str(path)), str(path), metadata={"format": "napari-pixeldrl", "format_version": "1",
                                                         "config": json.dumps(header)})
    with pytest.raises(CheckpointError, match="info"):
        load_checkpoint(path)
