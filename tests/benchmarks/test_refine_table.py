"""benchmarks/refine.py's paired comparison of a refining variant with its one-step control."""

import csv
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
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
