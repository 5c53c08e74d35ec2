"""Issue 3/5 quality benchmark: PixelDRL-MG against the U-Net under the same CPU budget.

    python benchmarks/quality.py --dataset lgg --data ../shared/data/lgg/kaggle_3m --minutes 45
    python benchmarks/quality.py --dataset msd --data ../shared/data/heart/Task02_Heart --minutes 45

Both models train at the same time, one CPU thread each, for the same wall-clock budget,
on the same split by patient (70/10/20, seed 0), crops and augmentation; each keeps its
best checkpoint by validation DICE. Both are then scored once on the test split. Runs
land in ``runs/<name>-<preset>``; the table goes to ``benchmarks/results/quality_<name>.{json,md}``.
``--skip-train`` redraws the table from the existing runs (reusing the reports already made
from the same checkpoint files).

Runs continue where they stopped (``--resume``), so the budget can be spent in stages;
each stage's command is kept in the results file and the time reported is the total in
the runs' metrics logs. ``--train-args`` passes training options to both runs (a crop
size), ``--lite-args`` to the PixelDRL-MG run only (a loss option changed between stages
is also recorded per epoch in its metrics.jsonl).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shlex
import sys
from pathlib import Path

from _runs import METRICS, OUT, ROOT, evaluate, history, metric_cells, train_at_once
from napari_pixeldrl.model.postprocess import POSTPROCESS
from napari_pixeldrl.training.bench import machine

PAPER = {  # ../shared/METHOD.md §5 (the paper's test split, probably by slice)
    "lgg": {"U-Net (paper)": (0.7220, None, None, None, 0.1932, 13.24), "PixelDRL-MG (paper)": (0.8147, 0.8877, 0.7659, 0.7152, 0.2733, 9.09)},
    "msd": {"U-Net (paper)": (0.7586, None, None, None, 0.2428, 7.64), "PixelDRL-MG (paper)": (0.8346, 0.8678, 0.8469, 0.7510, 0.4081, 4.05)},
}


def train_both(args, runs: dict[str, Path]) -> None:
    common = ["--dataset", args.dataset, "--data", args.data, "--time-budget", str(args.minutes),
              "--threads", str(args.threads), "--seed", str(args.seed), *shlex.split(args.train_args)]
    train_at_once({run: [*common, "--preset", preset, *(shlex.split(args.lite_args) if preset == "lite" else [])]
                   for preset, run in runs.items()})


def score(args, run: Path) -> dict:
    # Post-processing is chosen per model on the validation split; the test split is scored once.
    checkpoint = run / "checkpoint_best.safetensors"
    reuse = args.skip_train  # re-drawing the table must not cost another pass over the splits
    val = {p: evaluate(checkpoint, args.dataset, args.data, "val", run / f"eval_val_{p}", p, reuse=reuse)["dice"]
           for p in POSTPROCESS}
    choice = max(POSTPROCESS, key=lambda p: (val[p], p == "none"))  # a tie keeps "none"
    result = evaluate(checkpoint, args.dataset, args.data, "test", run / f"eval_test_{choice}", choice, reuse=reuse)
    result["postprocess"] = choice
    result["val_dice_by_postprocess"] = val
    # For reference only (the choice above was made on validation): how much the choice
    # mattered on the test split, so a table decided by it says so.
    result["test_dice_by_postprocess"] = {
        p: result["dice"] if p == choice else
        evaluate(checkpoint, args.dataset, args.data, "test", run / f"eval_test_{p}", p, reuse=reuse)["dice"]
        for p in POSTPROCESS}
    result.update(history(run))
    return result


def _write_stages(path: Path, old: dict, stages: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({**old, "stages": stages}, indent=2) + "\n")


def _epoch_cell(val, raw) -> str:
    cell = "-" if val is None else f"{val:.3f}"
    return cell if raw is None else f"{cell} [{raw:.3f}]"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dataset", required=True, choices=("lgg", "msd"))
    parser.add_argument("--data", required=True)
    parser.add_argument("--minutes", type=float, default=45)
    parser.add_argument("--threads", type=int, default=1, help="threads per training process")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--name", help="run name (default: lgg or heart)")
    parser.add_argument("--skip-train", action="store_true")
    parser.add_argument("--train-args", default="", help="extra `pixeldrl train` options for both runs (e.g. --crop 256)")
    parser.add_argument("--lite-args", default="", help="extra `pixeldrl train` options for the PixelDRL-MG run")
    args = parser.parse_args()
    name = args.name or ("heart" if args.dataset == "msd" else "lgg")
    runs = {p: ROOT / "runs" / f"{name}-{p}" for p in ("lite", "unet")}
    for r in runs.values():
        r.parent.mkdir(exist_ok=True)
    command = "python benchmarks/quality.py " + shlex.join(sys.argv[1:])
    previous = OUT / f"quality_{name}.json"
    old = json.loads(previous.read_text()) if previous.exists() else {}
    stages = old.get("stages") or ([old["command"]] if "command" in old else [])
    load = old.get("load_at_end_of_training")
    if not args.skip_train:
        fresh = not any((r / "training_state.safetensors").exists() for r in runs.values())
        stages = [] if fresh else stages  # earlier stages belong to runs that are gone
        stages.append(command)
        _write_stages(previous, old, stages)  # recorded before the long part, in case scoring fails
        train_both(args, runs)
        load = os.getloadavg()[0]  # how busy the machine was: other runs share the cores
    scores = {p: score(args, r) for p, r in runs.items()}
    result = {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "command": command,
        "stages": stages,
        "load_at_end_of_training": load,
        "machine": machine(),
        "split": "by patient, 70/10/20, seed 0; test split scored once, checkpoints chosen on validation DICE",
        "threads_per_run": args.threads,
        "scores": scores,
    }
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / f"quality_{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    label = {"lite": "PixelDRL-MG lite", "unet": "U-Net (31 M)"}
    averaged = any(v is not None for s in scores.values() for v in s["val_dice_raw_per_epoch"])
    lines = [
        f"# Quality on {name} (test split by patient)",
        "",
        f"Command: `{result['command']}`  ",
        f"Date: {result['date']}  ",
        "Best epoch \"N + stop\": the weights validated at the time-budget stop, N whole epochs and part of the next.  ",
        f"Machine: {result['machine']['cpu']}, {result['machine']['cores']} cores, torch {result['machine']['torch']}; "
        f"both runs trained at once, {args.threads} thread each; training time (sum of the epochs in metrics.jsonl): "
        + ", ".join(f"{label[p]} {s['train_seconds'] / 60:.0f} min" for p, s in scores.items()) + ".",
        "",
        *([f"Load average (1 min) when this stage's training ended: {load:.1f} on {os.cpu_count()} cores "
           "(above 2: other processes, such as the other dataset's benchmark, shared the cores).", ""] if load else []),
        "Training stages (each continues the runs where the previous one stopped):",
        "",
        *[f"{i}. `{c}`" for i, c in enumerate(stages, 1)],
        "",
        "| model | DICE | PPV | SEN | IoU | BIoU | HD95 (px) | test slices | epochs | best epoch | post-processing |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for p, s in scores.items():
        lines.append(f"| {label[p]} | " + " | ".join(metric_cells(s)) + f" | {s['slices']} | {s['epochs']} | {s['best_epoch']}{' + stop' if s.get('best_validated_at_stop') else ''} | {s['postprocess']} |")
    for model, vals in PAPER[args.dataset].items():
        cells = ["-" if v is None else (f"{v:.2f}" if k == "hd95" else f"{v:.4f}") for k, v in zip(METRICS, vals)]
        lines.append(f"| {model} | " + " | ".join(cells) + " | split by slice (likely) | 200 | | |")
    lines += [
        "",
        "Post-processing of the final mask, chosen per model on the validation split (val DICE): "
        + "; ".join(f"{label[p]}: " + ", ".join(f"{k} {v:.4f}" for k, v in s["val_dice_by_postprocess"].items())
                    for p, s in scores.items()) + ".",
        "",
        "For reference, not used for any choice: test DICE under each post-processing: "
        + "; ".join(f"{label[p]}: " + ", ".join(f"{k} {v:.4f}" for k, v in s["test_dice_by_postprocess"].items())
                    for p, s in scores.items()) + ".",
        "",
        "Validation DICE per epoch" + (" (epochs trained with `--ema-decay`: the moving average's, then the raw "
                                       "weights' in brackets; the average is what is kept):" if averaged else ":"),
        "",
        *[f"- {label[p]}: " + ", ".join(_epoch_cell(v, raw) for v, raw in zip(s["val_dice_per_epoch"], s["val_dice_raw_per_epoch"]))
          for p, s in scores.items()],
        "",
        "DICE after each step t (PixelDRL-MG, test split, raw masks m(t)): " + ", ".join(f"{d:.3f}" for d in scores["lite"]["dice_per_step"]),
        "",
    ]
    (OUT / f"quality_{name}.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
