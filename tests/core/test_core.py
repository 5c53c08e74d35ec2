"""The ground floor: the device choice and atomic writes."""

from pathlib import Path

import pytest
import torch

from napari_pixeldrl.core.atomic import atomic_write
from napari_pixeldrl.core.device import available_devices, choose_device
from napari_pixeldrl.core.errors import InputError


def test_device_choice_refuses_what_is_not_there(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert choose_device("auto") == "cpu" and choose_device("cpu") == "cpu"
    assert available_devices() == ["cpu"]
    with pytest.raises(InputError, match="no CUDA GPU"):
        choose_device("cuda")
    with pytest.raises(InputError, match="unknown device 'gpu'"):
        choose_device("gpu")


def test_device_choice_under_a_distributed_launch(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert choose_device("auto") == "cuda:1" and choose_device("cuda:0") == "cuda:0"
    assert available_devices() == ["cpu", "cuda"]


def test_atomic_write_keeps_the_old_file_when_the_writer_fails(tmp_path):
    path = tmp_path / "sub" / "a.txt"
    atomic_write(path, lambda tmp: Path(tmp).write_text("old"))

    def broken(tmp):
        Path(tmp).write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(path, broken)
    assert path.read_text() == "old" and sorted(p.name for p in path.parent.iterdir()) == ["a.txt"]
    seen = []
    atomic_write(tmp_path / "m.nii.gz", lambda tmp: seen.append(tmp), keep_suffix=".nii.gz")
    assert seen[0].endswith(".nii.gz")  # nibabel picks the format from the name
