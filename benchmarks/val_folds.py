"""Pool the heart's validation folds: is refining better than one step, on every development patient?

    python benchmarks/val_folds.py --chains heart-valfold0 heart-valfold1 heart-valfold2 heart-valfold3
    python benchmarks/val_folds.py --chains heart-valfold0 ... heart-valfold3 --refine refine-allmean --name heart-refine-allmean

Each chain (`benchmarks/chain.py --chain heart-valfoldK`) trains the heart chain's one-step stage,
its refining stage (first-step head, coarse-first 4, t_max 3) and its one-step control on one
validation fold of the development patients (``--val-fold``); the test patients are in none of
them. Every stage's best checkpoint is scored on its own fold's validation patients (the split its
run recorded), and the slices of all folds are pooled: each development patient is validated once,
by the models that did not train on it. The table gives each arm's DICE with a patient-level
bootstrap interval, and the refining arm against the control and against its own m(1), paired
slice by slice. The test split is not touched: this chooses the heart's recipe. A stage that an
earlier session carried (`chain.py --carry`, its run folder gone) is scored from the carried file.
``--refine STAGE`` puts another refining stage of the fold chains in the refining arm (the variants
of `rule_heart-valfolds-rlweight.md`), against the same one-step and control arms. ``--peer`` puts
the one-step stage against the fold's BasicUNet peer of the same budget (`valfolds_heart-peer.md`),
with ``--postprocess largest-component`` both arms' masks post-processed as a shipped model's may be;
``--also onestep-jitter`` adds that stage as a third arm (`rule_heart-jitter.md`), paired with both;
``--also onestep-jitter peer-jitter`` adds the peer with the same augmentation too.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import sys
from dataclasses import dataclass

from _runs import DATA, ROOT, ended, evaluate, paired_difference, write_results
from chain import CHAINS, carried
from napari_pixeldrl.model.threshold import ARGMAX
from napari_pixeldrl.training.bench import machine
from napari_pixeldrl.training.metrics import patient_bootstrap

# arm -> (the chain's stage, the episode length it is scored at; None: the checkpoint's own)
ARMS = {"one step": ("onestep", "1"), "one-step control": ("control", "1"), "refining": ("refine", None)}
# ``--peer``: the one-step stage against the BasicUNet peer trained on the same fold for its budget.
PEER = "BasicUNet peer"
PEER_ARMS = {"one step": ("onestep", "1"), PEER: ("peer", None)}


@dataclass(frozen=True)
class Also:
    """A stage of the fold chains that ``--peer --also STAGE`` adds as an arm: a variant of the
    one-step stage or of the peer, trained under a rule whose condition the four folds decide."""
    arm: str  # its arm's name in the tables
    base: str  # the arm it varies ("one step" or the peer): paired with it
    command: str  # how its stage's command differs from the base's (the table's header)
    rule: str  # the rule it was trained under (benchmarks/results/)
    condition: tuple[str, str, float]  # (arm a, arm b, the least a - b the rule asks for)


JITTER = "one step, zoom + gamma jitter"
PEER_JITTER = "BasicUNet peer, zoom + gamma jitter"
# rule_heart-jitter.md: the jitter joins the one-step recipe at +0.01 over it; then the pair with the same
# augmentation is the README's comparison, and the heart is retrained with it if the lite arm is no further
# below its peer than the plain pair (-0.030).
ALSO = {"onestep-jitter": Also(JITTER, "one step", "the `onestep` stage's command with `--scale-jitter 0.2 "
                               "--gamma-jitter 0.4`", "rule_heart-jitter.md", (JITTER, "one step", 0.01)),
        "peer-jitter": Also(PEER_JITTER, PEER, "the `peer` stage's command with the same", "rule_heart-jitter.md",
                            (JITTER, PEER_JITTER, -0.030))}
ALSO_ARMS = {a.arm: (stage, "1" if a.base == "one step" else None) for stage, a in ALSO.items()}


# The rule each refining stage was written under (committed before the stage trained).
RULES = {"refine": "rule_heart-valfolds.md", "refine-sw50": "rule_heart-valfolds-rlweight.md",
         "refine-allmean": "rule_heart-valfolds-rlweight.md", "refine-t2": "rule_heart-valfolds-t2.md"}


def fold_rows(chain: str, arm: str, refine: str = "refine", postprocess: str = "none",
              keep_threshold: float = ARGMAX) -> list[dict]:
    """The per-slice scores of one arm of one fold chain on its own validation patients
    (the refining arm: stage ``refine``); ``postprocess`` applies to the final mask (column
    ``dice``), the per-step columns stay raw; ``keep_threshold`` is the model's (0.5: the
    argmax; each other one a report of its own)."""
    stage, steps = {**ARMS, **PEER_ARMS, **ALSO_ARMS}[arm]
    stage = refine if arm == "refining" else stage
    base = ROOT / "runs" / f"chain-{chain}"
    run = base / stage
    kept = carried(base, next(s for s in CHAINS[chain].stages if s.name == stage))
    if ended(run):
        checkpoint, report = run / "checkpoint_best.safetensors", run / "eval_val"
    elif not run.exists() and kept.exists():  # an earlier session's stage (float16; its info names its split)
        checkpoint, report = kept, base / f"{stage}-carried" / "eval_val"
    else:
        raise SystemExit(f"val_folds.py: {run.relative_to(ROOT)} has not ended: run `python benchmarks/chain.py "
                         f"--chain {chain}` first")
    if postprocess != "none":
        report = report.with_name(f"eval_val-{postprocess}")
    extra = ("--t-max", steps) if steps else ()
    if keep_threshold != ARGMAX:
        report = report.with_name(f"{report.name}-keep{keep_threshold:g}")
        extra += ("--keep-threshold", f"{keep_threshold:g}")
    evaluate(checkpoint, CHAINS[chain].dataset, DATA[CHAINS[chain].dataset], "val", report, postprocess=postprocess,
             reuse=True, extra=extra)
    with open(report / "per_slice.csv", newline="") as f:
        return [{**r, "fold": chain} for r in csv.DictReader(f)]


def pooled(rows: list[dict], column: str) -> dict:
    values = [float(r[column]) for r in rows]
    lo, hi = patient_bootstrap(values, [r["patient"] for r in rows])
    return {"dice": sum(values) / len(values), "ci95": [lo, hi], "patients": len({r["patient"] for r in rows}),
            "slices": len(values)}


def paired(a: list[dict], a_col: str, b: list[dict], b_col: str) -> dict:
    """Mean of a - b slice by slice on the same slices of every fold, with a patient bootstrap interval."""
    try:
        return paired_difference(a, a_col, b, b_col, key=lambda r: (r["patient"], r["fold"], r["slice"]))
    except SystemExit:
        raise SystemExit("val_folds.py: the arms scored different slices") from None


def last_step(rows: list[dict]) -> str:
    return max((c for c in rows[0] if c.startswith("dice_t")), key=lambda c: int(c.removeprefix("dice_t")))


def mean(rows: list[dict], column: str) -> float:
    """The mean of one per-slice column over some rows."""
    return sum(float(r[column]) for r in rows) / len(rows)


def per_fold(arms: dict, final: str, chains: list[str]) -> list[dict]:
    """Each fold's arms on its own validation patients (mean DICE over its slices)."""
    folds = []
    for chain in chains:
        mine = {arm: [r for r in rows if r["fold"] == chain] for arm, rows in arms.items()}
        folds.append({"fold": chain, "patients": sorted({r["patient"] for r in mine["refining"]}),
                      "one step": mean(mine["one step"], "dice_t1"), "control": mean(mine["one-step control"], "dice_t1"),
                      "refining m(1)": mean(mine["refining"], "dice_t1"), "refining final": mean(mine["refining"], final)})
    return folds


