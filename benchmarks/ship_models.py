"""Package the PixelDRL-MG run of each race as a bundled model, score it and its peer (MONAI
BasicUNet, trained under the same CPU-time budget) once on the test split, and write the
model cards.

    python benchmarks/race.py --dataset lgg --cpu-minutes 25      # trains runs/race-lgg/{lite,basicunet}
    python benchmarks/race.py --dataset msd --cpu-minutes 25      # runs/race-heart/...
    python benchmarks/ship_models.py                              # or --model heart: one model, the other kept

Every choice is made on the validation split: the checkpoint (best validation DICE during
training) and the post-processing (none or largest component, for each model on its own).
Then the shipped float16 file and the peer's checkpoint are scored on the test split, once
each; every test scoring is appended to benchmarks/results/test_scorings.jsonl, which the
card lists. A second call for the same files reads the scores back instead of scoring again.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shutil
import tempfile
from pathlib import Path

from _runs import (METRICS, ROOT, TEST_SCORINGS, cpu_minutes_spent, evaluate, file_sha256, gone_run, json_lines,
                   log_test_scoring, metric_cells, remember_run, training_steps, uncounted_training, validation_curve)
from napari_pixeldrl.model.checkpoint import load_checkpoint, save_checkpoint
from napari_pixeldrl.model.config import PRESETS
from napari_pixeldrl.model.postprocess import POSTPROCESS

WEIGHTS = ROOT / "model" / "weights"
RESULTS = ROOT / "benchmarks" / "results"
MODELS = {
    "lgg": {"dataset": "lgg", "data": "../shared/data/lgg/kaggle_3m", "sample": "TCGA_DU_7306_19930512",
            "what": "LGG brain MRI (kaggle_3m: pre-contrast, FLAIR, post-contrast as 3 channels), FLAIR abnormality"},
    "heart": {"dataset": "msd", "data": "../shared/data/heart/Task02_Heart", "sample": "la_004",
              "what": "MSD Task02_Heart MRI (1 channel), left atrium"},
}
TARGET_DICE = {"lgg": 0.80, "heart": 0.83}  # the paper's level (its Table 2)
PAPER_ROWS = {
    "lgg": "| PixelDRL-MG (paper, Brain) | 0.8147 | 0.8877 | 0.7659 | 0.7152 | 0.2733 | 9.09 |\n"
           "| U-Net (paper, Brain) | 0.7220 | - | - | - | 0.1932 | 13.24 |",
    "heart": "| PixelDRL-MG (paper, Cardiac) | 0.8346 | 0.8678 | 0.8469 | 0.7510 | 0.4081 | 4.05 |\n"
             "| U-Net (paper, Cardiac) | 0.7586 | - | - | - | 0.2428 | 7.64 |",
}

PAPER_T_MAX = PRESETS["paper"].t_max  # the episode length the paper segments with


def _inference(t_max: int | None, window: int) -> tuple[tuple[str, ...], str]:
    """`pixeldrl evaluate` options and a report-folder suffix for an episode length (None:
    the checkpoint's) and a window (0: whole slices)."""
    extra, suffix = ((), "") if t_max is None else (("--t-max", str(t_max)), f"_t{t_max}")
    if window:
        extra, suffix = (*extra, "--window", str(window)), f"{suffix}_w{window}"
    return extra, suffix


def choose_postprocess(checkpoint: Path, spec: dict, out: Path, t_max: int | None = None,
                       window: int = 0) -> tuple[str, dict]:
    """The post-processing with the best mean validation DICE, and every option's score
    (episodes of ``t_max`` steps, None: the checkpoint's; slices in ``window`` windows, 0: whole)."""
    extra, suffix = _inference(t_max, window)
    scores = {p: evaluate(checkpoint, spec["dataset"], spec["data"], "val", out / f"eval_val_{p}{suffix}", postprocess=p,
                          reuse=True, extra=extra)["dice"] for p in POSTPROCESS}
    return max(POSTPROCESS, key=lambda p: scores[p]), scores


def choose_window(checkpoint: Path, spec: dict, out: Path, t_max: int | None = None) -> tuple[int, dict]:
    """Whole slices (0) or half-overlapping windows the size of the crops the checkpoint last
    trained on, whichever has the better raw validation DICE (whole slices on a tie), and both
    scores (one, where it trained on whole slices). The whole-slice report is the one
    :func:`choose_postprocess` reads back."""
    crop = int((load_checkpoint(checkpoint).info.get("train") or {}).get("crop") or 0)
    scores = {}
    for window in (0, crop) if crop else (0,):
        extra, suffix = _inference(t_max, window)
        scores[window] = evaluate(checkpoint, spec["dataset"], spec["data"], "val", out / f"eval_val_none{suffix}",
                                  reuse=True, extra=extra)["dice"]
    return max(scores, key=lambda w: (scores[w], w == 0)), scores


def choose_steps(checkpoint: Path, trained: int, spec: dict, out: Path) -> tuple[int, list[float]]:
    """The episode length to ship: the paper's t_max (10) where its raw validation DICE is at
    least that after the steps the model trained with, else those. Returns it and the
    validation DICE after each step t = 1..10 (one episode of 10 steps gives every m(t)).
    The report is the one :func:`choose_postprocess` reads back for no post-processing at 10 steps."""
    steps = evaluate(checkpoint, spec["dataset"], spec["data"], "val", out / f"eval_val_none_t{PAPER_T_MAX}",
                     reuse=True, extra=("--t-max", str(PAPER_T_MAX)))["dice_per_step"]
    trained = min(trained, PAPER_T_MAX)
    return (PAPER_T_MAX if steps[-1] >= steps[trained - 1] else trained), steps


def score_test_once(checkpoint: Path, spec: dict, out: Path, postprocess: str, who: str, window: int = 0) -> dict:
    """The test split's scores of ``checkpoint``: read back if this very file was scored
    already with the same request, else scored now and the scoring recorded (``window``: run
    its slices in windows of that side, for a peer whose file does not carry the choice)."""
    extra = ("--window", str(window)) if window else ()
    result = evaluate(checkpoint, spec["dataset"], spec["data"], "test", out, postprocess=postprocess, reuse=True,
                      extra=extra)
    digest = file_sha256(checkpoint)
    logged = postprocess + (f", {window}-pixel windows" if window else "")
    if not any(d.get("sha256") == digest and d.get("postprocess") == logged for d in json_lines(TEST_SCORINGS)):
        log_test_scoring(who, spec["dataset"], logged, digest, result["dice"])
    return result


def scorings(dataset: str) -> list[dict]:
    return [d for d in json_lines(TEST_SCORINGS) if d["dataset"] == dataset]


def interval(s: dict) -> str:
    lo, hi = s["dice_ci95"]
    return f"{s['dice']:.4f} [{lo:.4f}, {hi:.4f}]"


def row(name: str, s: dict) -> str:
    return f"| {name} | " + " | ".join(metric_cells(s)) + " |"


def same_checkpoint(a: Path, b: Path) -> bool:
    """Whether two safetensors files hold the same tensors and header entries. Their bytes can
    differ when they do: safetensors writes the header's metadata in no fixed order."""
    from safetensors import safe_open

    with safe_open(a, "pt") as fa, safe_open(b, "pt") as fb:
        if fa.metadata() != fb.metadata() or set(fa.keys()) != set(fb.keys()):
            return False
        return all(fa.get_tensor(k).equal(fb.get_tensor(k)) for k in fa.keys())


def save_unless_same(path: Path, model, config, info: dict) -> None:
    """Write the float16 checkpoint to ``path`` unless ``path`` already holds the same content,
    so that a second call keeps the bytes that were scored (and their hash) as they are."""
    with tempfile.TemporaryDirectory() as tmp:
        new = Path(tmp) / path.name
        save_checkpoint(new, model, config, info, half=True)
        if not (path.exists() and same_checkpoint(new, path)):
            shutil.copyfile(new, path)


def windows_words(window: int, scores: dict) -> str:
    """A card's words for the window choice and the raw validation DICE it was made on."""
    what = f"slices in half-overlapping {window}-pixel windows" if window else "whole slices"
    tried = ", ".join(f"{f'{k}-pixel windows' if int(k) else 'whole'} {v:.4f}" for k, v in scores.items())
    return what + (f" (raw val DICE: {tried})" if len(scores) > 1 else "")


def chosen(info: dict) -> str:
    if info.get("validated_at_stop"):
        return f"the weights at a budget stop ({info.get('epoch')} whole epochs and part of the next)"
    return f"epoch {info.get('epoch')}"


def recorded_peer(peer_run: Path, spec: dict, gone: dict | None = None) -> tuple[dict, str, dict, dict]:
    """A peer whose run folder is gone: its one test scoring, post-processing, validation
    scores and checkpoint as gone_runs.json recorded them (``gone``: that record, if read
    already; its test split is not scored again)."""
    gone = gone or gone_run(peer_run)
    digest = gone["checkpoint"]["sha256"]
    window = gone.get("window", 0)
    logged = gone["postprocess"] + (f", {window}-pixel windows" if window else "")
    if not any(d.get("sha256") == digest and d["dataset"] == spec["dataset"] and d.get("postprocess") == logged
               for d in json_lines(TEST_SCORINGS)):
        raise SystemExit(f"{peer_run}: its recorded checkpoint {digest[:12]} has no scoring in {TEST_SCORINGS}")
    return gone["test"], gone["postprocess"], gone["val_dice_by_postprocess"], gone["checkpoint"]


def remember_runs(name: str, lite_run: Path, peer_run: Path, peer: dict, peer_pp: str, peer_val: dict, peer_info: dict,
                  peer_sha256: str | None, peer_window: int = 0, peer_windows: dict | None = None) -> None:
    """Record both runs of a ship in gone_runs.json, so that a later checkout without runs/ can
    still count a fine-tune of the shipped file and compare it with this peer (a record is
    read only where its folder is not there: benchmarks/_runs.gone_run)."""
    when = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    where = f"benchmarks/ship_models.py at the ship of {name}, {when}, from the run folders then"
    remember_run(lite_run, where)
    if peer_sha256:  # a peer whose folder is here (a recorded one keeps its record)
        remember_run(peer_run, where, checkpoint={
            "epoch": peer_info.get("epoch"), "validated_at_stop": bool(peer_info.get("validated_at_stop")),
            "val_dice": peer_info.get("val_dice"), "sha256": peer_sha256},
            postprocess=peer_pp, val_dice_by_postprocess=peer_val, window=peer_window,
            val_dice_by_window={str(k): v for k, v in (peer_windows or {}).items()},
            test={k: peer[k] for k in (*METRICS, "sd", "dice_ci95", "empty_predictions", "hd95_nonempty", "slices", "patients")})


def validation_choices(spec: dict, lite_run: Path, peer_run: Path) -> dict:
    """What a ship would choose, all on the validation split, and nothing else: the episode
    length and post-processing of the run's best checkpoint, its validation scores there
    (DICE, empty predictions), the peer's post-processing and scores, and both budgets. A
    ship rule is checked on these before ``--validate-only`` is dropped and the test split scored.
    ``loaded`` (the checkpoint) and ``peer_record`` (the peer's gone_runs.json record, or None)
    are for :func:`ship`; the budgets are unrounded."""
    source = lite_run / "checkpoint_best.safetensors"
    loaded = load_checkpoint(source)
    trained_t_max = (loaded.info.get("train") or {}).get("t_max")  # the episodes it trained with, if not the config's
    trained_steps = trained_t_max or loaded.config.t_max
    t_max, val_steps = choose_steps(source, trained_steps, spec, lite_run)
    window, lite_windows = choose_window(source, spec, lite_run, t_max=t_max)
    lite_pp, lite_val = choose_postprocess(source, spec, lite_run, t_max=t_max, window=window)
    extra, suffix = _inference(t_max, window)
    at_choice = evaluate(source, spec["dataset"], spec["data"], "val", lite_run / f"eval_val_{lite_pp}{suffix}",
                         postprocess=lite_pp, reuse=True, extra=extra)  # read back, not scored again
    peer_record = gone_run(peer_run)  # a peer whose folder is gone: its recorded scores
    if peer_record is None:
        peer_ckpt = peer_run / "checkpoint_best.safetensors"
        peer_window, peer_windows = choose_window(peer_ckpt, spec, peer_run)
        peer_pp, peer_val = choose_postprocess(peer_ckpt, spec, peer_run, window=peer_window)
    else:  # recorded before windows were chosen (whole slices) unless the record says otherwise
        peer_pp, peer_val = peer_record["postprocess"], peer_record["val_dice_by_postprocess"]
        peer_window = peer_record.get("window", 0)
        peer_windows = peer_record.get("val_dice_by_window", {})
    return {"loaded": loaded, "peer_record": peer_record, "trained_t_max": trained_t_max, "trained_steps": trained_steps, "t_max": t_max,
            "val_steps": val_steps, "window": window, "val_dice_by_window": lite_windows,
            "peer_window": peer_window, "peer_val_dice_by_window": peer_windows,
            "postprocess": lite_pp, "val_dice_by_postprocess": lite_val,
            "val_dice": at_choice["dice"], "val_empty_predictions": at_choice["empty_predictions"],
            "val_slices": at_choice["slices"], "peer_postprocess": peer_pp, "peer_val_dice_by_postprocess": peer_val,
            "cpu_minutes": cpu_minutes_spent(lite_run, uncounted_ok=True), "peer_cpu_minutes": cpu_minutes_spent(peer_run),
            "uncounted": uncounted_training(lite_run)}


def race_runs(race_name: str, peer_run: Path | None) -> tuple[Path, Path]:
    base = ROOT / "runs" / f"race-{race_name}"
    return base / "lite", peer_run or base / "basicunet"


def ship(name: str, spec: dict, race_name: str, note: str = "", peer_run: Path | None = None) -> dict:
    base = ROOT / "runs" / f"race-{race_name}"
    lite_run, peer_run = race_runs(race_name, peer_run)
    race_file = RESULTS / f"race_{race_name}.json"
    race = json.loads(race_file.read_text()) if race_file.exists() else None
    choices = validation_choices(spec, lite_run, peer_run)
    loaded, peer_record = choices["loaded"], choices["peer_record"]  # a peer whose folder is gone: its record
    info = dict(loaded.info)
    trained_t_max, trained_steps = choices["trained_t_max"], choices["trained_steps"]
    t_max, val_steps = choices["t_max"], choices["val_steps"]
    lite_pp, lite_val = choices["postprocess"], choices["val_dice_by_postprocess"]
    peer_pp, peer_val = choices["peer_postprocess"], choices["peer_val_dice_by_postprocess"]
    if peer_record is None:
        peer_ckpt = peer_run / "checkpoint_best.safetensors"
    window, peer_window = choices["window"], choices["peer_window"]
    config = loaded.config.replace(postprocess=lite_pp, t_max=t_max, window=window)
    WEIGHTS.mkdir(parents=True, exist_ok=True)
    target = WEIGHTS / f"{name}.safetensors"
    # The float16 file that ships, scored as it is; kept in the run folder so that a second call
    # finds the same bytes and reads its scores back (evaluate's reuse compares the file's hash).
    candidate = lite_run / f"shipped_{name}.safetensors"
    info["source_run"] = f"runs/race-{race_name}/lite ({chosen(info)})"
    save_unless_same(candidate, loaded.model, config, info)
    test = score_test_once(candidate, spec, lite_run / "eval_test_shipped", "auto", f"bundled {name}")
    info["test_metrics"] = {k: test[k] for k in (*METRICS, "dice_ci95", "empty_predictions", "hd95_nonempty")} | {
        "slices": test["slices"], "patients": test["patients"], "split": "test, by patient, seed 0"}
    save_unless_same(target, loaded.model, config, info)  # the same weights, with the scores in the header
    if peer_record is None:
        peer = score_test_once(peer_ckpt, spec, peer_run / "eval_test" if not peer_window else
                               peer_run / f"eval_test_w{peer_window}", peer_pp, f"BasicUNet peer of {name}", peer_window)
        peer_info, peer_sha256 = load_checkpoint(peer_ckpt).info, file_sha256(peer_ckpt)
    else:
        (peer, peer_pp, peer_val, peer_info), peer_sha256 = recorded_peer(peer_run, spec, peer_record), None
    lite_budget, peer_budget, missing = choices["cpu_minutes"], choices["peer_cpu_minutes"], choices["uncounted"]
    same = not missing and abs(lite_budget - peer_budget) <= 0.1 * peer_budget
    budget_words = "under the same CPU budget" if same else (
        f"after {peer_budget:.0f} CPU-min, NOT the same budget as this model's (" +
        ("its starting checkpoint's training is not counted here" if missing else f"{lite_budget:.0f} CPU-min") + ")")
    peer_label = "MONAI BasicUNet, same CPU budget" if same else f"MONAI BasicUNet, {peer_budget:.0f} CPU-min (not the same budget)"
    lo, hi = peer["dice_ci95"]
    inside = lo <= test["dice"] <= hi
    diff = test["dice"] - peer["dice"]
    status = (f"test DICE {test['dice']:.4f} against MONAI BasicUNet's {peer['dice']:.4f} {budget_words} "
              f"({diff:+.4f}; {'inside' if inside else 'outside'} the peer's patient-bootstrap 95 % interval); "
              f"the paper's level {TARGET_DICE[name]:.2f} is {'reached' if test['dice'] >= TARGET_DICE[name] else 'NOT reached'}.")
    if race:
        curve, m, dates = race.get("curves", {}), race["machine"], f"race results of {race['date']}"
        curves_line = (f"Validation DICE against CPU minutes for both runs: `benchmarks/results/race_{race_name}.png`\n("
                       + ", ".join(f"{k}: best {max((d for _, d in v), default=float('nan')):.3f}" for k, v in curve.items()) + ").")
    else:  # no race of the two: this run's own validations, the peer's as recorded
        from napari_pixeldrl.training.bench import machine

        m, dates = machine(), f"card written {dt.datetime.now(dt.timezone.utc).isoformat(timespec='seconds')}"
        def points(run):
            return ", ".join(f"{c:.0f}: {d:.3f}" for c, d in validation_curve(run))

        peer_curve = (f"in benchmarks/results/gone_runs.json (`{peer_run.relative_to(ROOT)}`)" if peer_record
                      else points(peer_run))
        curves_line = (f"Validation DICE against CPU minutes (of the runs whose folders are here): this model {points(lite_run)}; "
                       f"the peer {peer_curve}.")
    history = scorings(spec["dataset"])
    step_dice = ", ".join(f"{d:.3f}" for d in test["dice_per_step"])

    def nonempty(s):
        return f"{s['hd95_nonempty']:.2f}" if s["hd95_nonempty"] == s["hd95_nonempty"] else "-"

    regen_peer = f" --peer {name}={peer_run.relative_to(ROOT)}" if peer_run != base / "basicunet" else ""
    card = f"""# Model card: `{name}` (PixelDRL-MG, `lite` preset)

**Status**: {status}
{chr(10) + note + chr(10) if note else ""}
Use: `pixeldrl predict --checkpoint {name} IN OUT`, `pixeldrl demo --sample {name}`, or pick
`{name}` in the napari Segment widget.

- **Data**: {spec['what']}; `../shared/data` as described in its README.
- **Split**: by patient, 70/10/20 (train/val/test), seed 0; slices without object removed
  (the paper's protocol). The bundled sample patient ({spec['sample']}) is in the test split.
- **Network**: `lite` preset: VGG16-half extractor{" with instance normalisation" if loaded.config.extractor_norm == "instance" else " without normalisation"}, run once per
  image; self-attention; {"one shared policy-and-value head body" if loaded.config.shared_head else "separate policy and value head bodies"} at 1/4 resolution{f" ending in a {loaded.config.fine_decoder}-channel decoder at full resolution" if loaded.config.fine_decoder else ""}{"; instance normalisation in the heads" if loaded.config.head_norm == "instance" else ""}; t_max {t_max}{f" (trained with episodes of {trained_t_max} step{'s' if trained_t_max > 1 else ''})" if trained_t_max and trained_t_max != t_max else ""};
  {loaded.config.in_channels} input channel(s){"; state prototypes (each step's heads also see every pixel's similarity to the mean features inside and outside m(t))" if loaded.config.state_prototypes else ""}{"; a head of its own for step 1, the later steps sharing the other (--first-step-head)" if loaded.config.first_step_head else ""}{"; a prompt channel (the extractor also sees m(0), a user's box or all ones; `pixeldrl predict --start-mask`, the Segment widget's start layer)" if loaded.config.prompt_channel else ""}.
- **Training** (PA3C with the lite training defaults, `pixeldrl info --preset lite`), by these commands:
{chr(10).join(f"  - {c}" for c in training_steps(lite_run))}
- **Budget**: {lite_budget:.1f} min of process CPU time (1 thread){" for the runs that are here (" + missing + ")" if missing else ""}, on {m['cpu']}, {m['cores']} cores, torch {m['torch']};
  the peer {peer_budget:.1f} min the same way. A CPU-time budget is not changed by other work on the machine
  (other runs shared the 2 cores at times). Dates: {dates}.
- **Choices, all on the validation split**: the checkpoint with the best validation DICE ({chosen(info)},
  val DICE {info.get('val_dice', float('nan')):.4f}); episodes of {t_max} steps (raw val DICE after each step t = 1..10:
  {', '.join(f'{d:.3f}' for d in val_steps)}; the paper's 10 where they are at least those after the {trained_steps} trained); {windows_words(window, choices["val_dice_by_window"])};
  post-processing `{lite_pp}` (val DICE: {', '.join(f'{k} {v:.4f}' for k, v in lite_val.items())}).
  The peer: {chosen(peer_info)} (val DICE {peer_info.get('val_dice', float('nan')):.4f}), {windows_words(peer_window, choices["peer_val_dice_by_window"])},
  post-processing `{peer_pp}` (val DICE: {', '.join(f'{k} {v:.4f}' for k, v in peer_val.items())}).
- **Weights**: float16 safetensors ({target.stat().st_size / 1e6:.1f} MB); the figures below are measured on this file.

## Test split ({test['slices']} slices of {test['patients']} patients)

DICE as the mean over slices, with a 95 % interval from resampling whole patients:

| model | DICE [95 % CI] | empty predictions | HD95 over non-empty predictions (px) |
| --- | --- | --- | --- |
| PixelDRL-MG lite (this file) | {interval(test)} | {test['empty_predictions']} | {nonempty(test)} |
| {peer_label} | {interval(peer)} | {peer['empty_predictions']} | {nonempty(peer)} |

Mean ± SD per slice (HD95 in pixels, an empty prediction scored as the image diagonal):

| model | DICE | PPV | SEN | IoU | BIoU | HD95 |
| --- | --- | --- | --- | --- | --- | --- |
{row('PixelDRL-MG lite (this file)', test)}
{row(peer_label, peer)}
{PAPER_ROWS[name]}

The paper's figures (Liu et al., Sci. Rep. 2025, Table 2) are on its own test split, probably by slice (easier than
this split by patient), after far longer training on a GPU.

DICE after each step t = 1..{len(test['dice_per_step'])} (raw masks m(t), no post-processing): {step_dice}.

{curves_line}

## Every scoring of this dataset's test split by this project's benchmarks

{chr(10).join(f"- {d['date']}: {d['model']} (post-processing {d['postprocess']}, DICE {d['dice']:.4f})" for d in history)}

Earlier bundled models (shipped 2026-11-23, cards in git history) were scored once each on this test split then.

Regenerate: `python benchmarks/ship_models.py --model {name} --race {name}={race_name}{regen_peer}` (after `python benchmarks/race.py`); the scores of
files already scored are read back, not scored again.
"""
    (WEIGHTS / f"{name}.md").write_text(card)
    remember_runs(name, lite_run, peer_run, peer, peer_pp, peer_val, peer_info, peer_sha256,
                  peer_window, choices["peer_val_dice_by_window"])
    return {"model": name, "test": {k: test[k] for k in (*METRICS, "dice_ci95", "empty_predictions", "hd95_nonempty")},
            "peer": {k: peer[k] for k in (*METRICS, "dice_ci95", "empty_predictions", "hd95_nonempty")},
            "dice_per_step": test["dice_per_step"], "slices": test["slices"], "patients": test["patients"],
            "postprocess": lite_pp, "peer_postprocess": peer_pp, "cpu_minutes": round(lite_budget, 2),
            "peer_cpu_minutes": round(peer_budget, 2),
            **({"window": window} if window else {}), **({"peer_window": peer_window} if peer_window else {})}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", action="append", choices=sorted(MODELS),
                        help="ship only this model (repeatable; default: all); the others keep their files and entries")
    parser.add_argument("--race", action="append", default=[], metavar="MODEL=RACE",
                        help="ship MODEL from runs/race-RACE (default: runs/race-MODEL), e.g. lgg=lgg-refine")
    parser.add_argument("--peer", action="append", default=[], metavar="MODEL=RUN",
                        help="MODEL's peer: a run folder (default: runs/race-RACE/basicunet), or one that "
                             "benchmarks/results/gone_runs.json records")
    parser.add_argument("--note", action="append", default=[], metavar="MODEL=TEXT",
                        help="a paragraph for MODEL's card, under its status")
    parser.add_argument("--validate-only", action="store_true",
                        help="print what the ship would choose on the validation split, as JSON, and stop: no test "
                             "scoring, no file written (a ship rule is checked on this first)")
    args = parser.parse_args()
    names = list(dict.fromkeys(args.model or MODELS))
    races = {n: n for n in names} | dict(r.split("=", 1) for r in args.race)
    notes = dict(n.split("=", 1) for n in args.note)
    peers = {k: ROOT / v for k, v in (p.split("=", 1) for p in args.peer)}
    if args.validate_only:
        for name in names:
            choices = validation_choices(MODELS[name], *race_runs(races[name], peers.get(name)))
            del choices["loaded"], choices["peer_record"]
            for budget in ("cpu_minutes", "peer_cpu_minutes"):
                choices[budget] = round(choices[budget], 2)
            print(json.dumps({"model": name, **choices}))
        return
    path = RESULTS / "shipped_models.json"
    old = json.loads(path.read_text()) if path.exists() else {"models": []}
    kept = [m for m in old["models"] if m["model"] not in names]
    shipped = []
    for name in names:
        shipped.append(ship(name, MODELS[name], races[name], notes.get(name, ""), peers.get(name)))
        print(f"shipped {name}: {json.dumps(shipped[-1])}")
    now = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    for entry in shipped:
        entry["date"] = ship_date(entry, old["models"], now)
    models = sorted(kept + shipped, key=lambda m: list(MODELS).index(m["model"]))
    changed = models != old["models"]
    path.write_text(json.dumps({"date": now if changed else old["date"], "models": models}, indent=2) + "\n")


def ship_date(entry: dict, old_models: list[dict], now: str) -> str:
    """The date an entry was shipped: a rerun that regenerates the same entry (same file, same
    scores, read back) keeps the old date, so refreshing a card does not claim a new shipping."""
    for old in old_models:
        if old["model"] == entry["model"] and {k: v for k, v in old.items() if k != "date"} == entry:
            return old["date"]
    return now


if __name__ == "__main__":
    main()
