"""benchmarks/fold_epochs.py: each refining stage against the control after the same epoch, only
on the folds where both reached it, and their CPU seconds per epoch as a ratio."""

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import fold_epochs  # noqa: E402


def write_log(root: Path, chain: str, stage: str, dice: list[float], cpu: float) -> None:
    run = root / "runs" / f"chain-{chain}" / stage
    run.mkdir(parents=True)
    rows = [{"epoch": e + 1, "val_dice": d, "cpu_seconds": cpu} for e, d in enumerate(dice)]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_refining_stages_meet_the_control_at_equal_epochs(monkeypatch, tmp_path):
    for k, chain in enumerate(fold_epochs.CHAINS_USED):
        write_log(tmp_path, chain, "control", [0.70, 0.72, 0.73], cpu=300)
        # folds 0 and 1 reach a third epoch, folds 2 and 3 stop after two
        write_log(tmp_path, chain, "refine", [0.71, 0.70, 0.75][: 3 if k < 2 else 2], cpu=390)
    write_log(tmp_path, fold_epochs.CHAINS_USED[0], "refine-t2", [0.7], cpu=1)  # one fold only: left out
    monkeypatch.setattr(fold_epochs, "ROOT", tmp_path)
    written = {}
    monkeypatch.setattr(fold_epochs, "write_results", lambda name, result, lines: written.update({name: (result, lines)}))
    monkeypatch.setattr(sys, "argv", ["fold_epochs.py"])
    fold_epochs.main()
    result, lines = written["fold_epochs_heart"]
    record = result["equal_epochs"]["refine"]
    assert record["epoch 1"] == pytest.approx([0.01] * 4)
    assert record["epoch 2"] == pytest.approx([-0.02] * 4)
    assert record["epoch 3"] == pytest.approx([0.02] * 2)
    assert record["cpu_ratio"] == pytest.approx(1.3)
    assert "refine-t2" not in result["equal_epochs"]


def test_a_fold_without_its_control_log_is_named(monkeypatch, tmp_path):
    monkeypatch.setattr(fold_epochs, "ROOT", tmp_path)
    monkeypatch.setattr(sys, "argv", ["fold_epochs.py"])
    with pytest.raises(SystemExit, match="heart-valfold0/control"):
        fold_epochs.main()
