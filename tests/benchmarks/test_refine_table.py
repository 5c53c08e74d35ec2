"""benchmarks/refine.py: the paired comparison of a refining variant with its one-step control,
and which variants train again."""

import csv
import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import _runs  # noqa: E402
import refine  # noqa: E402
from refine import against_control  # noqa: E402


def write(path, rows):
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["patient", "slice", "dice_t1", "dice_t3"])
        w.writeheader()
        w.writerows(rows)
    return path


def test_final_mask_against_the_control_is_paired_by_slice(tmp_path):
    # The control's slices listed in another order: pairing goes by (patient, slice).
    control = [{"patient": p, "slice": s, "dice_t1": 0.5 + 0.1 * s, "dice_t3": 0} for p in "ab" for s in range(3)]
    ours = [{**r, "dice_t1": 0.0, "dice_t3": r["dice_t1"] + (0.02 if r["patient"] == "a" else 0.04)} for r in control]
    d = against_control(write(tmp_path / "ours.csv", ours), write(tmp_path / "control.csv", control[::-1]), steps=3)
    assert d["mean"] == pytest.approx(0.03) and (d["patients"], d["slices"]) == (2, 6)
    lo, hi = d["ci95"]
    assert 0.02 - 1e-9 <= lo < 0.03 < hi <= 0.04 + 1e-9  # resampling patients: between the two patients' differences
    with pytest.raises(SystemExit, match="different slices"):
        against_control(write(tmp_path / "ours.csv", ours[:-1]), tmp_path / "control.csv", steps=3)


def test_results_files_say_when_the_load_was_not_recorded():
    from _runs import load_text
    assert load_text(2.345) == "2.35"
    assert "not recorded" in load_text(None)  # rescored or hand-trained runs, not a fake figure


def test_an_ended_variant_is_kept_a_cancelled_one_resumes_with_its_budget_left(tmp_path, monkeypatch):
    monkeypatch.setattr(_runs, "ROOT", tmp_path)
    base = tmp_path / "runs" / "refine-x"
    runs = {n: base / n for n in ("done", "cancelled", "new")}
    for name, minutes, reason in (("done", 20.0, "time_budget"), ("cancelled", 8.5, "cancelled")):
        runs[name].mkdir(parents=True)
        (runs[name] / "commands.jsonl").write_text("".join(json.dumps(r) + "\n" for r in (
            {"argv": ["pixeldrl"], "started": "t0", "status": "started", "start_epoch": 0},
            {"argv": ["pixeldrl"], "started": "t0", "status": "ended", "cpu_minutes": minutes, "reason": reason})))
        (runs[name] / "training_state.safetensors").write_bytes(b"x")
    variants = {"done": ["--t-max", "1"], "cancelled": ["--t-max", "3"], "new": ["--t-max", "3"]}
    todo = refine.training_commands(runs, variants, ["--threads", "1", "--cpu-budget", "20"], "finetune", 20.0)
    assert set(todo) == {runs["cancelled"], runs["new"]}
    resumed = [str(a) for a in todo[runs["cancelled"]]]
    assert "--resume" in resumed and resumed[resumed.index("--cpu-budget") + 1] == "11.50"
    assert resumed[resumed.index("--out") + 1] == "runs/refine-x/cancelled"
    new = [str(a) for a in todo[runs["new"]]]
    assert "finetune" in new and "--resume" not in new and new[new.index("--cpu-budget") + 1] == "20"


def test_a_linked_run_folder_is_never_trained_from_here(tmp_path, monkeypatch):
    monkeypatch.setattr(_runs, "ROOT", tmp_path)
    stage = tmp_path / "runs" / "chain-x" / "refine"
    stage.mkdir(parents=True)
    link = tmp_path / "runs" / "refine-x" / "v"
    link.parent.mkdir(parents=True)
    link.symlink_to(stage)
    with pytest.raises(SystemExit, match="--skip-train"):
        refine.training_commands({"v": link}, {"v": ["--t-max", "3"]}, [], "finetune", 20.0)


def test_a_results_file_of_another_experiment_is_not_overwritten(tmp_path):
    # A rescoring keeps the earlier file's training command: another experiment under the same
    # --name would be tabulated under that command.
    variants = {"head": ["--t-max", "3"], "one-step control": ["--t-max", "1"]}
    results = tmp_path / "refine_x.json"
    assert refine.other_experiment(results, variants, "a.safetensors") is None  # nothing there yet
    results.write_text(json.dumps({"command": "python benchmarks/refine.py --name x --checkpoint a.safetensors",
                                   "variants": {n: {"options": o} for n, o in variants.items()}}))
    assert refine.other_experiment(results, variants, "a.safetensors") is None  # the same one, rescored
    assert "fine-tuned a.safetensors" in refine.other_experiment(results, variants, "b.safetensors")
    assert "variants" in refine.other_experiment(results, {**variants, "head": ["--t-max", "2"]}, "a.safetensors")
    assert "variants" in refine.other_experiment(results, {"head": ["--t-max", "3"]}, "a.safetensors")
