"""Training cost against the standard peer: one PA3C training step (batch 2, t_max steps,
forward + backward + Adam) against one training step of MONAI's BasicUNet with BCE + soft
Dice on the same batch, interleaved in one process (``pixeldrl bench --train``), at each
size asked for.

    python benchmarks/training_speed.py [--threads 2] [--sizes 128 256] [--repeats 7] [--earlier-lite]

Run it on a quiet machine: the ratio is robust to a steady load, not to a load that comes
and goes within one measurement. Writes benchmarks/results/training_speed.{json,md}.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shlex
import sys
from pathlib import Path

from napari_pixeldrl.training.bench import bench_training, machine

OUT = Path(__file__).parent / "results"
EARLIER_LITE = {"shared_head": False, "extractor_norm": "none"}  # the lite preset's network until 2026-11-30


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 256])
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--channels", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--preset", default="lite")
    parser.add_argument("--earlier-lite", action="store_true",
                        help="also time the lite network before 2026-11-30 (two head bodies, no normalisation)")
    args = parser.parse_args()
    load_before = os.getloadavg()[0]
    variants = {"": {}}
    if args.earlier_lite:
        variants["earlier lite network"] = EARLIER_LITE
    rows = [{**bench_training(args.preset, size, batch=args.batch, channels=args.channels, threads=args.threads,
                              repeats=args.repeats, warmup=1, overrides=overrides), "variant": name}
            for size in args.sizes for name, overrides in variants.items()]
    result = {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "command": "python benchmarks/training_speed.py " + shlex.join(sys.argv[1:]),
        "machine": machine(),
        "load_average_before": round(load_before, 2),
        "load_average_after": round(os.getloadavg()[0], 2),
        "training": rows,
    }
    OUT.mkdir(exist_ok=True)
    (OUT / "training_speed.json").write_text(json.dumps(result, indent=2) + "\n")
    m = result["machine"]
    lines = [
        f"# Training cost: PixelDRL-MG {args.preset} (PA3C) against MONAI's BasicUNet", "",
        f"Command: `{result['command']}`  ",
        f"Date: {result['date']}  ",
        f"Machine: {m['cpu']}, {m['cores']} cores, torch {m['torch']}, {args.threads} threads; load average "
        f"{result['load_average_before']} before, {result['load_average_after']} after.", "",
        "One training step each (forward, backward, Adam) on the same batch, interleaved in one process, "
        f"median of {args.repeats}; the same figures as `pixeldrl bench --train --preset {args.preset} --size N --json`.", "",
        f"| network | size | batch | PA3C step, s (t_max {rows[0]['t_max']}) | BasicUNet step, s | ratio PA3C / BasicUNet |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        name = r["variant"] or args.preset
        lines.append(f"| {name} | {r['size']}x{r['size']} | {r['batch']} | {r['pa3c_s']:.3f} | {r['peer_s']:.3f} | {r['ratio']:.2f} |")
    lines += ["", "Parameters: " + ", ".join(dict.fromkeys(f"{r['params']:,} ({r['variant'] or args.preset})" for r in rows))
              + f", {rows[0]['peer_params']:,} (BasicUNet).", ""]
    if args.earlier_lite:
        lines += [f"The earlier lite network is today's preset with {EARLIER_LITE}: the loss is the same; the "
                  "network differs in its head (one body for policy and value instead of two) and its normalisation.", ""]
    (OUT / "training_speed.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
