"""Issue 3 speed table: training throughput and inference time per slice, each as a ratio
to the U-Net measured in the same process (interleaved runs, medians).

    python benchmarks/training_speed.py [--threads 2] [--crop 128] [--repeats 5]

Training: one optimiser step on a batch of 2 random crops with the trainers' objectives
(PA3C with the lite preset's defaults, Dice+BCE for the U-Net). Throughput is given in
image-steps per second (batch x t_max for PixelDRL-MG, batch x 1 for the U-Net) and in
images per second. Inference: one 256x256 slice, ``pixeldrl bench``'s worst case (all
t_max steps). Writes benchmarks/results/training_speed.{json,md}.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
from pathlib import Path

import torch

from napari_pixeldrl.model.config import preset_config
from napari_pixeldrl.model.network import build_model
from napari_pixeldrl.training.bench import _interleaved_medians, bench_inference, machine
from napari_pixeldrl.training.pa3c import PA3CObjective
from napari_pixeldrl.training.supervised import SupervisedObjective
from napari_pixeldrl.training.trainer import TrainConfig

OUT = Path(__file__).parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--crop", type=int, default=128)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--channels", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    defaults = TrainConfig(preset="lite")
    lite_cfg = preset_config("lite", in_channels=args.channels)
    lite = build_model(lite_cfg)
    unet = build_model(preset_config("unet", in_channels=args.channels))
    pa3c = PA3CObjective(lite, t_max=lite_cfg.t_max, gamma=lite_cfg.gamma, **defaults.pa3c_options())
    sup = SupervisedObjective(unet)
    opt_lite = torch.optim.Adam(lite.parameters(), 1e-3)
    opt_unet = torch.optim.Adam(unet.parameters(), 1e-3)
    x = torch.rand(args.batch, args.channels, args.crop, args.crop)
    g = torch.zeros(args.batch, args.crop, args.crop)
    g[:, args.crop // 4 : args.crop // 2, args.crop // 4 : args.crop // 2] = 1

    def step(objective, opt):
        def run():
            loss, _ = objective(x, g)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        return run

    lite_s, unet_s = _interleaved_medians([step(pa3c, opt_lite), step(sup, opt_unet)], args.repeats, warmup=1)
    infer = bench_inference("lite", 256, threads=args.threads, repeats=args.repeats, warmup=1)
    result = {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "command": "python benchmarks/training_speed.py " + " ".join(f"--{k} {v}" for k, v in vars(args).items()),
        "machine": machine(),
        "training": {
            "pixeldrl_lite_s_per_batch": round(lite_s, 4),
            "unet_s_per_batch": round(unet_s, 4),
            "pixeldrl_image_steps_per_s": round(args.batch * lite_cfg.t_max / lite_s, 2),
            "unet_image_steps_per_s": round(args.batch / unet_s, 2),
            "pixeldrl_images_per_s": round(args.batch / lite_s, 3),
            "unet_images_per_s": round(args.batch / unet_s, 3),
            "time_ratio_per_batch": round(lite_s / unet_s, 3),
        },
        "inference_256": {k: infer[k] for k in ("pixeldrl_s", "unet_s", "ratio", "steps", "threads")},
    }
    OUT.mkdir(exist_ok=True)
    (OUT / "training_speed.json").write_text(json.dumps(result, indent=2) + "\n")
    t, i = result["training"], result["inference_256"]
    md = f"""# Training and inference speed (PixelDRL-MG lite against the 31 M U-Net)

Command: `{result['command']}`  
Date: {result['date']}  
Machine: {result['machine']['cpu']}, {result['machine']['cores']} cores, torch {result['machine']['torch']}, {args.threads} threads

| | PixelDRL-MG lite | U-Net | ratio (lite / U-Net) |
| --- | --- | --- | --- |
| training, s per batch of {args.batch} crops {args.crop}x{args.crop} | {t['pixeldrl_lite_s_per_batch']:.3f} | {t['unet_s_per_batch']:.3f} | {t['time_ratio_per_batch']:.3f} |
| training, image-steps per s | {t['pixeldrl_image_steps_per_s']:.2f} ({lite_cfg.t_max} steps an image) | {t['unet_image_steps_per_s']:.2f} (1 step) | |
| training, images per s | {t['pixeldrl_images_per_s']:.3f} | {t['unet_images_per_s']:.3f} | {t['unet_s_per_batch'] / t['pixeldrl_lite_s_per_batch']:.3f} (lite / U-Net throughput) |
| inference, s per 256x256 slice (all {i['steps']} steps) | {i['pixeldrl_s']:.3f} | {i['unet_s']:.3f} | {i['ratio']:.3f} |
"""
    (OUT / "training_speed.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
