"""How large a simulated user's box is on each dataset's validation slices that hold the object:
the longer side of the truth's bounding box grown by N pixels on each side, before a box model
resizes it to its side S (so S / side is the magnification its agents see).

    python benchmarks/box_sizes.py --grow 10

The table lands in benchmarks/results/box_sizes.md (and .json).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys

import numpy as np

from _runs import DATA, write_results
from napari_pixeldrl.model.box_zoom import grown_box
from napari_pixeldrl.training.bench import machine
from napari_pixeldrl.training.data.loading import load_dataset
from napari_pixeldrl.training.data.splits import make_split


def longer_sides(dataset: str, grow: int, split: str = "val") -> tuple[np.ndarray, tuple[int, ...]]:
    data = load_dataset(dataset, DATA[dataset])
    sides = []
    for i in make_split(data, seed=0)[split]:
        box = grown_box(data.masks[i], (grow,) * 4)
        if box is not None:
            sides.append(max(box[1] - box[0], box[3] - box[2]))
    return np.array(sides), tuple(data.images[0].shape[-2:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--grow", type=int, default=10)
    parser.add_argument("--sides", type=int, nargs="+", default=[128, 192])
    args = parser.parse_args()
    rows, result = [], {"date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                        "command": "python benchmarks/box_sizes.py " + " ".join(sys.argv[1:]), "machine": machine(),
                        "load": os.getloadavg()[0], "grow": args.grow, "datasets": {}}
    for dataset in ("lgg", "msd"):
        sides, shape = longer_sides(dataset, args.grow)
        q1, med, q3 = np.percentile(sides, [25, 50, 75])
        result["datasets"][dataset] = {"slices": int(len(sides)), "slice_shape": list(shape), "median": float(med),
                                       "quartiles": [float(q1), float(q3)],
                                       "share_at_most": {str(s): float((sides <= s).mean()) for s in args.sides}}
        mags = ", ".join(f"{s}: {s / med:.1f}x" for s in args.sides)
        rows.append(f"| {dataset} | {len(sides)} | {shape[0]} x {shape[1]} | {med:.1f} | {q1:.0f}-{q3:.0f} | "
                    + " | ".join(f"{(sides <= s).mean():.2f}" for s in args.sides) + f" | {mags} |")
    m = result["machine"]
    lines = [f"# Box sizes: the truth's box + {args.grow} px on the validation slices that hold the object", "",
             f"Command: `{result['command']}`  ",
             f"Date: {result['date']}; machine: {m['cpu']}, {m['cores']} cores; load average {result['load']:.2f} "
             "(sizes do not depend on the load).", "",
             "| dataset | slices | slice | longer side, median (px) | quartiles | "
             + " | ".join(f"share <= {s}" for s in args.sides) + " | magnification at the median |",
             "| --- " * (6 + len(args.sides)) + "|", *rows, ""]
    write_results("box_sizes", result, lines)


if __name__ == "__main__":
    main()
