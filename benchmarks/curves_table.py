"""Tabulate the validation curves of run folders, whatever started them: each run's own
recorded commands (commands.jsonl), and its validation DICE against the CPU minutes it had
spent (`_runs.validation_curve`: each epoch's validation and each budget stop's, a fine-tune's
curve continuing the run it started from). For screens run by hand with `pixeldrl train`.

    python benchmarks/curves_table.py --name lite_recipe_lgg --title "..." LABEL=RUN_FOLDER ...

Writes benchmarks/results/<name>.{json,md}. A run that was stopped by hand before its
budget shows the epochs it finished; the table says so.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shlex
import sys
from pathlib import Path

from _runs import command_records, recorded_commands, validation_curve, write_results
from napari_pixeldrl.training.bench import machine


def read_run(run: Path) -> dict:
    records = command_records(run)
    # Each epoch's validation and each stage's budget-stop one (which may hold the best weights).
    points = [[round(cpu, 2), round(dice, 4)] for cpu, dice in validation_curve(run)]
    ended = [r for r in records if r.get("status") == "ended"]
    return {"commands": recorded_commands(run), "validations": points,
            "ended": bool(ended) and records[-1].get("status") == "ended",
            "reason": ended[-1].get("reason") if ended else "stopped by hand"}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--name", required=True)
    parser.add_argument("--title", required=True)
    parser.add_argument("--note", default="")
    parser.add_argument("runs", nargs="+", metavar="LABEL=RUN_FOLDER")
    args = parser.parse_args()
    runs = {}
    for item in args.runs:
        label, _, folder = item.partition("=")
        runs[label] = read_run(Path(folder))
    result = {"date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
              "command": "python benchmarks/curves_table.py " + shlex.join(sys.argv[1:]),
              "load_at_tabulation": round(os.getloadavg()[0], 2), "machine": machine(), "runs": runs}
    m = result["machine"]
    lines = [f"# {args.title}", "", f"Command: `{result['command']}`  ", f"Date: {result['date']}  ",
             f"Machine: {m['cpu']}, {m['cores']} cores, torch {m['torch']}. Each run: 1 thread; its CPU minutes are its "
             "own process CPU time, which other work on the machine does not change (up to three processes shared "
             "the 2 cores).", "",
             "| run | validations (CPU min: val DICE) | best | how it ended |", "| --- | --- | --- | --- |"]
    for label, r in runs.items():
        cells = ", ".join(f"{c:.1f}: {d:.3f}" for c, d in r["validations"]) or "none"
        best = max((d for _, d in r["validations"]), default=float("nan"))
        lines.append(f"| {label} | {cells} | {best:.3f} | {r['reason']} |")
    lines += ["", "Commands each run folder records:", ""]
    for label, r in runs.items():
        lines.append(f"- {label}: " + "; ".join(f"`{c}`" for c in r["commands"]))
    lines += ["", *([args.note, ""] if args.note else []),
              "Validation split only; one seed; the validation split is a few patients, so differences of a few "
              "points are inside its noise.", ""]
    write_results(args.name, result, lines)


if __name__ == "__main__":
    main()
