"""Whole slices against sliding windows (model/window.py), on the validation split only.

    python benchmarks/windows.py --name lgg-s17 --dataset lgg --window 128 \\
        --model "lite=model/weights/lgg.safetensors" \\
        --model "BasicUNet=runs/race-lgg-dec16-120/basicunet/checkpoint_best.safetensors"

For each model, validation DICE (patient-bootstrap 95 % interval) and the count of empty
predictions, whole slices and N-pixel windows, each without post-processing and with the
largest component; the episode length is the checkpoint's own. Nothing is trained and no
test split is scored. The table goes to benchmarks/results/windows_<name>.{json,md}.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shlex
import sys

from _runs import DATA, ROOT, evaluate, header, write_results
from napari_pixeldrl.model.postprocess import POSTPROCESS
from napari_pixeldrl.training.bench import machine


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--name", required=True)
    parser.add_argument("--dataset", required=True, choices=("lgg", "msd"))
    parser.add_argument("--data", default=None)
    parser.add_argument("--window", type=int, required=True, help="window side in pixels (the training crop)")
    parser.add_argument("--model", action="append", required=True, metavar="LABEL=CHECKPOINT")
    parser.add_argument("--note", default="")
    args = parser.parse_args()
    data = args.data or DATA[args.dataset]
    models = {}
    for text in args.model:
        label, sep, checkpoint = text.partition("=")
        if not sep or not (ROOT / checkpoint).is_file():
            raise SystemExit(f"--model takes LABEL=CHECKPOINT_FILE (relative to the repository), got {text!r}")
        models[label] = checkpoint
    out = ROOT / "runs" / f"windows-{args.name}"
    rows = {}
    for label, checkpoint in models.items():
        for window in (0, args.window):
            for post in POSTPROCESS:
                folder = out / f"{label}_w{window}_{post}".replace(" ", "_")
                r = evaluate(checkpoint, args.dataset, data, "val", folder, postprocess=post, reuse=True,
                             extra=("--window", str(window)))
                rows[f"{label}|{window}|{post}"] = {k: r[k] for k in ("dice", "dice_ci95", "empty_predictions", "slices",
                                                                    "patients", "hd95_nonempty")}
                print(label, window, post, f"{r['dice']:.4f}", file=sys.stderr, flush=True)
    result = {"date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
              "command": "python benchmarks/windows.py " + shlex.join(sys.argv[1:]),
              "machine": machine(), "load_average": os.getloadavg()[0], "models": models, "window": args.window,
              "rows": rows}
    m = result["machine"]
    any_row = next(iter(rows.values()))
    lines = [*header(f"Whole slices against {args.window}-pixel windows: {args.name} (validation split)", result),
             f"Machine: {m['cpu']}, {m['cores']} cores, torch {m['torch']}; load average {result['load_average']:.2f} "
             "(scores do not depend on the load).", "",
             f"Validation split: {any_row['slices']} slices of {any_row['patients']} patients. DICE is the mean over "
             "slices with a 95 % interval from resampling whole patients; each model at its checkpoint's episode length.",
             "", "| model | inference | post-processing | DICE [95 % CI] | empty predictions | HD95 over non-empty (px) |",
             "| --- | --- | --- | --- | --- | --- |"]
    for key, r in rows.items():
        label, window, post = key.split("|")
        how = "whole slices" if window == "0" else f"{window}-pixel windows"
        lo, hi = r["dice_ci95"]
        lines.append(f"| {label} | {how} | {post} | {r['dice']:.4f} [{lo:.4f}, {hi:.4f}] | {r['empty_predictions']} | "
                     f"{r['hd95_nonempty']:.2f} |")
    lines += ["", "Checkpoints:", ""] + [f"- {label}: `{c}`" for label, c in models.items()]
    lines += ["", *([args.note, ""] if args.note else []),
              "Validation only; no test split was scored. Each window runs its own episode; the windows overlap by "
              "half and are blended with Gaussian weights per step (MONAI's sliding_window_inference).", ""]
    write_results(f"windows_{args.name}", result, lines)


if __name__ == "__main__":
    main()
