"""Inference timing: a whole PixelDRL-MG episode against one U-Net forward, same process."""

from __future__ import annotations

import os
import platform
import statistics
import time

import numpy as np
import torch

from napari_pixeldrl.model.config import preset_config
from napari_pixeldrl.model.episode import run_episode
from napari_pixeldrl.model.inference import pad_to_multiple
from napari_pixeldrl.model.network import build_model, count_parameters


def _interleaved_medians(fns, repeats: int, warmup: int) -> list[float]:
    """Median seconds of each function, run in turn so that a change in machine load
    during the measurement hits all of them alike and the ratio stays fair."""
    for _ in range(warmup):
        for fn in fns:
            fn()
    times = [[] for _ in fns]
    for _ in range(repeats):
        for fn, ts in zip(fns, times):
            t0 = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t0)
    return [statistics.median(ts) for ts in times]


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict:
    return {
        "cpu": cpu_name(),
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def bench_inference(
    preset: str = "lite",
    size: int = 256,
    *,
    threads: int = 2,
    repeats: int = 5,
    warmup: int = 2,
    loaded=None,
    slice_: np.ndarray | None = None,
    device: str = "cpu",
) -> dict:
    """Median seconds of one whole PixelDRL-MG inference and of one U-Net forward.

    Without ``loaded`` a random-weight model of ``preset`` runs all t_max argmax steps
    with the early stop off (the worst case). With ``loaded`` (a LoadedModel) and a real
    normalised ``slice_`` (C, H, W), the trained model runs with the early stop on and the
    steps it took are reported. The U-Net has the same input channels and slice.
    """
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    dev = torch.device(device)
    if loaded is None:
        config = preset_config(preset)
        model = build_model(config).to(dev).eval()
        x = torch.rand(1, config.in_channels, size, size, device=dev)
        early_stop = False
    else:
        config, model = loaded.config, loaded.model.to(dev).eval()
        x, _ = pad_to_multiple(torch.from_numpy(np.ascontiguousarray(slice_[None], np.float32)).to(dev))
        early_stop = True
    unet = build_model(preset_config("unet", in_channels=config.in_channels)).to(dev).eval()
    steps = []

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize()

    def pixeldrl():
        n = 0
        episode = run_episode(model, x, config.t_max, sample=False, early_stop=early_stop, with_value=False)
        for n, _ in enumerate(episode, 1):
            pass
        sync()
        steps.append(n)

    def unet_forward():
        unet(x)
        sync()

    with torch.inference_mode():
        pixeldrl_s, unet_s = _interleaved_medians([pixeldrl, unet_forward], repeats, warmup)
    return {
        "preset": config.preset,
        "size": list(x.shape[-2:]),
        "pixeldrl_s": round(pixeldrl_s, 4),
        "unet_s": round(unet_s, 4),
        "ratio": round(pixeldrl_s / unet_s, 3),
        "steps": steps[-1],
        "t_max": config.t_max,
        "early_stop": early_stop,
        "threads": threads,
        "repeats": repeats,
        "params": count_parameters(model),
        "unet_params": count_parameters(unet),
        "device": str(dev),
        "machine": machine(),
    }
