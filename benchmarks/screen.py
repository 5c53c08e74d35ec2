"""A validation screen: fine-tune one checkpoint with a few variants of the training
options, for the same wall-clock budget each, all at once (one CPU thread each), and
compare their validation DICE. The test split is not touched: a screen chooses what the
long runs do next.

    python benchmarks/screen.py --name heart_context --dataset msd \\
        --checkpoint runs/heart-lite/checkpoint_best.safetensors --minutes 30 \\
        --variant "crop 128=--crop 128" --variant "crop 256=--crop 256"

Runs land in runs/screen-<name>/<variant>; the table in benchmarks/results/screen_<name>.{json,md}.
"""

from __future__ import annotations

import datetime as dt
import json
import shlex

from _runs import DATA, OUT, ROOT, benchmark_parser, best_cell, evaluate, header, history, provenance, train_at_once, write_results
from napari_pixeldrl.training.bench import machine


def parse_variant(text: str) -> tuple[str, list[str]]:
    name, sep, options = text.partition("=")
    if not sep or not name.strip():
        raise SystemExit(f"--variant takes NAME=OPTIONS, got {text!r}")
    return name.strip(), shlex.split(options)


def at_stop(run) -> float | None:
    """Validation DICE of the weights when the budget ran out (the last command's record;
    the last epoch's when the stop fell just after a validation)."""
    record = json.loads((run / "commands.jsonl").read_text().splitlines()[-1])
    if record.get("stop_val_dice") is not None:
        return record["stop_val_dice"]
    vals = [json.loads(line).get("val_dice") for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return vals[-1] if vals else None


def main() -> None:
    parser = benchmark_parser(minutes=30)
    parser.add_argument("--name", required=True)
    parser.add_argument("--checkpoint", required=True, help="every variant fine-tunes this checkpoint")
    parser.add_argument("--shared", default="", help="options every variant gets")
    parser.add_argument("--variant", action="append", required=True, metavar="NAME=OPTIONS")
    args = parser.parse_args()
    data = args.data or DATA[args.dataset]
    variants = dict(parse_variant(v) for v in args.variant)
    base = ROOT / "runs" / f"screen-{args.name}"
    runs = {n: base / n.replace(" ", "_") for n in variants}
    if len(set(runs.values())) < len(args.variant):
        raise SystemExit("two variants share a name (spaces count as underscores)")
    shared = ["--dataset", args.dataset, "--data", data, "--checkpoint", args.checkpoint, "--threads", "1",
              "--seed", "0", "--time-budget", str(args.minutes), *shlex.split(args.shared)]
    if not args.skip_train:
        train_at_once({runs[n]: [*shared, *extra] for n, extra in variants.items()}, command="finetune", resume=False)
    rows = {n: {**history(runs[n]), "at_stop": at_stop(runs[n])} for n in variants}
    start = evaluate(args.checkpoint, args.dataset, data, "val", base / "eval_val_start", reuse=args.skip_train)["dice"]
    result = {"date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
              **provenance(OUT / f"screen_{args.name}.json", "screen.py", args.skip_train, None),
              "machine": machine(), "start_val_dice": start, "variants": {n: {"options": variants[n], **rows[n]} for n in variants}}
    m = result["machine"]
    lines = [
        *header(f"Validation screen: {args.name}", result),
        f"Machine: {m['cpu']}, {m['cores']} cores, torch {m['torch']}; {len(variants)} runs at once, 1 thread each, "
        f"{args.minutes:g} min each, fine-tuning `{args.checkpoint}`.",
        "",
        "| variant | options | whole epochs | val DICE per epoch | at the stop | best (epoch; + at the stop) |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for n, r in rows.items():
        per_epoch = ", ".join("-" if v is None else f"{v:.3f}" for v in r["val_dice_per_epoch"]) or "none finished"
        stop = "-" if r["at_stop"] is None else f"{r['at_stop']:.4f}"
        lines.append(f"| {n} | `{shlex.join(variants[n])}` | {r['epochs']} | {per_epoch} | {stop} | {best_cell(r)} |")
    lines += ["", f"The starting checkpoint scores validation DICE {start:.4f} (no post-processing), measured here.", "",
              *([args.note, ""] if args.note else []),
              "\"At the stop\" compares the variants at the same wall clock; \"best\" is the maximum over "
              "every validation, which favours a variant that validated more often. One seed and a short "
              "budget: weak evidence, used only to choose what the long runs do next.", ""]
    write_results(f"screen_{args.name}", result, lines)


if __name__ == "__main__":
    main()