def rule_conditions(against: dict) -> list[tuple[str, bool]]:
    """The conditions of benchmarks/results/rule_heart-valfolds.md (written before the folds'
    refining and control stages trained), on the pooled paired means; the variants' rule
    (rule_heart-valfolds-rlweight.md) holds each refining variant to the same ones."""
    gain = against["refining final - its m(1)"]["mean"]
    control = against["refining final - control"]["mean"]
    one_step = against["refining final - one step"]["mean"]
    return [("1. point 2: refining final - its m(1) >= +0.03", gain >= 0.03),
            ("1. point 2: refining final - control >= 0", control >= 0),
            ("2. the recipe: refining final - its m(1) >= +0.03", gain >= 0.03),
            ("2. the recipe: refining final - control >= -0.005", control >= -0.005),
            ("2. the recipe: refining final - one step >= -0.01", one_step >= -0.01)]


def per_patient(arms: dict) -> list[dict]:
    """Each patient's slice means per arm: DICE of the final mask, and PPV and sensitivity where
    the report has them."""
    first = next(iter(arms.values()))
    patients = sorted({(r["fold"], r["patient"]) for r in first}, key=lambda fp: fp[1])
    table = []
    for fold, patient in patients:
        row = {"patient": patient, "fold": fold}
        for arm, rows in arms.items():
            mine = [r for r in rows if r["patient"] == patient and r["fold"] == fold]
            row["slices"] = len(mine)
            row[arm] = {column: mean(mine, key)
                        for column, key in (("dice", "dice"), ("ppv", "ppv"), ("sensitivity", "sen")) if key in mine[0]}
        table.append(row)
    return table


