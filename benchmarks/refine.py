"""Do the steps refine? Fine-tune one checkpoint (or, without --checkpoint, train from
scratch) with variants of the training recipe under the same CPU-time budget each, then score every variant's best checkpoint on the
validation split with the DICE after each step t = 1..t_max (the paper's Fig. 7). The
test split is not touched: this chooses the recipe.

    python benchmarks/refine.py --name heart --dataset msd --checkpoint heart --cpu-minutes 20 \\
        --variant "coarse-to-fine 6=--coarse-to-fine 6" --variant "one-step control=--t-max 1"

A run's budget is process CPU time (``pixeldrl finetune --cpu-budget``), so runs that
share the machine, or other work on it, do not change what each gets. Runs land in
runs/refine-<name>/<variant>; the table and the figure in benchmarks/results/refine_<name>.*.
A variant trained with ``--t-max 1`` is a one-step control: its final mask is m(1). Any
other variant is scored over --score-steps steps (10, the paper's t_max), also one trained
with fewer (its checkpoint's own default is the length it trained with).
A variant whose run folder holds a run that ended (its budget spent or its work done) is not
trained again; one that was stopped (cancelled, killed) resumes for what is left of its budget.
The table lists the commands each run folder records (commands.jsonl), whoever started them.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shlex
from pathlib import Path

from _runs import (DATA, OUT, ROOT, evaluate, header, history, load_text, next_command, paired_difference, pixeldrl,
                   provenance, recorded_commands, relative, run_at_once, write_results)
from screen import at_stop, parse_variant
from napari_pixeldrl.model.config import PRESETS
from napari_pixeldrl.training.bench import machine


def trained_t_max(options: list[str]) -> int | None:
    return int(options[options.index("--t-max") + 1]) if "--t-max" in options else None


def plot(curves: dict[str, list[float]], path) -> None:
    """Validation DICE after each step, one line per variant (Fig. 7)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.5, 3.6))
    ax = fig.subplots()
    steps = max(len(d) for d in curves.values())
    for name, dice in curves.items():
        if len(dice) == 1 and steps > 1:  # a one-step model: its final mask is m(1), drawn across
            ax.axhline(dice[0], ls="--", lw=1.2, color="black", label=f"{name} (t_max 1)")
        else:
            ax.plot(range(1, len(dice) + 1), dice, marker="o", label=name)
    values = [d for dice in curves.values() for d in dice]
    pad = 0.05 * (max(values) - min(values) or 1.0)
    ax.set_ylim(min(values) - pad, max(values) + pad)  # a control's line is not in matplotlib's autoscale
    ax.set(xlabel="step t (inference t_max = t)", ylabel="mean validation DICE", title="DICE after each step")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)


def against_control(variant_csv, control_csv, steps: int) -> dict:
    """The variant's final mask m(steps) against the control's m(1), slice by slice on the
    same validation slices (``_runs.paired_difference``)."""
    import csv

    def rows(path):
        with open(path, newline="") as f:
            return list(csv.DictReader(f))

    try:
        return paired_difference(rows(variant_csv), f"dice_t{steps}", rows(control_csv), "dice_t1")
    except SystemExit:
        raise SystemExit(f"{variant_csv} and {control_csv} score different slices") from None


def other_experiment(results: Path, variants: dict, checkpoint: str | None) -> str | None:
    """Why ``results`` (an earlier refine_<name>.json) holds another experiment than this
    command's, or None. A rescoring keeps the earlier file's training command, so writing
    another experiment's table under its name would give that table the wrong command."""
    if not results.exists():
        return None
    old = json.loads(results.read_text())
    old_variants = {n: v.get("options") for n, v in old.get("variants", {}).items()}
    if old_variants != variants:
        return f"its variants are {sorted(old_variants)} with other options or names"
    argv = shlex.split(old.get("command", ""))
    old_checkpoint = argv[argv.index("--checkpoint") + 1] if "--checkpoint" in argv else None
    if old_checkpoint != checkpoint:
        return f"its variants fine-tuned {old_checkpoint or 'nothing (from scratch)'}"
    return None


