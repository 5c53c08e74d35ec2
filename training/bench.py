"""Timing against a peer in the same process: a whole PixelDRL-MG inference against one
U-Net forward (``bench_inference``), and one PA3C training step against one training step
of MONAI's BasicUNet on the same batch (``bench_training``)."""

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


def bench_training(
    preset: str = "lite",
    size: int = 256,
    *,
    batch: int = 2,
    channels: int = 1,
    threads: int = 2,
    repeats: int = 5,
    warmup: int = 1,
    device: str = "cpu",
    overrides: dict | None = None,
) -> dict:
    """Median seconds of one training step (forward, backward, Adam) of PixelDRL-MG by PA3C
    (the preset's training defaults, t_max steps) and of MONAI's BasicUNet with BCE + soft
    Dice (the objective the trainer gives it), on the same batch of ``batch`` random images
    whose truth is a disc on about 10 % of the pixels; interleaved, so that a change of
    machine load hits both alike. ``overrides``: model config fields changed from the preset's."""
    from napari_pixeldrl.training.pa3c import PA3CObjective
    from napari_pixeldrl.training.supervised import SupervisedObjective
    from napari_pixeldrl.training.train_config import TrainConfig
    from napari_pixeldrl.training.initialisation import param_groups

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    dev = torch.device(device)
    train = TrainConfig(preset=preset)
    config = preset_config(preset, in_channels=channels, **(overrides or {}))
    if config.arch != "pixeldrl":
        from napari_pixeldrl.core.errors import InputError

        raise InputError(f"--train times a PixelDRL-MG preset against the peer; {preset!r} is a U-Net")
    net = build_model(config).to(dev).train()
    peer = build_model(preset_config("basicunet", in_channels=channels)).to(dev).train()
    pa3c = PA3CObjective(net, t_max=config.t_max, gamma=config.gamma, **train.pa3c_options())
    supervised = SupervisedObjective(peer)
    opt_net = torch.optim.Adam(param_groups(net, train.lr, train.resolved("reward_conv_lr_scale")), lr=train.lr)
    opt_peer = torch.optim.Adam(peer.parameters(), lr=train.lr)
    x = torch.rand(batch, channels, size, size, device=dev)
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    disc = ((yy - size * 0.45) ** 2 + (xx - size * 0.55) ** 2 < (0.18 * size) ** 2).float()
    truth = disc.expand(batch, size, size).contiguous().to(dev)
    generator = torch.Generator(device=dev).manual_seed(0)

    def step(objective, optimizer, **kw):
        def run():
            optimizer.zero_grad(set_to_none=True)
            loss, _ = objective(x, truth, **kw)
            loss.backward()
            optimizer.step()
            if dev.type == "cuda":
                torch.cuda.synchronize()
        return run

    pa3c_s, peer_s = _interleaved_medians(
        [step(pa3c, opt_net, generator=generator), step(supervised, opt_peer)], repeats, warmup)
    return {
        "preset": preset,
        "size": size,
        "batch": batch,
        "channels": channels,
        "t_max": config.t_max,
        "overrides": dict(overrides or {}),
        "pa3c_s": round(pa3c_s, 4),
        "peer": "MONAI BasicUNet, BCE + soft Dice, Adam",
        "peer_s": round(peer_s, 4),
        "ratio": round(pa3c_s / peer_s, 3),
        "threads": threads,
        "repeats": repeats,
        "params": count_parameters(net),
        "peer_params": count_parameters(peer),
        "device": str(dev),
        "machine": machine(),
    }
