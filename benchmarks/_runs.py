"""What the long benchmarks share: the `pixeldrl` command, training several runs at once
under one wall-clock budget, scoring a checkpoint through `pixeldrl evaluate --json`, and
reading a run's metrics log.

Runs train at the same time, one CPU thread each, so every run in one table shares the
cores under the same conditions (a run alone would get a whole core and read faster).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results"
METRICS = ("dice", "ppv", "sen", "iou", "biou", "hd95")
DATA = {"lgg": "../shared/data/lgg/kaggle_3m", "msd": "../shared/data/heart/Task02_Heart"}


def pixeldrl(*args: str) -> list[str]:
    return [sys.executable, "-m", "napari_pixeldrl.training.cli", *map(str, args)]


def train_at_once(jobs: dict[Path, list[str]], command: str = "train") -> None:
    """Run every `pixeldrl train` (or ``finetune``) argument list at once (run folder ->
    arguments); each resumes its folder if it holds a run. Logs go to <run>.log."""
    procs = {}
    for run, args in jobs.items():
        run.parent.mkdir(parents=True, exist_ok=True)
        resume = ["--resume"] if (run / "training_state.safetensors").exists() else []
        log = open(run.with_suffix(".log"), "a")
        procs[run] = subprocess.Popen(pixeldrl(command, *args, "--out", run, "--no-progress", *resume),
                                      stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    failed = [str(run.with_suffix(".log")) for run, p in procs.items() if p.wait() != 0]
    if failed:
        raise SystemExit(f"training failed, see {failed}")


def evaluate(checkpoint: Path | str, dataset: str, data: str, split: str, out: Path,
             postprocess: str = "none", threads: int = 2) -> dict:
    """`pixeldrl evaluate --json` on one split; the report folder goes to ``out``
    (``postprocess="auto"``: the one the checkpoint carries)."""
    done = subprocess.run(
        pixeldrl("evaluate", "--checkpoint", checkpoint, "--dataset", dataset, "--data", data, "--split", split,
                 "--json", "--out", out, "--threads", threads, "--postprocess", postprocess),
        capture_output=True, text=True, cwd=ROOT,
    )
    if done.returncode != 0:
        raise SystemExit(f"scoring {checkpoint} on {split} failed (trained runs are kept; rerun with --skip-train):\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def history(run: Path) -> dict:
    """Epochs, training seconds, validation DICE per epoch and the best epoch of a run."""
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return {
        "epochs": len(rows),
        "train_seconds": round(sum(r.get("seconds", 0) for r in rows), 1),
        "val_dice_per_epoch": [r.get("val_dice") for r in rows],
        "best_epoch": max(rows, key=lambda r: r.get("val_dice") or -1).get("epoch") if rows else None,
    }


def metric_cells(s: dict) -> list[str]:
    """Table 2 cells, mean ± sd."""
    return [f"{s[k]:.4f} ± {s['sd'][k]:.4f}" if k != "hd95" else f"{s[k]:.2f} ± {s['sd'][k]:.2f}" for k in METRICS]