def patient_cell(scores: dict) -> str:
    return " / ".join(f"{scores[k]:.3f}" if k in scores else "-" for k in ("dice", "ppv", "sensitivity"))


def peer_table(args) -> None:
    """The one-step stage against its BasicUNet peer on every fold's validation patients, with
    the ``--also`` stages beside the arm each varies: a measurement for the README's peer
    comparison, and with all four folds the ``--also`` stages' rules. Every arm's final mask
    (column ``dice``), with ``--postprocess`` applied to all."""
    also = [ALSO[stage] for stage in args.also]
    lite = ["one step", *(a.arm for a in also if a.base == "one step")]
    peers = [PEER, *(a.arm for a in also if a.base == PEER)]
    names = lite + peers
    arms = {arm: [row for chain in args.chains for row in fold_rows(chain, arm, postprocess=args.postprocess)]
            for arm in names}
    scores = {arm: pooled(rows, "dice") for arm, rows in arms.items()}
    pairs = [(a, b) for a in lite for b in peers] + [(a.arm, a.base) for a in also]
    differences = {f"{a} - {b}": paired(arms[a], "dice", arms[b], "dice") for a, b in pairs}
    conditions = [(f"`{a.rule}`: {a.condition[0]} - {a.condition[1]} >= {a.condition[2]:+.3f}",
                   differences[f"{a.condition[0]} - {a.condition[1]}"]["mean"] >= a.condition[2])
                  for a in also] if len(args.chains) == 4 else []
    empty = {arm: sum(r["empty_pred"] == "True" for r in rows) for arm, rows in arms.items()}
    m = machine()
    result = {"date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
              "command": "python benchmarks/val_folds.py " + " ".join(sys.argv[1:]), "machine": m, "chains": args.chains,
              "postprocess": args.postprocess, "scores": scores, "empty_predictions": empty, "paired": differences,
              "rule_conditions": {text: ok for text, ok in conditions}}
    folds = [{"fold": chain, **{arm: mean([r for r in rows if r["fold"] == chain], "dice") for arm, rows in arms.items()}}
             for chain in args.chains]
    result["folds"] = folds
    result["patients"] = per_patient(arms)
    versus = [(a, b) for a, b in pairs if a in lite and b in peers]  # the per-patient columns
    described = "".join(f"; `{stage}`: {ALSO[stage].command}" for stage in args.also)
    if conditions:
        rule_lines = ["Conditions of the rules (all four folds):",
                      *(f"- {'holds' if ok else 'FAILS'}: {text}" for text, ok in conditions), ""]
    else:
        rule_lines = [f"Fewer than four folds: `{rule}` decides nothing on them." for rule in dict.fromkeys(a.rule for a in also)]
        rule_lines += [""] if rule_lines else []
    title = " against ".join([" and ".join(["lite " + lite[0], *lite[1:]]), " and ".join(["BasicUNet", *peers[1:]])])
    lines = [f"# The heart's validation folds pooled ({len(args.chains)} folds): {title}", "",
             f"Command: `{result['command']}`  ", f"Date: {result['date']}; machine: {m['cpu']}, {m['cores']} cores, "
             f"torch {m['torch']} (scores do not depend on the load). Each fold's stages: `python benchmarks/chain.py "
             "--chain heart-valfoldK`: `onestep` (lite, t_max 1, the fine decoder, 256-pixel crops) and `peer` "
             f"(MONAI BasicUNet, BCE + soft Dice, the same crops){described}, 94 CPU-min each, 1 thread, budgets in process "
             "CPU time; the stages ran in different sessions, when the machine's pace may differ by about 10 %.", "",
             "| arm | DICE [patient 95 %] | empty predictions | patients | slices |", "| --- | --- | --- | --- | --- |",
             *(f"| {arm} | {s['dice']:.4f} [{s['ci95'][0]:.4f}, {s['ci95'][1]:.4f}] | {empty[arm]} | {s['patients']} | "
               f"{s['slices']} |" for arm, s in scores.items()), "",
             *(f"Paired slice by slice, {k}: {d['mean']:+.4f} [{d['ci95'][0]:+.4f}, {d['ci95'][1]:+.4f}] (patients "
               "resampled).  " for k, d in differences.items()), "",
             "| fold | " + " | ".join(names) + " |", "| --- |" + " --- |" * len(names),
             *(f"| {f['fold']} | " + " | ".join(f"{f[arm]:.4f}" for arm in names) + " |" for f in folds), "",
             "Each patient (slice means; PPV and sensitivity say whether an arm adds or misses object pixels):", "",
             "| patient | fold | slices | " + " | ".join(f"{arm} DICE / PPV / sensitivity" for arm in names) + " | "
             + " | ".join(f"{a} - {'peer' if b == PEER else b}" for a, b in versus) + " |",
             "| --- | --- | --- |" + " --- |" * (len(names) + len(versus)),
             *(f"| {p['patient']} | {p['fold']} | {p['slices']} | " + " | ".join(patient_cell(p[arm]) for arm in names)
               + " | " + " | ".join(f"{p[a]['dice'] - p[b]['dice']:+.4f}" for a, b in versus) + " |"
               for p in result["patients"]), "",
             *rule_lines,
             ("Raw masks (no post-processing)" if args.postprocess == "none" else
              f"Every arm's masks post-processed ({args.postprocess}: the largest object of each slice's mask)")
             + ", slice means. Validation only; the test split is not touched.", ""]
    write_results(f"valfolds_{args.name}", result, lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chains", nargs="+", required=True, choices=sorted(c for c in CHAINS if "valfold" in c))
    parser.add_argument("--refine", default="refine", choices=sorted(RULES), help="the refining arm's stage")
    parser.add_argument("--peer", action="store_true", help="the one-step stage against its BasicUNet peer instead")
    parser.add_argument("--postprocess", default="none", choices=("none", "largest-component"),
                        help="with --peer: applied to both arms' masks")
    parser.add_argument("--also", nargs="+", default=[], choices=sorted(ALSO),
                        help="with --peer: these one-step stages as arms between the one-step stage and the peer")
    parser.add_argument("--name", default=None, help="benchmarks/results/valfolds_NAME.md (default heart, or heart-peer "
                        "with the --also stages and the post-processing)")
    args = parser.parse_args()
    if args.postprocess != "none" and not args.peer:
        parser.error("--postprocess applies to --peer only (the refining tables compare raw masks)")
    if args.also and not args.peer:
        parser.error("--also applies to --peer only")
    missing = {arm for stage in args.also for arm in ALSO[stage].condition[:2]} - {"one step", PEER} - {
        ALSO[stage].arm for stage in args.also}
    if missing:
        parser.error(f"--also: the rule's condition needs the arm(s) {', '.join(sorted(missing))}: add their stages")
    if args.peer:
        args.name = args.name or "-".join(["heart-peer", *args.also] + ([args.postprocess] if args.postprocess != "none" else []))
        return peer_table(args)
    args.name = args.name or "heart"
    arms = {arm: [row for chain in args.chains for row in fold_rows(chain, arm, args.refine)] for arm in ARMS}
    final = last_step(arms["refining"])
    scores = {"one step": pooled(arms["one step"], "dice_t1"), "one-step control": pooled(arms["one-step control"], "dice_t1"),
              "refining, m(1)": pooled(arms["refining"], "dice_t1"), f"refining, final ({final})": pooled(arms["refining"], final)}
    against = {"refining final - control": paired(arms["refining"], final, arms["one-step control"], "dice_t1"),
               "refining final - one step": paired(arms["refining"], final, arms["one step"], "dice_t1"),
               "refining final - its m(1)": paired(arms["refining"], final, arms["refining"], "dice_t1")}
    m = machine()
    result = {"date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
              "command": "python benchmarks/val_folds.py " + " ".join(sys.argv[1:]), "machine": m,
              "chains": args.chains, "refining stage": args.refine, "scores": scores, "paired": against, "folds": per_fold(arms, final, args.chains)}
    conditions = rule_conditions(against) if len(args.chains) == 4 else []
    result["rule_conditions"] = {text: ok for text, ok in conditions}
    lines = [f"# The heart's validation folds pooled ({len(args.chains)} folds)", "",
             f"Command: `{result['command']}`  ", f"Date: {result['date']}; machine: {m['cpu']}, {m['cores']} cores, "
             f"torch {m['torch']} (scores do not depend on the load). Each fold's stages: `python benchmarks/chain.py "
             f"--chain heart-valfoldK` (1 thread each, budgets in process CPU time); the refining arm: stage "
             f"`{args.refine}`.", "",
             "| arm | DICE [patient 95 %] | patients | slices |", "| --- | --- | --- | --- |",
             *(f"| {arm} | {s['dice']:.4f} [{s['ci95'][0]:.4f}, {s['ci95'][1]:.4f}] | {s['patients']} | {s['slices']} |"
               for arm, s in scores.items()), "",
             "| paired, slice by slice | mean | 95 % interval (patients resampled) |", "| --- | --- | --- |",
             *(f"| {k} | {d['mean']:+.4f} | [{d['ci95'][0]:+.4f}, {d['ci95'][1]:+.4f}] |" for k, d in against.items()), "",
             "| fold | validation patients | one step | control | refining m(1) | refining final | final - control |",
             "| --- | --- | --- | --- | --- | --- | --- |",
             *(f"| {f['fold']} | {', '.join(f['patients'])} | {f['one step']:.4f} | {f['control']:.4f} | "
               f"{f['refining m(1)']:.4f} | {f['refining final']:.4f} | {f['refining final'] - f['control']:+.4f} |"
               for f in result["folds"]), "",
             *(([f"Conditions of `benchmarks/results/{RULES[args.refine]}` (all four folds):",
                 *(f"- {'holds' if ok else 'FAILS'}: {text}" for text, ok in conditions), ""]) if conditions else
               [f"Fewer than four folds: `{RULES[args.refine]}` decides nothing on them.", ""]),
             "Validation only (each development patient scored by the fold that did not train on it); the test split is "
             "not touched.", ""]
    write_results(f"valfolds_{args.name}", result, lines)


if __name__ == "__main__":
    main()
