"""Issue 3: the paper's Table 3 ablation (SAM and dilated convolutions) with the lite preset.

    python benchmarks/ablation.py --dataset lgg --minutes 60

Four PixelDRL-MG lite runs from scratch: PA3C alone (no SAM, no dilation), +SAM, +DC and
both (the lite preset itself). They train at the same time, one CPU thread each, for the
same wall-clock budget, on the split by patient (70/10/20, seed 0); each keeps its best
checkpoint by validation DICE, which is scored once on the test split with no
post-processing (so the table compares networks, not a post-processing choice).
Runs land in runs/ablation-<dataset>/; the table in benchmarks/results/ablation_<dataset>.{json,md}.
"""

from __future__ import annotations

import datetime as dt
import os
import shlex

from _runs import DATA, OUT, ROOT, benchmark_parser, best_cell, header, metric_cells, provenance, score_test, train_at_once, write_results
from napari_pixeldrl.training.bench import machine

VARIANTS = {  # name -> (pixeldrl train switches, the paper's row)
    "PA3C alone": (["--no-sam", "--no-dilation"], "PA3C"),
    "+SAM": (["--sam", "--no-dilation"], "PA3C + SAM"),
    "+DC": (["--no-sam", "--dilation"], "PA3C + DC"),
    "+SAM +DC (lite)": (["--sam", "--dilation"], "PixelDRL-MG"),
}
PAPER_DICE = {  # ../shared/METHOD.md §5, Table 3 (split by slice, likely; 200 epochs, paper preset)
    "lgg": {"PA3C": 0.7662, "PA3C + SAM": 0.7853, "PA3C + DC": 0.8080, "PixelDRL-MG": 0.8147},
    "msd": {"PA3C": 0.7806, "PA3C + SAM": 0.7979, "PA3C + DC": 0.8216, "PixelDRL-MG": 0.8346},
}


def folder(name: str) -> str:
    return name.replace(" ", "_").replace("+", "plus").replace("(", "").replace(")", "")


def main() -> None:
    parser = benchmark_parser(minutes=60)
    parser.add_argument("--train-args", default="--balance-power 0.5 --supervised-dice",
                        help="training options every variant shares (default: the shipped models' loss)")
    args = parser.parse_args()
    data = args.data or DATA[args.dataset]
    base = ROOT / "runs" / f"ablation-{args.dataset}"
    runs = {name: base / folder(name) for name in VARIANTS}
    load = None
    if not args.skip_train:
        shared = ["--dataset", args.dataset, "--data", data, "--preset", "lite", "--threads", "1", "--seed", "0",
                  "--time-budget", str(args.minutes), *shlex.split(args.train_args)]
        train_at_once({runs[n]: [*shared, *switches] for n, (switches, _) in VARIANTS.items()}, resume=False)
        load = os.getloadavg()[0]
    scores = score_test(runs, args.dataset, data, reuse=args.skip_train)
    result = {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        **provenance(OUT / f"ablation_{args.dataset}.json", "ablation.py", args.skip_train, load), "machine": machine(), "minutes_per_run": args.minutes, "runs_at_once": len(runs),
        "train_args": args.train_args,
        "split": "by patient, 70/10/20, seed 0; best checkpoint by validation DICE; test scored once, no post-processing",
        "scores": scores,
    }
    m = result["machine"]
    lines = [
        *header(f"Ablation (Table 3) on {args.dataset}, lite preset, test split by patient", result),
        f"Machine: {m['cpu']}, {m['cores']} cores, torch {m['torch']}. The {len(runs)} runs trained at the same time, "
        f"one thread each, {args.minutes:g} min of wall clock each (about {args.minutes * m['cores'] / len(runs):.0f} "
        f"min of one core); one seed. Shared training options: `{args.train_args}`.",
        "",
        "| variant | DICE | PPV | SEN | IoU | BIoU | HD95 (px) | test slices | epochs | best val DICE (epoch) | paper DICE |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, s in scores.items():
        paper = PAPER_DICE[args.dataset][VARIANTS[name][1]]
        lines.append(f"| {name} | " + " | ".join(metric_cells(s)) +
                     f" | {s['slices']} | {s['epochs']} | {best_cell(s)} | {paper:.4f} |")
    lines += [
        "",
        "Validation DICE per epoch:",
        "",
        *[f"- {n}: " + ", ".join("-" if v is None else f"{v:.3f}" for v in s["val_dice_per_epoch"]) for n, s in scores.items()],
        "",
        "Every variant, \"PA3C alone\" included, trains with the lite preset's supervised term on pi(keep) "
        "(weight 5) and the class-balanced reward, which the paper's PA3C row does not mention; the switches "
        "remove only the self-attention module and the dilation.",
        "",
        *([args.note, ""] if args.note else []),
        "Read with care: one seed and a short budget, so differences of a few points are within the run-to-run "
        "spread; the paper trained 200 epochs of its full-size network.",
        "",
    ]
    write_results(f"ablation_{args.dataset}", result, lines)


if __name__ == "__main__":
    main()
