"""Which PA3C loss options learn the heart's left atrium fastest? A short screen on the
validation split, two runs at a time (1 CPU thread each), 120 training slices.

    python benchmarks/loss_variants.py --data ../shared/data/heart/Task02_Heart --minutes 12
    python benchmarks/loss_variants.py --data ... --skip-train --runs /work/exp   # tabulate

Each variant is one `pixeldrl train` run on the same 120 training slices (``--n-shot``),
validated every epoch on the first 60 slices of the validation split (patients apart
from training and test). The test split is not touched: this screen chooses the loss
options the long runs use. Variants:

* ``balanced``: the defaults before this screen: class-balanced reward and supervised
  BCE (power 1).
* ``soft+dice``: balance power 0.5 and a soft Dice term on pi(keep).

Why these two: the long runs with ``balanced`` over-segmented (heart PPV 0.15 against
SEN 0.93, LGG PPV 0.50 against SEN 0.82; benchmarks/results/quality_*.md before this
change), which is what fully balanced weights ask for on small objects (pa3c.py,
:func:`balance_weights`).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import subprocess
import sys
from pathlib import Path

from napari_pixeldrl.training.bench import machine

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results"
VARIANTS = {
    "balanced": [],
    "soft+dice": ["--balance-power", "0.5", "--supervised-dice"],
}
RUN_NAME = {"balanced": "hA", "soft+dice": "hC"}


def common(args) -> list[str]:
    return ["--dataset", "msd", "--data", args.data, "--n-shot", "120", "--val-max-slices", "60",
            "--time-budget", str(args.minutes), "--threads", "1", "--no-progress", "--seed", "0", "--preset", "lite"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", required=True)
    parser.add_argument("--minutes", type=float, default=12)
    parser.add_argument("--runs", type=Path, default=ROOT / "runs" / "loss_variants")
    parser.add_argument("--skip-train", action="store_true")
    parser.add_argument("--note", default="", help="a line for the results file (e.g. how the runs ended)")
    args = parser.parse_args()
    commands = {v: ["pixeldrl", "train", *common(args), *extra, "--out", str(args.runs / RUN_NAME[v])] for v, extra in VARIANTS.items()}
    if not args.skip_train:
        args.runs.mkdir(parents=True, exist_ok=True)
        procs = [subprocess.Popen([sys.executable, "-m", "napari_pixeldrl.training.cli", *cmd[1:]], cwd=ROOT,
                                  stdout=open(args.runs / f"{RUN_NAME[v]}.log", "w"), stderr=subprocess.STDOUT)
                 for v, cmd in commands.items()]
        for v, p in zip(commands, procs):
            if p.wait() != 0:
                print(f"variant {v} failed, see {args.runs / (RUN_NAME[v] + '.log')}", file=sys.stderr)
    lines = [
        "# PA3C loss options on the heart: a short screen on the validation split",
        "",
        f"Command: `python benchmarks/loss_variants.py --data {args.data} --minutes {args.minutes:g}`  ",
        f"Date: {dt.datetime.now(dt.timezone.utc).isoformat(timespec='seconds')}  ",
        f"Machine: {machine()['cpu']}, {machine()['cores']} cores, torch {machine()['torch']}; two runs at once, 1 thread each.",
        "",
        "| variant | run | val DICE per epoch | best | training keep fraction, last epoch |",
        "| --- | --- | --- | --- | --- |",
    ]
    for v, cmd in commands.items():
        log = args.runs / RUN_NAME[v] / "metrics.jsonl"
        rows = [json.loads(x) for x in log.read_text().splitlines() if x.strip()] if log.exists() else []
        dice = [r["val_dice"] for r in rows if r.get("val_dice") is not None]
        if not dice:
            lines.append(f"| {v} | `{' '.join(cmd)}` | no epoch finished | - | - |")
            continue
        lines.append(f"| {v} | `{' '.join(cmd)}` | {', '.join(f'{d:.3f}' for d in dice)} | {max(dice):.3f} | "
                     f"{rows[-1]['train_keep_fraction']:.3f} |")
    lines += ["", *([args.note, ""] if args.note else []), "One seed, 120 slices, a few minutes: weak evidence, used only to pick the options of the long runs.", ""]
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "loss_variants_heart.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
