"""What the long benchmarks share: the `pixeldrl` command, training several runs at once
under one wall-clock budget, scoring a checkpoint through `pixeldrl evaluate --json`, and
reading a run's metrics log.

Runs train at the same time, one CPU thread each, so every run in one table shares the
cores under the same conditions (a run alone would get a whole core and read faster).
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results"
METRICS = ("dice", "ppv", "sen", "iou", "biou", "hd95")
GONE_RUNS = OUT / "gone_runs.json"
DATA = {"lgg": "../shared/data/lgg/kaggle_3m", "msd": "../shared/data/heart/Task02_Heart"}


def benchmark_parser(minutes: float) -> argparse.ArgumentParser:
    """The options every run-training benchmark takes; a script adds its own."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--dataset", required=True, choices=("lgg", "msd"))
    parser.add_argument("--data", default=None, help="default: the release under ../shared/data")
    parser.add_argument("--minutes", type=float, default=minutes, help="wall-clock budget of each run")
    parser.add_argument("--skip-train", action="store_true", help="score the runs that are there")
    parser.add_argument("--note", default="", help="a line for the results file")
    return parser


def pixeldrl(*args: str) -> list[str]:
    return [sys.executable, "-m", "napari_pixeldrl.training.cli", *map(str, args)]


def train_at_once(jobs: dict[Path, list[str]], command: str = "train", resume: bool = True) -> None:
    """Run every `pixeldrl train` (or ``finetune``) argument list at once (run folder ->
    arguments); each resumes its folder if it holds a run, or, with ``resume=False``,
    refuses to start (a table whose header says "N minutes each" must not hold runs that
    trained twice as long). Logs go to <run>.log."""
    held = [str(run) for run in jobs if (run / "training_state.safetensors").exists()]
    if held and not resume:
        raise SystemExit(f"these run folders already hold runs: {held}; remove them, or tabulate them with --skip-train")
    run_at_once({run: pixeldrl(command, *args, "--out", relative(run), "--no-progress",
                               *(["--resume"] if (run / "training_state.safetensors").exists() else []))
                 for run, args in jobs.items()})


