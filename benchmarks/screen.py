"""A validation screen: fine-tune one checkpoint with a few variants of the training
options, for the same wall-clock budget each, all at once (one CPU thread each), and
compare their validation DICE. The test split is not touched: a screen chooses what the
long runs do next.

    python benchmarks/screen.py --name heart_context --dataset msd \\
        --checkpoint runs/heart-lite/checkpoint_best.safetensors --minutes 30 \\
        --shared "--balance-power 0.5 --supervised-dice" \\
        --variant "crop 128=--crop 128" --variant "crop 256=--crop 256"

Runs land in runs/screen-<name>/<variant>; the table in benchmarks/results/screen_<name>.{json,md}.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shlex
import sys

from _runs import DATA, OUT, ROOT, history, train_at_once
from napari_pixeldrl.training.bench import machine


def parse_variant(text: str) -> tuple[str, list[str]]:
    name, sep, options = text.partition("=")
    if not sep or not name.strip():
        raise SystemExit(f"--variant takes NAME=OPTIONS, got {text!r}")
    return name.strip(), shlex.split(options)


def screened(run) -> dict:
    """The run's epochs and the best checkpoint's validation DICE. A run stopped inside its
    first epoch has no metrics row, but its best checkpoint holds the weights at the stop,
    validated then."""
    from napari_pixeldrl.model.checkpoint import read_header

    rows = history(run) if (run / "metrics.jsonl").exists() else {"epochs": 0, "val_dice_per_epoch": []}
    info = read_header(run / "checkpoint_best.safetensors")["info"]
    return {**rows, "best_val_dice": info["val_dice"], "best_after_epochs": info["epoch"]}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--name", required=True)
    parser.add_argument("--dataset", required=True, choices=("lgg", "msd"))
    parser.add_argument("--data", default=None, help="default: the release under ../shared/data")
    parser.add_argument("--checkpoint", required=True, help="every variant fine-tunes this checkpoint")
    parser.add_argument("--minutes", type=float, default=30)
    parser.add_argument("--shared", default="", help="options every variant gets")
    parser.add_argument("--variant", action="append", required=True, metavar="NAME=OPTIONS")
    parser.add_argument("--note", default="", help="a line for the results file")
    parser.add_argument("--skip-train", action="store_true", help="tabulate the runs that are there")
    args = parser.parse_args()
    data = args.data or DATA[args.dataset]
    variants = dict(parse_variant(v) for v in args.variant)
    base = ROOT / "runs" / f"screen-{args.name}"
    runs = {n: base / n.replace(" ", "_") for n in variants}
    shared = ["--dataset", args.dataset, "--data", data, "--checkpoint", args.checkpoint, "--threads", "1",
              "--seed", "0", "--time-budget", str(args.minutes), *shlex.split(args.shared)]
    if not args.skip_train:
        train_at_once({runs[n]: [*shared, *extra] for n, extra in variants.items()}, command="finetune")
    command = "python benchmarks/screen.py " + shlex.join(sys.argv[1:])
    rows = {n: screened(runs[n]) for n in variants}
    result = {"date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "command": command,
              "machine": machine(), "variants": {n: {"options": variants[n], **rows[n]} for n in variants}}
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / f"screen_{args.name}.json").write_text(json.dumps(result, indent=2) + "\n")
    m = result["machine"]
    lines = [
        f"# Validation screen: {args.name}",
        "",
        f"Command: `{command}`  ",
        f"Date: {result['date']}  ",
        f"Machine: {m['cpu']}, {m['cores']} cores, torch {m['torch']}; {len(variants)} runs at once, 1 thread each, "
        f"{args.minutes:g} min each, fine-tuning `{args.checkpoint}`.",
        "",
        "| variant | options | whole epochs | val DICE per epoch | best val DICE (after epochs) |",
        "| --- | --- | --- | --- | --- |",
    ]
    for n, r in rows.items():
        per_epoch = ", ".join("-" if v is None else f"{v:.3f}" for v in r["val_dice_per_epoch"]) or "none finished"
        lines.append(f"| {n} | `{shlex.join(variants[n])}` | {r['epochs']} | {per_epoch} | "
                     f"{r['best_val_dice']:.3f} ({r['best_after_epochs']}) |")
    from napari_pixeldrl.model.checkpoint import read_header

    start = read_header(args.checkpoint)["info"].get("val_dice")
    lines += ["", *([f"The starting checkpoint's own validation DICE: {start:.3f}.", ""] if start is not None else []),
              *([args.note, ""] if args.note else []),
              "One seed and a short budget: weak evidence, used only to choose what the long runs do next.", ""]
    (OUT / f"screen_{args.name}.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