def training_commands(runs: dict, variants: dict, shared: list[str], command: str, cpu_minutes: float) -> dict:
    """What each variant's run folder needs now: nothing where its run ended, the rest of its
    budget where it was stopped (a cancelled run that counted as done would sit in the table
    with a part of the budget), else a new run."""
    todo = {}
    for n, extra in variants.items():
        run = runs[n]
        argv = next_command(run, cpu_minutes, 1, pixeldrl(command, *shared, *extra, "--out", relative(run), "--no-progress"))
        if argv is None:
            continue
        if run.is_symlink():  # another run's folder (a chain's stage) tabulated here: never trained from here
            raise SystemExit(f"{relative(run)} links to {run.resolve()}, whose run has not ended; "
                             "finish it where it belongs, or tabulate it as it is with --skip-train")
        todo[run] = argv
    return todo


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser()
    parser.add_argument("--name", required=True)
    parser.add_argument("--dataset", required=True, choices=("lgg", "msd"))
    parser.add_argument("--data", default=None, help="default: the release under ../shared/data")
    parser.add_argument("--checkpoint", default=None,
                        help="every variant fine-tunes this checkpoint (default: every variant trains from scratch)")
    parser.add_argument("--cpu-minutes", type=float, required=True, help="process CPU time of each run")
    parser.add_argument("--shared", default="", help="options every variant gets")
    parser.add_argument("--variant", action="append", required=True, metavar="NAME=OPTIONS")
    parser.add_argument("--score-steps", type=int, default=PRESETS["paper"].t_max,
                        help="episode length the refining variants are scored at (default: the paper's t_max)")
    parser.add_argument("--start-from", default=None, metavar="box:N",
                        help="score every episode from the truth's box grown by N px, on the slices that hold the object "
                             "(a box model needs it; evaluate --start-from)")
    parser.add_argument("--skip-train", action="store_true", help="score the runs that are there")
    parser.add_argument("--note", default="")
    args = parser.parse_args()
    data = args.data or DATA[args.dataset]
    grow = None
    if args.start_from:  # checked before hours of training, not when the table is written
        from napari_pixeldrl.core.errors import InputError
        from napari_pixeldrl.training.prompts import parse_start

        try:
            grow = parse_start(args.start_from)
        except InputError as err:
            raise SystemExit(f"refine.py: --start-from: {err}") from None
    variants = dict(parse_variant(v) for v in args.variant)
    why = other_experiment(OUT / f"refine_{args.name}.json", variants, args.checkpoint)
    if why:
        raise SystemExit(f"benchmarks/results/refine_{args.name}.json holds another experiment ({why}); "
                         "choose another --name")
    base = ROOT / "runs" / f"refine-{args.name}"
    runs = {n: base / n.replace(" ", "_") for n in variants}
    checkpoint_args = ["--checkpoint", args.checkpoint] if args.checkpoint else []
    shared = ["--dataset", args.dataset, "--data", data, *checkpoint_args, "--threads", "1",
              "--seed", "0", "--cpu-budget", str(args.cpu_minutes), *shlex.split(args.shared)]
    load = None
    command = "finetune" if args.checkpoint else "train"
    to_train = {} if args.skip_train else training_commands(runs, variants, shared, command, args.cpu_minutes)
    if to_train:
        run_at_once(to_train)
        load = os.getloadavg()[0]
    start = ("--start-from", args.start_from) if args.start_from else ()
    controls = [n for n in variants if trained_t_max(variants[n]) == 1]  # one-step controls: the final mask is m(1)
    scores = {n: evaluate(runs[n] / "checkpoint_best.safetensors", args.dataset, data, "val", runs[n] / "eval_val",
                          reuse=args.skip_train, extra=("--t-max", "1" if n in controls else str(args.score_steps), *start))
              for n in variants}
    curves = {}
    if args.checkpoint:
        scored = evaluate(args.checkpoint, args.dataset, data, "val", base / "eval_val_start", reuse=True,
                          extra=("--t-max", str(args.score_steps), *start))
        curves["start checkpoint"] = scored["dice_per_step"]
    for n in variants:  # every other variant runs --score-steps steps, whatever t_max it trained with
        curves[n] = scores[n]["dice_per_step"][:1] if n in controls else scores[n]["dice_per_step"]
    per_slice = {n: runs[n] / "eval_val" / "per_slice.csv" for n in variants}
    paired = {n: against_control(per_slice[n], per_slice[controls[0]], len(curves[n]))
              for n in variants if controls and n not in controls}
    rows = {n: {**history(runs[n]), "at_stop": at_stop(runs[n]), "commands": recorded_commands(runs[n], ended_only=True)} for n in variants}
    result = {"date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
              **provenance(OUT / f"refine_{args.name}.json", "refine.py", args.skip_train, load),
              "machine": machine(), "budget": f"{args.cpu_minutes:g} min of process CPU time each",
              "dice_per_step": curves,
              **({"final_minus_control": paired, "control": controls[0]} if paired else {}),
              "variants": {n: {"options": variants[n], **rows[n],
                               **{k: scores[n][k] for k in ("dice", "ppv", "sen", "hd95", "slices")}} for n in variants}}
    load = result.get("load_at_end_of_training")  # a rescoring keeps the training's
    plot(curves, OUT / f"refine_{args.name}.png")
    m = result["machine"]
    steps = max(len(c) for c in curves.values())
    lines = [
        *header(f"Do the steps refine? {args.name} (validation split)", result),
        f"Machine: {m['cpu']}, {m['cores']} cores, torch {m['torch']}; 1 thread per run, "
        f"each stopped after {args.cpu_minutes:g} min of its own process CPU time (other work on the machine, at times "
        f"several other runs, does not change what a run computes); "
        + (f"fine-tuning `{args.checkpoint}`. " if args.checkpoint else "trained from scratch. ") +
        f"Load average when training ended: {load_text(load)}.",
        "",
        "Mean validation DICE after each step t (no post-processing; a one-step control has m(1) only)"
        + (f", every episode from the truth's box grown by {grow} px on the slices that hold the object:"
           if grow is not None else ":"),
        "",
        "| | " + " | ".join(f"t={t}" for t in range(1, steps + 1)) + " | final - m(1) |",
        "| --- | " + " | ".join("---" for _ in range(steps)) + " | --- |",
    ]
    for n, dice in curves.items():
        cells = [f"{d:.4f}" for d in dice] + ["" for _ in range(steps - len(dice))]
        lines.append(f"| {n} | " + " | ".join(cells) + f" | {dice[-1] - dice[0]:+.4f} |")
    if paired:
        lines += ["", f"The final mask against the one-step control ({controls[0]}), slice by slice on the same "
                  "slices: mean DICE difference, 95 % interval from resampling whole patients:", "",
                  "| variant | final - control | 95 % interval | patients |", "| --- | --- | --- | --- |"]
        for n, d in paired.items():
            lines.append(f"| {n} | {d['mean']:+.4f} | [{d['ci95'][0]:+.4f}, {d['ci95'][1]:+.4f}] | {d['patients']} |")
    lines += ["", "| variant | options | whole epochs | best (epoch; + at the stop) | val DICE at the stop |",
              "| --- | --- | --- | --- | --- |"]
    for n, r in rows.items():
        stop = "-" if r["at_stop"] is None else f"{r['at_stop']:.4f}"
        lines.append(f"| {n} | `{shlex.join(variants[n])}` | {r['epochs']} | {r['best_val_dice']:.4f} "
                     f"({r['best_epoch']}{'+' if r['best_validated_at_stop'] else ''}) | {stop} |")
    lines += ["", "Commands each run folder records:", ""]
    for n, r in rows.items():
        lines += [f"- {n}: " + "; ".join(f"`{c}`" for c in r["commands"])]
    lines += ["", f"![DICE after each step](refine_{args.name}.png)", "", *([args.note, ""] if args.note else []),
              "One seed and a short budget on a few validation patients: weak evidence, used to choose the recipe.", ""]
    write_results(f"refine_{args.name}", result, lines)


if __name__ == "__main__":
    main()