def run_at_once(argvs: dict[Path, list[str]]) -> None:
    """Run each run folder's command at once, in the repository, its log in <run>.log; fail
    naming the logs of those that failed."""
    procs = {}
    for run, argv in argvs.items():
        run.parent.mkdir(parents=True, exist_ok=True)
        log = open(run.with_suffix(".log"), "a")
        procs[run] = subprocess.Popen(list(map(str, argv)), stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    failed = [str(run.with_suffix(".log")) for run, p in procs.items() if p.wait() != 0]
    if failed:
        raise SystemExit(f"training failed, see {failed}")


def relative(run: Path) -> Path:
    """A run folder relative to the repository (commands run there), so that the command a
    run folder records, and the model cards quote, reads the same on any machine."""
    return run.relative_to(ROOT) if run.is_absolute() and run.is_relative_to(ROOT) else run


def ended(run: Path) -> bool:
    """The run's last command ended with its work done or its budget spent (not cancelled,
    not killed)."""
    records = command_records(run)
    return bool(records) and records[-1].get("status") == "ended" and records[-1].get("reason") in ("done", "time_budget")


def next_command(run: Path, cpu_minutes: float, threads: int | str, fresh: list[str]) -> list[str] | None:
    """What a run folder needs next to spend its CPU budget: nothing (None) once its run ended
    or its budget is spent, the rest of its budget where it was stopped (:func:`resume_left`),
    else ``fresh``, the command that starts it."""
    if ended(run):
        return None
    if (run / "training_state.safetensors").exists():
        return resume_left(run, cpu_minutes, threads)
    return fresh


def resume_left(run: Path, cpu_minutes: float, threads: int | str) -> list[str] | None:
    """The command that continues a stopped run (cancelled or killed) for what is left of its
    CPU budget of ``cpu_minutes``, as :func:`command_cpu_minutes` counts what it spent;
    None when nothing is left."""
    left = float(cpu_minutes) - sum(m for _, m in command_cpu_minutes(run))
    if left < 0.01:
        return None
    return pixeldrl("train", "--resume", "--out", relative(run), "--threads", threads, "--cpu-budget", f"{left:.2f}",
                    "--no-progress")


def evaluate(checkpoint: Path | str, dataset: str, data: str, split: str, out: Path,
             postprocess: str = "none", threads: int = 2, reuse: bool = False, extra: tuple[str, ...] = ()) -> dict:
    """`pixeldrl evaluate --json` on one split; the report folder goes to ``out``
    (``postprocess="auto"``: the one the checkpoint carries). With ``reuse``, a report in
    ``out`` made by the same request from the same checkpoint file is read back instead
    (rescoring a table must not cost another pass over the test split). ``extra``: more
    options of `pixeldrl evaluate` (e.g. --start-from box:10)."""
    request = {"checkpoint": str(checkpoint), "dataset": dataset, "data": str(data), "split": split, "postprocess": postprocess}
    if extra:
        request["extra"] = list(extra)
    path = Path(checkpoint) if Path(checkpoint).is_absolute() else ROOT / checkpoint  # the command runs in ROOT
    if path.exists():  # the file's content, so that the same weights rewritten are not scored again
        request["checkpoint_sha256"] = file_sha256(path)
    sidecar = Path(out) / "scored.json"
    if reuse and sidecar.exists():
        before = json.loads(sidecar.read_text())
        if before.get("request") == request:
            return before["result"]
    done = subprocess.run(
        pixeldrl("evaluate", "--checkpoint", checkpoint, "--dataset", dataset, "--data", data, "--split", split,
                 "--json", "--out", out, "--threads", threads, "--postprocess", postprocess, *extra),
        capture_output=True, text=True, cwd=ROOT,
    )
    if done.returncode != 0:
        raise SystemExit(f"scoring {checkpoint} on {split} failed (the trained runs are kept):\n{done.stderr}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    sidecar.write_text(json.dumps({"request": request, "result": result}, indent=2) + "\n")
    return result


def paired_difference(a: list[dict], a_col: str, b: list[dict], b_col: str,
                      key=lambda r: (r["patient"], r["slice"])) -> dict:
    """Mean of ``a[a_col] - b[b_col]`` slice by slice over the same slices (rows of
    per_slice.csv; ``key`` names a slice and starts with its patient) and its 95 % interval
    when whole patients are resampled: the two masks of a slice are scored on the same truth,
    so the paired difference is far less noisy than the two means' own intervals."""
    from napari_pixeldrl.training.metrics import patient_bootstrap

    left = {key(r): float(r[a_col]) for r in a}
    right = {key(r): float(r[b_col]) for r in b}
    if set(left) != set(right):
        raise SystemExit("the two arms score different slices")
    keys = sorted(left)
    diff = [left[k] - right[k] for k in keys]
    lo, hi = patient_bootstrap(diff, [k[0] for k in keys])
    return {"mean": sum(diff) / len(diff), "ci95": [lo, hi], "patients": len({k[0] for k in keys}), "slices": len(keys)}


def file_sha256(path: Path) -> str:
    import hashlib

    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


TEST_SCORINGS = OUT / "test_scorings.jsonl"  # every time a benchmark scored a test split


def log_test_scoring(model: str, dataset: str, postprocess: str, sha256: str, dice: float) -> None:
    """One line of test_scorings.jsonl, which the model cards list."""
    import datetime as dt

    record = {"date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "model": model,
              "dataset": dataset, "split": "test", "postprocess": postprocess, "sha256": sha256, "dice": round(dice, 4)}
    with open(TEST_SCORINGS, "a") as f:
        f.write(json.dumps(record) + "\n")


def json_lines(path: Path) -> list[dict]:
    """The records of a JSON-lines file ([] if it does not exist)."""
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def metric_rows(run: Path) -> list[dict]:
    """A run's metrics.jsonl, one dict per epoch ([] before the first)."""
    return json_lines(Path(run) / "metrics.jsonl")


def run_train_config(run: Path):
    """The training config a run recorded, read as the trainer reads it on --resume."""
    from napari_pixeldrl.training.train_config import TrainConfig

    return TrainConfig.from_dict(json.loads((Path(run) / "config.json").read_text())["train"])


def training_batches(dataset: str, train, count: int) -> list[tuple]:
    """``count`` training batches of 2 (numpy image, truth) cut as the trainer of config ``train``
    cuts them from its training split (box-zoom aside), the same ones every call (seed 12345)."""
    from napari_pixeldrl.training.data import load_dataset
    from napari_pixeldrl.training.data.splits import select_split
    from napari_pixeldrl.training.loader import CropSettings, epoch_batches

    split = select_split(load_dataset(dataset, DATA[dataset]), train.data, "train")
    settings = CropSettings.of(train)
    batches = epoch_batches(split.images, split.masks, batch_size=2, settings=settings, seed=12345, epoch=0)
    return [b for _, b in zip(range(count), batches)]


def gone_run(run: Path | None) -> dict | None:
    """The record of a run folder that is no longer here (``gone_runs.json``: its CPU minutes
    and the steps behind it, as counted when it was), or None: also for a folder that is here."""
    if run is None or (Path(run) / "commands.jsonl").exists() or not GONE_RUNS.exists():
        return None
    run = Path(run)
    key = (run.relative_to(ROOT) if run.is_absolute() and run.is_relative_to(ROOT) else run).as_posix()
    return json.loads(GONE_RUNS.read_text()).get(key)


def command_records(run: Path) -> list[dict]:
    """A run's commands.jsonl: a "started" and an "ended" record per command that trained it;
    for a gone run (:func:`gone_run`), one ended record holding its recorded CPU minutes."""
    gone = gone_run(run)
    if gone:
        return [{"status": "started", "started": "recorded"},
                {"status": "ended", "started": "recorded", "cpu_minutes": gone["cpu_minutes"]}]
    return json_lines(Path(run) / "commands.jsonl")


def recorded_commands(run: Path, ended_only: bool = False) -> list[str]:
    """The commands that trained a run folder, as it records them: those that ended, each
    time it ran (``ended_only``), or every distinct one, a killed one included."""
    records = command_records(run)
    if ended_only:
        return [shlex.join(r["argv"]) for r in records if r.get("status") == "ended" and r.get("argv")]
    return list(dict.fromkeys(shlex.join(r["argv"]) for r in records if r.get("argv")))


class UncountedStart(SystemExit):
    """A fine-tune whose starting checkpoint's training cannot be counted here."""


def run_chain(run: Path, uncounted_ok: bool = False) -> list[Path]:
    """The run folders behind a run's weights, oldest first, ending with ``run``: a fine-tune
    (its checkpoint's ``init_checkpoint``) continues the run named by its starting
    checkpoint's ``source_run`` (which ship_models.py writes into a bundled model), and so on.
    A starting checkpoint whose run is not here raises :class:`UncountedStart` (its training
    cannot be counted), or, with ``uncounted_ok``, ends the chain where it is known
    (:func:`uncounted_training` says what is missing)."""
    chain = [Path(run)]
    if gone_run(run):  # its record counts everything behind it
        return chain
    while True:
        start, base = _start_and_its_run(chain[0])
        if not start:
            return chain
        missing = _uncounted(chain[0], start, base)
        if missing:
            if uncounted_ok:
                return chain
            raise UncountedStart(missing)
        if base in chain:
            raise SystemExit(f"{base} appears twice in the runs behind {run}")
        chain.insert(0, base)
        if gone_run(base):  # its record counts everything behind it
            return chain


def checkpoint_info(checkpoint: str | Path) -> dict:
    """The ``info`` of a checkpoint's header: a path relative to the repository (where the
    commands run), any other path, or a bundled model's name."""
    from napari_pixeldrl.model.checkpoint import read_header

    return read_header(ROOT / checkpoint if (ROOT / checkpoint).exists() else checkpoint)["info"]


def start_checkpoint(run: Path) -> str | None:
    """The checkpoint a run fine-tuned (its best checkpoint's ``init_checkpoint``), or None."""
    data = checkpoint_info(Path(run) / "checkpoint_best.safetensors").get("data") or {}
    return data.get("init_checkpoint") if isinstance(data, dict) else None


def _start_and_its_run(run: Path) -> tuple[str | None, Path | None]:
    """A run's starting checkpoint and the run it came from (None if unknown): the run its
    ``source_run`` names, or else the run folder it lies in (a fine-tune of another run's
    checkpoint_best.safetensors: that run's whole training counts, also what came after the
    best epoch)."""
    start = start_checkpoint(run)
    if not start:
        return None, None
    source = checkpoint_info(start).get("source_run")
    if source:
        return start, ROOT / source.split(" (")[0]
    folder = (ROOT / start).parent
    return start, (folder if (folder / "commands.jsonl").exists() else None)


def _uncounted(run: Path, start: str, base: Path | None) -> str | None:
    """Why the training of ``start``, which ``run`` fine-tunes, cannot be counted here, or None."""
    run = Path(run).relative_to(ROOT) if Path(run).is_relative_to(ROOT) else run
    if base is None:
        return f"{run} fine-tunes {start}, which names no run it came from: its CPU time cannot be counted"
    if not (base / "commands.jsonl").exists() and not gone_run(base):
        return (f"{run} fine-tunes {start}, trained in {base.relative_to(ROOT)}, which holds no commands.jsonl here: "
                "its CPU time cannot be counted")
    return None


def uncounted_training(run: Path) -> str | None:
    """Why the training behind a run's weights is not all counted here (the first link of
    its chain fine-tunes a checkpoint whose run is not here), or None."""
    first = run_chain(run, uncounted_ok=True)[0]
    gone = gone_run(first)
    if gone:  # what was not counted when it was recorded, if anything
        return gone.get("uncounted")
    start, base = _start_and_its_run(first)
    return _uncounted(first, start, base) if start else None


def training_steps(run: Path) -> list[str]:
    """The commands behind a run's weights, oldest first: those of each run it continues
    (:func:`run_chain`), with the starting checkpoint of each fine-tune and how it was made."""
    missing = uncounted_training(run)
    steps = [f"**not counted here**: {missing}"] if missing else []
    for link in run_chain(run, uncounted_ok=True):
        gone = gone_run(link)
        if gone:  # a run folder no longer here: the steps recorded when it was
            steps += gone["steps"] + [f"(`{link.relative_to(ROOT)}`: {gone['cpu_minutes']} CPU-min, as recorded in "
                                      f"{gone['recorded_in']}; benchmarks/results/gone_runs.json)"]
            continue
        start = start_checkpoint(link)
        if start:
            steps += starting_checkpoint(start)
        steps += [f"`{c}`" for c in recorded_commands(link, ended_only=True)]
    return steps


def starting_checkpoint(start: str) -> list[str]:
    """How a fine-tune's starting checkpoint was made: each widening of a run's checkpoint,
    oldest first (files written before they listed them: the last one only)."""
    info = checkpoint_info(start)
    widenings = info.get("widenings")
    if widenings:
        made = "; then ".join(f"`{w['from']}`" + (f" (epoch {w['epoch']})" if w.get("epoch") is not None else "")
                              + f": {w['what']}, by `{w['by']}`" for w in widenings)
        return [f"starting checkpoint `{start}` ({made})"]
    made, by = info.get("widened_from"), info.get("widened_by") or widened_by_before(info.get("widened_from"))
    return [f"starting checkpoint `{start}`" + (f" ({made}, by `{by}`)" if made else "")]


def widened_by_before(made: str | None) -> str | None:
    """The script that widened a checkpoint written before checkpoints named it (only
    add_prototypes.py and add_first_step_head.py wrote them then)."""
    if not made:
        return None
    return f"python benchmarks/{'add_first_step_head.py' if 'first-step head' in made else 'add_prototypes.py'}"


def remember_run(run: Path, recorded_in: str, **more) -> None:
    """Record a run in gone_runs.json as it is counted now (its chain's CPU minutes and steps,
    what of it is not counted, and ``more``), so that a later checkout without the folder
    counts and describes it the same (:func:`gone_run`)."""
    record = {"cpu_minutes": round(cpu_minutes_spent(run, uncounted_ok=True), 2), "steps": training_steps(run), **more,
              "recorded_in": recorded_in}
    missing = uncounted_training(run)
    if missing:
        record["uncounted"] = missing
    records = json.loads(GONE_RUNS.read_text()) if GONE_RUNS.exists() else {}
    records[Path(run).relative_to(ROOT).as_posix()] = record
    GONE_RUNS.write_text(json.dumps(records, indent=2) + "\n")


def cpu_minutes_spent(run: Path, uncounted_ok: bool = False) -> float:
    """Process CPU minutes behind a run's weights: every command that trained the run folder
    and the runs it continues (:func:`run_chain`), as :func:`command_cpu_minutes` counts
    them; with ``uncounted_ok``, only those of the runs that are here."""
    return chain_cpu_minutes(run_chain(run, uncounted_ok))


def chain_cpu_minutes(chain: list[Path]) -> float:
    """Process CPU minutes of the run folders of a :func:`run_chain`."""
    return sum(m for link in chain for _, m in command_cpu_minutes(link))


def command_cpu_minutes(run: Path) -> list[tuple[dict, float]]:
    """Each command that trained a run folder, in order, with its CPU minutes: the end
    record and its ``cpu_minutes`` (partial epochs included), or, for a command killed before
    its end record, its start record and the CPU time of the whole epochs it finished (in
    the weights: a resume continues after them; its partial epoch is not), read from
    metrics.jsonl: the epochs after its start and up to the next command's start."""
    records = command_records(run)
    ends = {r.get("started"): r for r in records if r.get("status") == "ended"}
    starts = [r for r in records if r.get("status") == "started"]
    rows = metric_rows(run)
    spans = []
    for i, start in enumerate(starts):
        end = ends.get(start.get("started"))
        if end is not None:
            spans.append((end, float(end.get("cpu_minutes") or 0)))
            continue
        first = start.get("start_epoch", 0)
        last = starts[i + 1].get("start_epoch", 0) if i + 1 < len(starts) else None
        seconds = sum(r.get("cpu_seconds", 0.0) for r in rows if r["epoch"] > first and (last is None or r["epoch"] <= last))
        spans.append((start, seconds / 60))
    return spans


def killed_cpu_minutes(run: Path) -> float:
    """The CPU minutes :func:`command_cpu_minutes` counts for commands killed before their end record."""
    return sum(m for record, m in command_cpu_minutes(run) if record.get("status") != "ended")


def validations(run: Path) -> list[tuple[int, float, float]]:
    """(epoch, cumulative CPU minutes, validation DICE) for each validated epoch."""
    points, cpu = [], 0.0
    for r in metric_rows(run):
        cpu += r.get("cpu_seconds", 0.0) / 60
        if r.get("val_dice") is not None:
            points.append((r["epoch"], cpu, r["val_dice"]))
    return points


def validation_curve(run: Path) -> list[tuple[float, float]]:
    """(cumulative CPU minutes, validation DICE) per validation: each epoch's, and the one at
    each stage's budget stop (at the CPU time the stages had spent by then). A fine-tune
    continues the curve of the run it started from (``run_chain``); where that run is not
    here, the curve starts at the fine-tune's first minute (the results file says so)."""
    points, before = [], 0.0
    for link in run_chain(run, uncounted_ok=True):
        points += [(before + cpu, dice) for _, cpu, dice in validations(link)]
        for record, minutes in command_cpu_minutes(link):
            before += minutes
            if record.get("stop_val_dice") is not None:
                points.append((before, record["stop_val_dice"]))
    return sorted(points)


def history(run: Path) -> dict:
    """Epochs, training seconds and validation DICE per epoch of a run (metrics.jsonl), and
    the best validation DICE with the whole epochs behind it, from the header of the
    checkpoint that is scored (a time-budget stop may have validated weights between
    epochs, which the per-epoch log does not hold)."""
    rows = metric_rows(run)
    info = checkpoint_info(Path(run) / "checkpoint_best.safetensors")
    return {
        "epochs": len(rows),
        "train_seconds": round(sum(r.get("seconds", 0) for r in rows), 1),
        "val_dice_per_epoch": [r.get("val_dice") for r in rows],
        # With --ema-decay, val_dice is the moving average's and this the raw weights' (else None).
        "val_dice_raw_per_epoch": [r.get("val_dice_raw") for r in rows],
        "best_val_dice": info.get("val_dice"),
        "best_epoch": info.get("epoch"),
        "best_validated_at_stop": bool(info.get("validated_at_stop")),
    }


def best_cell(s: dict) -> str:
    """'0.5123 (4)': best validation DICE and its epoch; '(4+)' when validated at a stop after epoch 4."""
    return f"{s['best_val_dice']:.4f} ({s['best_epoch']}{'+' if s['best_validated_at_stop'] else ''})"


def metric_cells(s: dict) -> list[str]:
    """Table 2 cells, mean ± sd."""
    return [f"{s[k]:.4f} ± {s['sd'][k]:.4f}" if k != "hd95" else f"{s[k]:.2f} ± {s['sd'][k]:.2f}" for k in METRICS]


def load_text(load: float | None) -> str:
    """The load average when training ended, as results files print it."""
    return "not recorded (the runs were trained outside this script)" if load is None else f"{load:.2f}"


def provenance(results: Path, script: str, skip_train: bool, load: float | None) -> dict:
    """The command that trained the runs (and the load when it ended). Rescoring with
    --skip-train keeps the training command of the earlier results file and adds its own."""
    now = f"python benchmarks/{script} " + shlex.join(sys.argv[1:])
    if skip_train and results.exists():
        old = json.loads(results.read_text())
        return {"command": old["command"], "rescored_by": now, "load_at_end_of_training": old.get("load_at_end_of_training")}
    return {"command": now, "load_at_end_of_training": load}


def score_test(runs: dict, dataset: str, data: str, reuse: bool) -> dict:
    """Each run's best checkpoint scored once on the test split (no post-processing), with its history."""
    return {key: {**evaluate(run / "checkpoint_best.safetensors", dataset, data, "test", run / "eval_test", reuse=reuse),
                  **history(run)} for key, run in runs.items()}


def header(title: str, result: dict) -> list[str]:
    """Title, command (and the rescoring command) and date lines of a results file."""
    rescored = f" (scored by `{result['rescored_by']}`)" if "rescored_by" in result else ""
    return [f"# {title}", "", f"Command: `{result['command']}`{rescored}  ", f"Date: {result['date']}  "]


def write_results(name: str, result: dict, lines: list[str]) -> None:
    """benchmarks/results/<name>.json and .md; the table is printed too."""
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    (OUT / f"{name}.md").write_text("\n".join(lines))
    print("\n".join(lines))
