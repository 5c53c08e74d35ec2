"""The keep threshold chosen on the heart's validation folds: does a threshold other than
0.5 (the argmax) close the one-step recipe's gap to its BasicUNet peer?

    python benchmarks/keep_thresholds.py --chains heart-valfold0 heart-valfold1 heart-valfold2 heart-valfold3

Each arm (a one-step stage of the fold chains, and the fold's BasicUNet peer) is scored on its
own fold's validation patients at every threshold of ``--thresholds`` (`pixeldrl evaluate
--keep-threshold P`: a pixel is kept where pi(keep), a U-Net's sigmoid, exceeds P). The lite
arms over-segment (a lower PPV than the peer on 10 of 13 patients, `valfolds_heart-peer.md`),
so a higher threshold might help them; the peer gets the same choice, so that the comparison
stays one of recipes and not of who was tuned.

The choice is cross-validated: each fold's threshold is the one with the best mean DICE on
the other folds' validation slices (scored by their own models), and that fold's slices are
scored at it. So no slice is scored at a threshold chosen on it. Each arm's pooled DICE at
0.5 and at its cross-validated thresholds, with patient-level bootstrap intervals, and the
paired differences slice by slice. The best threshold on all folds at once is given too,
marked as chosen on the slices it is scored on. The test split is not touched.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys

from _runs import write_results
from chain import CHAINS
from val_folds import ALSO, PEER, pooled, paired, fold_rows, mean
from napari_pixeldrl.training.bench import machine

ARMS = {"onestep": "one step", "peer": PEER, **{stage: also.arm for stage, also in ALSO.items()}}


def cross_validated(rows_by_threshold: dict[float, list[dict]], chains: list[str]) -> tuple[list[dict], dict]:
    """Each fold's rows at the threshold with the best mean DICE on the other folds' rows,
    and the threshold each fold chose."""
    chosen, rows = {}, []
    for chain in chains:
        def others(threshold):
            return mean([r for r in rows_by_threshold[threshold] if r["fold"] != chain], "dice")
        best = max(sorted(rows_by_threshold), key=lambda p: (others(p), -abs(p - 0.5)))  # ties: nearer the argmax
        chosen[chain] = best
        rows += [r for r in rows_by_threshold[best] if r["fold"] == chain]
    return rows, chosen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chains", nargs="+", required=True, choices=sorted(c for c in CHAINS if "valfold" in c))
    parser.add_argument("--stages", nargs="+", default=["onestep", "peer"], choices=sorted(ARMS),
                        help="the arms: one-step stages of the fold chains and the peer (the last is paired with the rest)")
    parser.add_argument("--thresholds", nargs="+", type=float, default=[0.3, 0.4, 0.5, 0.6, 0.7])
    parser.add_argument("--name", default="heart", help="benchmarks/results/keep_thresholds_NAME.md")
    args = parser.parse_args()
    if len(args.chains) < 2:
        parser.error("a cross-validated choice needs at least two folds")
    if 0.5 not in args.thresholds or not all(0 < p < 1 for p in args.thresholds):
        parser.error("--thresholds are numbers between 0 and 1 and include 0.5 (the argmax, the baseline)")
    thresholds = sorted(set(args.thresholds))
    arms = [ARMS[stage] for stage in args.stages]
    scored = {arm: {p: [row for chain in args.chains for row in fold_rows(chain, arm, keep_threshold=p)]
                    for p in thresholds} for arm in arms}
    table, cv_rows, chosen = {}, {}, {}
    for arm in arms:
        cv_rows[arm], chosen[arm] = cross_validated(scored[arm], args.chains)
        table[arm] = {"by_threshold": {f"{p:g}": mean(scored[arm][p], "dice") for p in thresholds},
                      "argmax": pooled(scored[arm][0.5], "dice"), "cross_validated": pooled(cv_rows[arm], "dice"),
                      "chosen": chosen[arm], "gain": paired(cv_rows[arm], "dice", scored[arm][0.5], "dice")}
    last = arms[-1]
    differences = {}
    for arm in arms[:-1]:
        differences[f"{arm} - {last}, both at 0.5"] = paired(scored[arm][0.5], "dice", scored[last][0.5], "dice")
        differences[f"{arm} - {last}, both cross-validated"] = paired(cv_rows[arm], "dice", cv_rows[last], "dice")
    m = machine()
    result = {"date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
              "command": "python benchmarks/keep_thresholds.py " + " ".join(sys.argv[1:]), "machine": m,
              "chains": args.chains, "thresholds": thresholds, "arms": table, "paired": differences}

    def interval(s):
        return f"{s['dice']:.4f} [{s['ci95'][0]:.4f}, {s['ci95'][1]:.4f}]"

    def signed(d):
        return f"{d['mean']:+.4f} [{d['ci95'][0]:+.4f}, {d['ci95'][1]:+.4f}]"

    lines = [f"# The keep threshold on the heart's validation folds ({len(args.chains)} folds)", "",
             f"Command: `{result['command']}`  ", f"Date: {result['date']}; machine: {m['cpu']}, {m['cores']} cores, "
             f"torch {m['torch']} (scores do not depend on the load). Each arm's best checkpoint of its fold chain "
             "(`python benchmarks/chain.py --chain heart-valfoldK`) on its own fold's validation patients, at each "
             "threshold (`pixeldrl evaluate --keep-threshold P`); each fold's threshold chosen on the other folds' "
             "slices, so no slice is scored at a threshold chosen on it.", "",
             "Mean DICE of all folds' slices at each threshold (all folds at one threshold: chosen on the slices it "
             "is scored on, for reading only):", "",
             "| arm | " + " | ".join(f"{p:g}" for p in thresholds) + " |", "| --- |" + " --- |" * len(thresholds),
             *(f"| {arm} | " + " | ".join(f"{table[arm]['by_threshold'][f'{p:g}']:.4f}" for p in thresholds) + " |"
               for arm in arms), "",
             "| arm | at 0.5 (the argmax) | cross-validated thresholds | thresholds chosen per fold | gain, paired |",
             "| --- | --- | --- | --- | --- |",
             *(f"| {arm} | {interval(table[arm]['argmax'])} | {interval(table[arm]['cross_validated'])} | "
               + ", ".join(f"{chosen[arm][c]:g}" for c in args.chains) + f" | {signed(table[arm]['gain'])} |"
               for arm in arms), "",
             "| paired, slice by slice | mean [patient 95 %] |", "| --- | --- |",
             *(f"| {k} | {signed(d)} |" for k, d in differences.items()), "",
             "Raw masks (no post-processing), slice means. Validation only; the test split is not touched.", ""]
    write_results(f"keep_thresholds_{args.name}", result, lines)


if __name__ == "__main__":
    main()
