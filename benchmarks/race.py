"""PixelDRL-MG against MONAI's BasicUNet from scratch, under the same CPU-time budget, on
the validation split only: validation DICE against the CPU minutes each run has spent.
This is how a recipe and a budget are chosen before a model is trained to be shipped; the
test split is not touched.

    python benchmarks/race.py --dataset lgg --cpu-minutes 40 [--lite-args "--coarse-to-fine 6"]

Both runs train at once, 1 thread each, each stopped after the same process CPU time
(``pixeldrl train --cpu-budget``), so sharing the cores, or other work on the machine,
does not change what either gets. Same split by patient (70/10/20, seed 0), crops and
augmentation. Runs resume where they stopped, so the budget can be spent in stages. Runs
land in runs/race-<name>/{lite,basicunet}; the table and figure in
benchmarks/results/race_<name>.{json,md,png}.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shlex
import sys

from _runs import (DATA, OUT, ROOT, load_text, recorded_commands, run_chain, train_at_once, uncounted_training,
                   validation_curve)
from napari_pixeldrl.training.bench import machine

TARGET = {"lgg": 0.80, "msd": 0.83}  # the paper's level, on its own (likely by-slice) split
LABEL = {"lite": "PixelDRL-MG lite", "basicunet": "MONAI BasicUNet"}


def projected_minutes(points: list[tuple[float, float]], target: float) -> float | None:
    """CPU minutes at which a least-squares line of validation DICE against log(CPU minutes)
    reaches ``target``: a rough reading of where a curve points, not a prediction. None when
    the curve has fewer than three points or does not rise."""
    import math

    if len(points) < 3:
        return None
    xs, ys = [math.log(c) for c, _ in points], [d for _, d in points]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx if sxx else 0.0
    if slope <= 0:
        return None
    return math.exp(mx + (target - my) / slope)


def plot(curves: dict, target: float, path) -> None:
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 3.8))
    ax = fig.subplots()
    for name, pts in curves.items():
        if pts:
            ax.plot(*zip(*pts), marker="o", label=LABEL[name])
    ax.axhline(target, color="gray", ls="--", lw=0.8, label=f"paper's level ({target:.2f})")
    ax.set(xlabel="CPU minutes of the run (process time, all threads)", ylabel="validation DICE", ylim=(0, 1),
           title="Validation DICE against CPU time")
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=90)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dataset", required=True, choices=("lgg", "msd"))
    parser.add_argument("--data", default=None)
    parser.add_argument("--name", default=None, help="default: lgg or heart")
    parser.add_argument("--cpu-minutes", type=float, required=True, help="CPU minutes of each run in this stage")
    parser.add_argument("--train-args", default="", help="options both runs get (e.g. --crop 256)")
    parser.add_argument("--lite-args", default="", help="options of the PixelDRL-MG run only")
    parser.add_argument("--skip-train", action="store_true")
    parser.add_argument("--note", default="", help="a paragraph for the results file")
    args = parser.parse_args()
    name = args.name or ("heart" if args.dataset == "msd" else "lgg")
    data = args.data or DATA[args.dataset]
    base = ROOT / "runs" / f"race-{name}"
    runs = {p: base / p for p in LABEL}
    common = ["--dataset", args.dataset, "--data", data, "--threads", "1", "--seed", "0",
              "--cpu-budget", str(args.cpu_minutes), *shlex.split(args.train_args)]
    results = OUT / f"race_{name}.json"
    old = json.loads(results.read_text()) if results.exists() else {}
    stages, load = old.get("stages", []), old.get("load_at_end_of_training")
    if args.skip_train and not stages:  # runs trained without a results file: their own commands
        for p, r in runs.items():
            stages += [f"{LABEL[p]}: `{c}`" for link in run_chain(r, uncounted_ok=True) for c in recorded_commands(link)]
    if not args.skip_train:
        if not any((r / "training_state.safetensors").exists() for r in runs.values()):
            stages = []
        stages.append("python benchmarks/race.py " + shlex.join(sys.argv[1:]))
        train_at_once({runs[p]: [*common, "--preset", p, *(shlex.split(args.lite_args) if p == "lite" else [])]
                       for p in runs})
        load = os.getloadavg()[0]
    curves = {p: validation_curve(r) for p, r in runs.items()}
    note = args.note or old.get("note", "")  # a rescoring keeps the results file's note
    target = TARGET[args.dataset]
    result = {"date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "stages": stages,
              "load_at_end_of_training": load, "machine": machine(),
              "budget": "process CPU time per run, 1 thread each", "target": target,
              "note": note, "curves": {p: [[round(c, 2), round(d, 4)] for c, d in pts] for p, pts in curves.items()}}
    OUT.mkdir(parents=True, exist_ok=True)
    results.write_text(json.dumps(result, indent=2) + "\n")
    plot(curves, target, OUT / f"race_{name}.png")
    m = result["machine"]
    lines = [f"# PixelDRL-MG lite against MONAI's BasicUNet from scratch: {name} (validation split)", "",
             f"Date: {result['date']}  ",
             f"Machine: {m['cpu']}, {m['cores']} cores, torch {m['torch']}; 1 thread per run, each "
             "stopped on its own process CPU time, which other runs on the machine do not change. Load average when "
             f"training ended: {load_text(load)}.", "",
             "Stages (each continues both runs where they stopped):", "",
             *[f"{i}. {c if c.startswith(tuple(LABEL.values())) else f'`{c}`'}" for i, c in enumerate(stages, 1)], "",
             "| model | validations (CPU min: val DICE) | best | distance to the paper's level | "
             "CPU minutes the curve points to for it |",
             "| --- | --- | --- | --- | --- |"]
    for p, pts in curves.items():
        best = max((d for _, d in pts), default=float("nan"))
        cells = ", ".join(f"{c:.0f}: {d:.3f}" for c, d in pts) or "none yet"
        proj = projected_minutes(pts, target)
        proj_txt = "-" if proj is None else (f"~{proj:,.0f}" if proj < 1e5 else "beyond 100,000")
        gap = f"reached, {best - target:.3f} above" if best >= target else f"{target - best:+.3f}"
        lines.append(f"| {LABEL[p]} | {cells} | {best:.3f} | {gap} | {proj_txt} |")
    for p, r in runs.items():
        missing = uncounted_training(r)
        if missing:
            lines += ["", f"**{LABEL[p]}'s curve does not count all its training**: {missing}; its CPU minutes "
                      "start at the fine-tune."]
    lines += ["", "The last column fits validation DICE as a straight line in log(CPU minutes) and reads where it "
              "crosses the paper's level: a rough guide to the budget the curve points to, from a few noisy points, "
              "not a prediction."]
    lines += ["", f"![validation DICE against CPU time](race_{name}.png)", "", *([note, ""] if note else []),
              "Validation only: no test split was scored for this table. One seed; the validation split is a few "
              "patients, so differences of a few points are inside its noise.", ""]
    (OUT / f"race_{name}.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
