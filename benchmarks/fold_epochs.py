"""Epochs against CPU time on the heart's folds: does a refining stage lose to its control by
epochs or per epoch?

    python benchmarks/fold_epochs.py                  # the runs' own logs only
    python benchmarks/fold_epochs.py --batch-cost     # and one training batch of each arm, timed

For each fold chain (`benchmarks/chain.py --chain heart-valfoldK`) and each stage that trained
there (the one-step control and the refining variants), the validation DICE the run logged after
each epoch (EMA weights, its own fold's validation patients, its own t_max) and the process CPU
seconds each epoch took, validation included (metrics.jsonl). Then each refining stage against
the control at equal epochs: after epoch e, for every e both reached on a fold. The folds'
pooled verdicts are `val_folds.py`'s; this reads no checkpoint and scores nothing.

``--batch-cost`` times one training batch (2 crops of the fold's training slices, loss and
backward, 1 thread, process CPU time) of each arm from the file its stage started from, with
the arm's own loss options; the arms take turns, and the median of ``--repeats`` is reported.
Run it on an otherwise idle machine: CPU time rises a little when both cores are busy.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import sys
import time

import torch

from _runs import ROOT, metric_rows, run_train_config, training_batches, write_results
from chain import CHAINS, start_file
from napari_pixeldrl.training.bench import machine

CHAINS_USED = [f"heart-valfold{k}" for k in range(4)]
CONTROL = "control"
REFINING = ("refine", "refine-sw50", "refine-allmean", "refine-t2")


def batch_cost(chain: str, stages: list[str], repeats: int) -> dict[str, float]:
    """Median process CPU seconds of one training batch of each stage's loss, from its start."""
    from napari_pixeldrl.model.checkpoint import load_checkpoint
    from napari_pixeldrl.training.pa3c import pa3c_loss

    torch.set_num_threads(1)
    base = ROOT / "runs" / f"chain-{chain}"
    configs = {name: run_train_config(base / name) for name in stages}
    arms = {}
    for name, train in configs.items():
        stage = next(s for s in CHAINS[chain].stages if s.name == name)
        loaded = load_checkpoint(start_file(base, CHAINS[chain], stage))
        arms[name] = (loaded.model.train(), dict(train.pa3c_options(), t_max=train.t_max, gamma=loaded.config.gamma))
    (batch,) = training_batches(CHAINS[chain].dataset, configs[stages[0]], 1)
    x, y = map(torch.from_numpy, batch)
    times: dict[str, list[float]] = {name: [] for name in stages}
    for i in range(repeats + 1):  # the first round warms up and is not counted
        for name, (net, options) in arms.items():
            net.zero_grad(set_to_none=True)
            t0 = time.process_time()
            loss, _ = pa3c_loss(net, x, y, generator=torch.Generator().manual_seed(i), **options)
            loss.backward()
            if i:
                times[name].append(time.process_time() - t0)
    return {name: statistics.median(t) for name, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch-cost", action="store_true", help="also time one training batch of each arm (fold 0)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--name", default="heart", help="benchmarks/results/fold_epochs_NAME.md")
    args = parser.parse_args()
    logs = {chain: {stage: metric_rows(ROOT / "runs" / f"chain-{chain}" / stage) for stage in (CONTROL, *REFINING)}
            for chain in CHAINS_USED}
    missing = [f"{c}/{CONTROL}" for c in CHAINS_USED if not logs[c][CONTROL]]
    if missing:
        raise SystemExit(f"fold_epochs.py: no metrics.jsonl for {missing}: run `python benchmarks/chain.py --chain "
                         "heart-valfoldK` first (a carried stage keeps no epoch log)")
    stages = [s for s in (CONTROL, *REFINING) if all(logs[c][s] for c in CHAINS_USED)]
    m = machine()
    result = {"date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
              "command": "python benchmarks/fold_epochs.py " + " ".join(sys.argv[1:]), "machine": m, "folds": {}}
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    result["load_at_start"] = load
    lines = ["# The heart's folds: validation DICE by epoch, CPU seconds per epoch", "",
             f"Command: `{result['command']}`  ",
             f"Date: {result['date']}; machine: {m['cpu']}, {m['cores']} cores, torch {m['torch']}. Read from each "
             "run's metrics.jsonl (`python benchmarks/chain.py --chain heart-valfoldK`, 1 thread per stage, 20 "
             "CPU-min each, process CPU time, validation included); validation DICE of the EMA weights on the fold's "
             "own validation patients at the stage's own t_max. Load average when this ran: " + load + ".", "",
             "| fold | stage | epochs | validation DICE after each epoch | CPU s per epoch (median) |",
             "| --- | --- | --- | --- | --- |"]
    for chain in CHAINS_USED:
        result["folds"][chain] = {}
        for stage in stages:
            rows = logs[chain][stage]
            dice = [r["val_dice"] for r in rows]
            cpu = statistics.median(r["cpu_seconds"] for r in rows)
            result["folds"][chain][stage] = {"val_dice": dice, "cpu_seconds": [r["cpu_seconds"] for r in rows]}
            lines.append(f"| {chain} | {stage} | {len(rows)} | {', '.join(f'{d:.3f}' for d in dice)} | {cpu:.0f} |")
    lines += ["", "Each refining stage minus the control after the same epoch (folds where both reached it), and the "
              "ratio of their median CPU seconds per epoch:", "",
              "| stage | after epoch 1 | after epoch 2 | after epoch 3 | CPU per epoch / control's |",
              "| --- | --- | --- | --- | --- |"]
    result["equal_epochs"] = {}
    for stage in stages[1:]:
        cells, record = [], {}
        for e in (1, 2, 3):
            diffs = [logs[c][stage][e - 1]["val_dice"] - logs[c][CONTROL][e - 1]["val_dice"] for c in CHAINS_USED
                     if len(logs[c][stage]) >= e and len(logs[c][CONTROL]) >= e]
            record[f"epoch {e}"] = diffs
            cells.append(f"{statistics.mean(diffs):+.4f} ({len(diffs)} folds: {', '.join(f'{d:+.3f}' for d in diffs)})"
                         if diffs else "-")
        ratio = statistics.median(
            statistics.median(r["cpu_seconds"] for r in logs[c][stage]) / statistics.median(r["cpu_seconds"] for r in logs[c][CONTROL])
            for c in CHAINS_USED)
        record["cpu_ratio"] = ratio
        result["equal_epochs"][stage] = record
        lines.append(f"| {stage} | {' | '.join(cells)} | {ratio:.2f} (median over folds) |")
    if args.batch_cost:
        cost = batch_cost(CHAINS_USED[0], stages, args.repeats)
        result["batch_cost_s"] = cost
        lines += ["", f"One training batch (2 crops of fold 0's training slices, loss and backward, 1 thread, process "
                  f"CPU time, median of {args.repeats}, the arms in turn, from each stage's start):", "",
                  "| stage | CPU s per batch | / control's |", "| --- | --- | --- |",
                  *(f"| {s} | {c:.3f} | {c / cost[CONTROL]:.2f} |" for s, c in cost.items())]
    lines += ["", "Validation only; the test split is not touched.", ""]
    write_results(f"fold_epochs_{args.name}", result, lines)


if __name__ == "__main__":
    main()
