"""Issue 3: the paper's Table 4 few-shot runs: PixelDRL-MG lite and the U-Net trained on
N slices of the training split (N = 50 and 100 by default).

    python benchmarks/shots.py --dataset lgg --minutes 30

Every run starts from scratch (`pixeldrl train --n-shot N`; the N slices are drawn from
the training split with the split's seed, so both models see the same N) and all of them
train at the same time, one CPU thread each, for the same wall-clock budget. Validation
uses the whole validation split, every ~200 training slices (a 50-slice epoch is short, a
validation pass is not), and picks each run's best checkpoint; the test split is scored
once, with no post-processing. Runs land in runs/shots-<dataset>/; the table in
benchmarks/results/shots_<dataset>.{json,md}.
"""

from __future__ import annotations

import datetime as dt
import os
import shlex

from _runs import DATA, OUT, ROOT, benchmark_parser, best_cell, header, metric_cells, provenance, score_test, train_at_once, write_results
from napari_pixeldrl.training.bench import machine

LABEL = {"lite": "PixelDRL-MG lite", "unet": "U-Net (31 M)"}
PAPER_DICE = {  # ../shared/METHOD.md §5, Table 4 (split by slice, likely; paper preset)
    "lgg": {("lite", 50): 0.7730, ("lite", 100): 0.7871, ("unet", 50): 0.6807},
    "msd": {("lite", 50): 0.8074, ("lite", 100): 0.8161, ("unet", 50): 0.6843},
}


def main() -> None:
    parser = benchmark_parser(minutes=30)
    parser.add_argument("--shots", type=int, nargs="+", default=[50, 100])
    parser.add_argument("--lite-args", default="--balance-power 0.5 --supervised-dice",
                        help="training options of the PixelDRL-MG runs (default: the shipped models' loss)")
    args = parser.parse_args()
    data = args.data or DATA[args.dataset]
    base = ROOT / "runs" / f"shots-{args.dataset}"
    runs = {(p, n): base / f"{p}-{n}" for n in args.shots for p in ("lite", "unet")}
    load = None
    if not args.skip_train:
        jobs = {}
        for (preset, n), run in runs.items():
            jobs[run] = ["--dataset", args.dataset, "--data", data, "--preset", preset, "--n-shot", n,
                         "--val-every", max(1, round(200 / n)), "--threads", "1", "--seed", "0",
                         "--time-budget", args.minutes, *(shlex.split(args.lite_args) if preset == "lite" else [])]
        train_at_once({run: list(map(str, a)) for run, a in jobs.items()}, resume=False)
        load = os.getloadavg()[0]
    scores = score_test(runs, args.dataset, data, reuse=args.skip_train)
    result = {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        **provenance(OUT / f"shots_{args.dataset}.json", "shots.py", args.skip_train, load), "machine": machine(), "minutes_per_run": args.minutes, "runs_at_once": len(runs),
        "lite_args": args.lite_args,
        "split": "by patient, 70/10/20, seed 0; N training slices drawn from the training split (seed 0); "
                 "best checkpoint by validation DICE; test scored once, no post-processing",
        "scores": {f"{p}-{n}": s for (p, n), s in scores.items()},
    }
    m = result["machine"]
    lines = [
        *header(f"Few-shot training (Table 4) on {args.dataset}, test split by patient", result),
        f"Machine: {m['cpu']}, {m['cores']} cores, torch {m['torch']}. The {len(runs)} runs trained from scratch at the "
        f"same time, one thread each, {args.minutes:g} min of wall clock each; one seed. "
        f"PixelDRL-MG options: `{args.lite_args}`.",
        "",
        "| model | training slices | DICE | PPV | SEN | IoU | BIoU | HD95 (px) | test slices | epochs | best val DICE (epoch) | paper DICE |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for (preset, n), s in scores.items():
        paper = PAPER_DICE[args.dataset].get((preset, n))
        lines.append(f"| {LABEL[preset]} | {n} | " + " | ".join(metric_cells(s)) +
                     f" | {s['slices']} | {s['epochs']} | {best_cell(s)} | "
                     + ("-" if paper is None else f"{paper:.4f}") + " |")
    lines += [
        "",
        "Validation passes (the whole validation split) count against each run's budget; a U-Net pass costs "
        "more than a lite one, so on a short few-shot budget the U-Net spends a larger share of it validating.",
        "",
        *([args.note, ""] if args.note else []),
        "Read with care: one seed and a short budget on 2 CPU cores; the paper trained 200 epochs of its "
        "full-size network on a GPU.",
        "",
    ]
    write_results(f"shots_{args.dataset}", result, lines)


if __name__ == "__main__":
    main()
