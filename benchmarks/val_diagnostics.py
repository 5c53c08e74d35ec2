"""Why a run validates as it does: for each run folder, its validation curve against CPU
minutes, and its best checkpoint's validation DICE, PPV and sensitivity per patient (where
it misses, where it over-segments) and under zero-padding (the same slices with more
background round them: a network whose pixels depend on the whole image changes, a local
one does not). Validation split only; nothing is trained.

    python benchmarks/val_diagnostics.py --name heart-s13 --dataset msd \\
        --run "lite=runs/s12/heart-t1-crop256-50" --run "BasicUNet=runs/s12/heart-basicunet-crop256"

The table goes to benchmarks/results/diagnostics_<name>.{json,md}.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

from _runs import DATA, ROOT, header, recorded_commands, run_chain, validation_curve, write_results
from napari_pixeldrl.training.bench import machine

PADS = (0, 32, 96)


def diagnose(checkpoint: Path, val, pads=PADS) -> dict:
    from napari_pixeldrl.model.checkpoint import load_checkpoint
    from napari_pixeldrl.training.evaluate import evaluate

    loaded = load_checkpoint(checkpoint)
    config = loaded.config.replace(postprocess="none")
    # The episode length the run trained and validated with (a t_max-1 run's file keeps the preset's 10).
    trained_t_max = (loaded.info.get("train") or {}).get("t_max") or config.t_max
    out = {"pad_dice": {}}
    for pad in pads:
        images = [np.pad(i, ((0, 0), (pad, pad), (pad, pad))) for i in val.images]
        masks = [np.pad(m, ((pad, pad), (pad, pad))) for m in val.masks]
        r = evaluate(loaded.model, config, (images, masks), t_max=trained_t_max, fig_slices=0)
        out["pad_dice"][str(pad)] = r["dice"]
        if pad == 0:
            per = defaultdict(list)
            for row, patient in zip(r["rows"], val.patients):  # rows are in the slices' order
                per[str(patient)].append([row["dice"], row["ppv"], row["sen"]])
            out.update(t_max=trained_t_max, dice=r["dice"], ppv=r["ppv"], sen=r["sen"], dice_per_step=r["dice_per_step"],
                       patients={p: dict(zip(("dice", "ppv", "sen"), np.mean(v, axis=0).round(4).tolist()))
                                 for p, v in sorted(per.items())})
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--name", required=True)
    parser.add_argument("--dataset", required=True, choices=("lgg", "msd"))
    parser.add_argument("--data", default=None)
    parser.add_argument("--run", action="append", required=True, metavar="LABEL=RUN_FOLDER")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--note", default="")
    args = parser.parse_args()
    import torch

    from napari_pixeldrl.training.cli_train import _load, select_split

    torch.set_num_threads(args.threads)
    runs = {}
    for text in args.run:
        label, sep, folder = text.partition("=")
        if not sep or not (ROOT / folder / "checkpoint_best.safetensors").exists():
            raise SystemExit(f"--run takes LABEL=RUN_FOLDER with a checkpoint_best.safetensors, got {text!r}")
        runs[label] = ROOT / folder
    data = _load(args.dataset, args.data or DATA[args.dataset], None)
    val = select_split(data, {"split_by": "patient", "fold": None, "folds": 5, "seed": 0}, "val")
    rows = {}
    for label, run in runs.items():
        rows[label] = {"run": str(run.relative_to(ROOT)), "curve": [[round(c, 1), round(d, 4)] for c, d in validation_curve(run)],
                       "commands": [c for link in run_chain(run, uncounted_ok=True) for c in recorded_commands(link)],
                       **diagnose(run / "checkpoint_best.safetensors", val)}
        print(label, json.dumps({k: rows[label][k] for k in ("dice", "pad_dice")}), file=sys.stderr, flush=True)
    result = {"date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
              "command": "python benchmarks/val_diagnostics.py " + " ".join(f"'{a}'" if " " in a else a for a in sys.argv[1:]),
              "machine": machine(), "load_average": os.getloadavg()[0], "runs": rows}
    m = result["machine"]
    patients = sorted({p for r in rows.values() for p in r["patients"]})
    lines = [*header(f"Validation diagnostics: {args.name}", result),
             f"Machine: {m['cpu']}, {m['cores']} cores, torch {m['torch']}; load average {result['load_average']:.2f} "
             "(scores do not depend on the load).", "",
             f"Validation split: {len(val)} slices of {len(patients)} patients; best checkpoint of each run, no "
             "post-processing, the t_max each run trained with.", "",
             "| run | validations (CPU min: DICE) | DICE | PPV | SEN | "
             + " | ".join(f"{p} DICE / PPV / SEN" for p in patients) + " | "
             + " | ".join(f"padded {p} px" for p in PADS[1:]) + " |",
             "| --- " * (5 + len(patients) + len(PADS) - 1) + "|"]
    for label, r in rows.items():
        cells = [", ".join(f"{c:.0f}: {d:.3f}" for c, d in r["curve"]), f"{r['dice']:.3f}", f"{r['ppv']:.3f}",
                 f"{r['sen']:.3f}"]
        cells += [" / ".join(f"{r['patients'][p][k]:.3f}" for k in ("dice", "ppv", "sen")) if p in r["patients"] else "-"
                  for p in patients]
        cells += [f"{r['pad_dice'][str(p)]:.3f}" for p in PADS[1:]]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines += ["", "Runs and their commands:", ""]
    lines += [f"- {label} (`{r['run']}`): " + "; ".join(f"`{c}`" for c in r["commands"]) for label, r in rows.items()]
    lines += ["", "Padded: every validation slice zero-padded by that many pixels on each side (the truth too), so the "
              "object and its surroundings are the same and only the image's extent changes.", "",
              *([args.note, ""] if args.note else []),
              f"Validation only: no test split was scored. One seed each; with {len(patients)} validation patients, "
              "differences of a few points are inside the noise.", ""]
    write_results(f"diagnostics_{args.name}", result, lines)


if __name__ == "__main__":
    main()
