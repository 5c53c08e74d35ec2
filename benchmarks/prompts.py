"""Start the agents from a simulated user's box: DICE from the truth's bounding box grown by
N pixels against DICE from all ones, on the same slices (those that hold the object; a user
boxes an object that is there), for one checkpoint on one split.

    python benchmarks/prompts.py --name lgg-val --checkpoint runs/race-lgg-refine/lite/checkpoint_best.safetensors \\
        --dataset lgg --split val --grow 0 5 10 20

A model that segments only inside a box (``box_zoom``) cannot start from all ones: its
all-ones row is the model it was made from, ``--baseline NAME_OR_FILE`` (a bundled model),
on the same slices.

The table and JSON land in benchmarks/results/prompts_<name>.*. Validation chooses; the
test split is scored only with ``--split test --test-reason TEXT``, for a model already
chosen (a shipped one), and every start scored is appended to test_scorings.jsonl as
ship_models.py appends its scorings, so the number of times a test split was looked at
stays on record.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys

from _runs import DATA, ROOT, evaluate, file_sha256, log_test_scoring, write_results
from napari_pixeldrl.training.bench import machine


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--name", required=True)
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--dataset", required=True, choices=("lgg", "msd"))
    parser.add_argument("--data", default=None)
    parser.add_argument("--split", default="val", choices=("val", "train", "test"))
    parser.add_argument("--test-reason", default=None, help="required with --split test: why, logged with the scoring")
    parser.add_argument("--grow", type=int, nargs="+", default=[0, 5, 10, 20])
    parser.add_argument("--postprocess", default="none")
    parser.add_argument("--baseline", default=None,
                        help="a box_zoom checkpoint's all-ones row: this model from all ones (the one it was made from)")
    args = parser.parse_args()
    from napari_pixeldrl.model.checkpoint import read_header

    boxed = bool((read_header(args.checkpoint).get("model") or {}).get("box_zoom"))
    if boxed and not args.baseline:
        raise SystemExit(f"{args.checkpoint} segments only inside a box (box_zoom): give --baseline NAME_OR_FILE for the "
                         "all-ones row (the model it was made from)")
    if args.split == "test" and not args.test_reason:
        raise SystemExit("--split test needs --test-reason: the test split is scored once a model is chosen, and logged")
    data = args.data or DATA[args.dataset]
    base = ROOT / "runs" / f"prompts-{args.name}"
    starts = {"all ones": ("--object-slices",), **{f"box + {g} px": ("--start-from", f"box:{g}") for g in args.grow}}
    scores = {label: evaluate(args.baseline if boxed and label == "all ones" else args.checkpoint, args.dataset, data,
                              args.split, base / label.replace(" ", "_"), postprocess=args.postprocess, reuse=True, extra=extra)
              for label, extra in starts.items()}
    if args.split == "test":
        log_test_scorings(args if boxed else argparse.Namespace(**{**vars(args), "baseline": None}), scores)
    ones = scores["all ones"]["dice"]
    result = {"date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "command": "python benchmarks/prompts.py " + " ".join(sys.argv[1:]),
              "machine": machine(), "load": os.getloadavg()[0], "checkpoint": args.checkpoint, "split": args.split,
              "all_ones_from": args.baseline if boxed else args.checkpoint,
              "postprocess": args.postprocess,
              "starts": {k: {m: v[m] for m in ("dice", "dice_ci95", "ppv", "sen", "hd95_nonempty", "slices", "patients", "dice_per_step")}
                         for k, v in scores.items()}}
    m = result["machine"]
    lines = [f"# Start from a box: {args.name} ({args.split} split)", "",
             f"Command: `{result['command']}`  ",
             f"Date: {result['date']}; machine: {m['cpu']}, {m['cores']} cores, torch {m['torch']}; load average {result['load']:.2f} "
             "(scores do not depend on the load).  ",
             f"Checkpoint: `{args.checkpoint}`; post-processing: {args.postprocess}; scored on the "
             f"{scores['all ones']['slices']} slices of {scores['all ones']['patients']} patients that hold the object."
             + (f" It segments only inside a box (box_zoom): its all-ones row is `{args.baseline}`, the model it was made "
                "from." if boxed else ""), "",
             "| m(0) | DICE [95 % CI, by patient] | - all ones | PPV | SEN | DICE m(1) | DICE after each step |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for label, s in scores.items():
        lo, hi = s["dice_ci95"]
        steps = " ".join(f"{d:.3f}" for d in s["dice_per_step"])
        lines.append(f"| {label} | {s['dice']:.4f} [{lo:.4f}, {hi:.4f}] | {s['dice'] - ones:+.4f} | {s['ppv']:.4f} | "
                     f"{s['sen']:.4f} | {s['dice_per_step'][0]:.4f} | {steps} |")
    lines += ["", "A box is the truth's bounding box grown by N pixels on each side (clipped to the slice), as a user "
              "might drag it; the agents can only remove pixels, so every step stays inside it.", ""]
    write_results(f"prompts_{args.name}", result, lines)


def log_test_scorings(args, scores: dict) -> None:
    """One line per start in test_scorings.jsonl (the file ship_models.py keeps)."""
    from napari_pixeldrl.model.checkpoint import resolve_checkpoint

    for label, s in scores.items():
        checkpoint = args.baseline if args.baseline and label == "all ones" else args.checkpoint
        log_test_scoring(f"{checkpoint}, started from {label} ({args.test_reason})", args.dataset,
                         args.postprocess, file_sha256(resolve_checkpoint(checkpoint)), s["dice"])


if __name__ == "__main__":
    main()
