"""The device choice, one rule for the command line, the trainer and the plugin."""

from __future__ import annotations

import os

from napari_pixeldrl.core.errors import InputError


def choose_device(name: str = "auto") -> str:
    """``auto``: the GPU when PyTorch sees one, else the CPU. ``cuda`` under a distributed
    launch (WORLD_SIZE > 1) is this process's GPU, ``cuda:LOCAL_RANK``. A GPU asked for
    on a machine without one is refused rather than replaced by the CPU."""
    import torch

    if not isinstance(name, str) or not name:
        raise InputError(f"device must be auto, cpu, cuda or cuda:N, got {name!r}")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cpu":
        return name
    if name != "cuda" and not (name.startswith("cuda:") and name[5:].isdigit()):
        raise InputError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N")
    if not torch.cuda.is_available():
        raise InputError(f"device {name} was asked for, but PyTorch sees no CUDA GPU; use --device cpu")
    if name == "cuda" and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        name = f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
    return name


def available_devices() -> list[str]:
    """The devices a user can pick here: the CPU, and the GPU when PyTorch sees one."""
    import torch

    return ["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"]
