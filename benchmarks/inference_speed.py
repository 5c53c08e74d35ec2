"""Issue 2 targets: parameter counts of the presets and the inference-time ratio against
one U-Net forward (``pixeldrl bench``), written to benchmarks/results/inference_speed.{json,md}.

    python benchmarks/inference_speed.py            # lite and paper, 256x256, 2 threads

Each figure is the median of interleaved runs (PixelDRL-MG, U-Net, PixelDRL-MG, ...)
in one process, so a change of machine load hits both alike.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
from pathlib import Path

from napari_pixeldrl.model.config import preset_config
from napari_pixeldrl.model.network import build_model, count_parameters
from napari_pixeldrl.training.bench import bench_inference, machine

OUT = Path(__file__).parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    params = {
        f"{name} ({ch} ch)": count_parameters(build_model(preset_config(name, in_channels=ch)))
        for name in ("paper", "lite", "unet")
        for ch in (1, 3)
    }
    runs = {
        "lite": bench_inference("lite", args.size, threads=args.threads, repeats=7, warmup=2),
        # The paper-literal model takes ~45 s a run on 2 threads: fewer repeats.
        "paper": bench_inference("paper", args.size, threads=args.threads, repeats=3, warmup=1),
    }
    result = {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "command": f"python benchmarks/inference_speed.py --size {args.size} --threads {args.threads}",
        "machine": machine(),
        "params": params,
        "paper_params_target": 7.14e6,
        "paper_params_error": abs(params["paper (1 ch)"] - 7.14e6) / 7.14e6,
        "bench": runs,
    }
    OUT.mkdir(exist_ok=True)
    (OUT / "inference_speed.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [
        "# Inference speed and parameter counts",
        "",
        f"Command: `{result['command']}`  ",
        f"Date: {result['date']}  ",
        f"Machine: {result['machine']['cpu']}, {result['machine']['cores']} cores, torch {result['machine']['torch']}, "
        f"{args.threads} threads, CUDA: {result['machine']['cuda']}",
        "",
        "| preset | parameters |",
        "| --- | --- |",
        *[f"| {k} | {v:,} |" for k, v in params.items()],
        "",
        f"`paper` is {100 * result['paper_params_error']:.3f} % from the paper's 7.14 M.",
        "",
        f"One whole inference of a {args.size}x{args.size} slice (argmax, all t_max steps, early stop off, random weights)",
        "against one forward of the 31 M U-Net on the same slice, medians of interleaved runs:",
        "",
        "| preset | PixelDRL-MG s | U-Net s | ratio | steps | repeats |",
        "| --- | --- | --- | --- | --- | --- |",
        *[
            f"| {name} | {r['pixeldrl_s']:.3f} | {r['unet_s']:.3f} | {r['ratio']:.3f} | {r['steps']} | {r['repeats']} |"
            for name, r in runs.items()
        ],
        "",
    ]
    (OUT / "inference_speed.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
