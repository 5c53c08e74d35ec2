"""Does pure PA3C (supervised weight 0) collapse to the all-zero policy, and which loss
option stops it? Tiny network, 64x64 synthetic discs covering ~3-10 % of the pixels (the
imbalance of LGG tumours), one CPU thread, each run well under two minutes.

    python benchmarks/pa3c_collapse.py                  # all settings, writes results/pa3c_collapse.md
    python benchmarks/pa3c_collapse.py --only plain balance   # some settings, prints only

Per epoch it records the validation DICE (argmax episodes on whole slices) and the kept
fraction of the object and of the background pixels. A run "collapsed" if its final
prediction keeps under 5 % of the object pixels (all-zero) or over 50 % of the background
(all-keep).
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from napari_pixeldrl.training.bench import machine
from napari_pixeldrl.training.predict import predict_slices
from napari_pixeldrl.training.synthetic import discs
from napari_pixeldrl.training.train_config import TrainConfig
from napari_pixeldrl.training.trainer import Trainer

OUT = Path(__file__).parent / "results"
READING = "## Reading"
TINY = dict(widths=(4, 8, 8, 8), head_widths=(8, 8), head_dilations=(1, 2), context_channels=8, fine_channels=4)

# name -> TrainConfig fields on top of BASE
SETTINGS = {
    "plain (supervised 0, old defaults)": dict(reward_balance=False, live_pixels_only=False),
    "live pixels only": dict(reward_balance=False, live_pixels_only=True),
    "no baseline (value term off)": dict(value_weight=0.0, reward_balance=False, live_pixels_only=False),
    "reward balance": dict(reward_balance=True, live_pixels_only=False),
    "reward balance + live pixels only": dict(reward_balance=True, live_pixels_only=True),
    "lite supervised 5, old defaults": dict(supervised_weight=5.0, reward_balance=False, live_pixels_only=False),
    "lite supervised 5, balance + live": dict(supervised_weight=5.0, reward_balance=True, live_pixels_only=True),
}


def imbalanced_discs(n: int, seed: int, size: int = 64, radius=(6, 12)):
    """A disc covers 2.8-9.3 % of a 64x64 slice."""
    return discs(n, seed, size, radius, centre=(1 / 4, 3 / 4))


class Recorder(Trainer):
    """Also records the kept fraction of object and background pixels at each validation."""

    def validate(self) -> float:
        data = self.val_data
        preds = predict_slices(self.net, self.model_config, data.images, t_max=self.t_max, device=self.device)
        dice, obj, bg = [], [], []
        for p, m in zip(preds, data.masks):
            pm, g = p.mask != 0, m != 0
            inter = (pm & g).sum()
            dice.append((2 * inter + 1e-4) / (pm.sum() + g.sum() + 1e-4))
            obj.append(pm[g].mean())
            bg.append(pm[~g].mean())
        self.keep_log = getattr(self, "keep_log", [])
        self.keep_log.append((float(np.mean(obj)), float(np.mean(bg))))
        return float(np.mean(dice))


def run(name: str, overrides: dict, epochs: int, seed: int, t_max: int) -> dict:
    cfg = TrainConfig(
        preset="lite", model_overrides=dict(TINY), epochs=epochs, crop=None, t_max=t_max,
        supervised_weight=0.0, progress=False, threads=1, seed=seed, lr_step_epochs=1000,
    )
    for k, v in overrides.items():
        setattr(cfg, k, v)
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        tr = Recorder(cfg, imbalanced_discs(16, seed), imbalanced_discs(6, 1000 + seed), tmp)
        result = tr.fit()
    dice = [row["val_dice"] for row in result.history]
    obj, bg = tr.keep_log[-1]
    return dict(
        name=name, seed=seed, dice=dice, final=dice[-1], best=max(dice), obj=obj, bg=bg,
        keep_log=tr.keep_log, collapsed=obj < 0.05 or bg > 0.5, seconds=time.monotonic() - t0,
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--t-max", type=int, default=5)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--only", nargs="*", default=None, help="substrings of setting names")
    args = parser.parse_args()
    torch.set_num_threads(1)
    names = [n for n in SETTINGS if not args.only or any(s in n for s in args.only)]
    rows = []
    for name in names:
        for seed in args.seeds:
            row = run(name, SETTINGS[name], args.epochs, seed, args.t_max)
            rows.append(row)
            curve = " ".join(f"{d:.2f}" for d in row["dice"][:: max(1, len(row["dice"]) // 10)])
            print(f"{name:40s} seed {seed}: final DICE {row['final']:.3f} best {row['best']:.3f} "
                  f"keep obj {row['obj']:.2f} bg {row['bg']:.2f} collapsed {row['collapsed']} "
                  f"({row['seconds']:.0f} s) | {curve}", flush=True)
    if args.only:
        return
    m = machine()
    lines = [
        "# Pure PA3C collapse on imbalanced synthetic discs",
        "",
        f"Written by `python benchmarks/pa3c_collapse.py --epochs {args.epochs} --t-max {args.t_max} "
        f"--seeds {' '.join(map(str, args.seeds))}` on {dt.date.today()}; machine: {m['cpu']}, {m['cores']} cores, "
        f"torch {m['torch']}, 1 CPU thread.",
        "",
        "Tiny `lite` network (widths 4-8-8-8, heads 8-8), 16 training and 6 validation 64x64 slices,",
        "one disc of radius 6-11 each (2.8-9.3 % of the pixels), whole slices, batch 2, Adam 1e-3,",
        f"t_max {args.t_max}, gamma 0.95, keep_init 0.9, supervised weight 0 unless named.",
        "Keep obj / bg: the fraction of object / background pixels the final argmax prediction",
        "keeps. Collapsed: keep obj < 0.05 (all-zero) or keep bg > 0.5 (all-keep).",
        "",
        "| setting | seed | final val DICE | best val DICE | keep obj | keep bg | collapsed | DICE every 3 epochs | s |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        curve = " ".join(f"{d:.2f}" for d in r["dice"][2::3])
        lines.append(
            f"| {r['name']} | {r['seed']} | {r['final']:.3f} | {r['best']:.3f} | {r['obj']:.2f} | {r['bg']:.2f} | "
            f"{'yes' if r['collapsed'] else 'no'} | {curve} | {r['seconds']:.0f} |"
        )
    OUT.mkdir(exist_ok=True)
    target = OUT / "pa3c_collapse.md"
    # The reading below the table is written by hand: keep it (and check it against the new table).
    old = target.read_text() if target.exists() else ""
    reading = old[old.index(READING):] if READING in old else ""
    target.write_text("\n".join(lines) + "\n" + ("\n" + reading if reading else ""))
    if reading:
        print(f"kept the hand-written {READING!r} section: check it against the new table")
    print("wrote", OUT / "pa3c_collapse.md")


if __name__ == "__main__":
    sys.exit(main())
