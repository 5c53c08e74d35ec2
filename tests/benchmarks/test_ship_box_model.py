"""benchmarks/ship_box_model.py: the rule's conditions are checked on validation, the
post-processing is chosen there, and a candidate that fails ships nothing and scores no test split."""

import sys
from argparse import Namespace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import ship_box_model  # noqa: E402


def scores(dice, empty=0):
    return {"dice": dice, "dice_ci95": [dice - 0.02, dice + 0.02], "empty_predictions": empty, "hd95_nonempty": 3.0,
            "slices": 10, "patients": 2, "dice_per_step": [dice]}


def fake_evaluate(table, calls):
    def evaluate(checkpoint, dataset, data, split, out, **kw):
        calls.append((str(checkpoint), split, Path(out).name))
        return table[Path(out).name]
    return evaluate


def test_validation_chooses_the_post_processing_and_checks_each_condition(monkeypatch, tmp_path):
    calls = []
    table = {"val-none": scores(0.86), "val-largest-component": scores(0.88, empty=1),
             "val-baseline-ones": scores(0.82, empty=1), "val-baseline-box": scores(0.83)}
    monkeypatch.setattr(ship_box_model, "evaluate", fake_evaluate(table, calls))
    args = Namespace(dataset="lgg", baseline="lgg", grow=10, gain=0.05)
    chosen, _, ours, conditions = ship_box_model.validate(args, tmp_path / "best.safetensors", tmp_path)
    assert chosen == "largest-component" and ours["dice"] == 0.88
    assert [ok for _, ok in conditions] == [True, True, True]
    assert {split for _, split, _ in calls} == {"val"}  # validation only
    table["val-largest-component"] = scores(0.865)
    chosen, _, _, conditions = ship_box_model.validate(args, tmp_path / "best.safetensors", tmp_path)
    assert chosen == "largest-component" and [ok for _, ok in conditions] == [False, True, True]  # 0.865 < 0.82 + 0.05
    table["val-none"] = scores(0.865)
    assert ship_box_model.validate(args, tmp_path / "best.safetensors", tmp_path)[0] == "none"  # a tie keeps none
    args.gain = 0.045  # a rule that asks the margin shown (rule_box-zoom6.md)
    assert [ok for _, ok in ship_box_model.validate(args, tmp_path / "best.safetensors", tmp_path)[3]] == [True, True, True]


def test_a_failing_candidate_ships_nothing(monkeypatch, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "checkpoint_best.safetensors").write_bytes(b"")
    table = {"val-none": scores(0.84), "val-largest-component": scores(0.84),
             "val-baseline-ones": scores(0.82), "val-baseline-box": scores(0.83)}
    calls, written = [], []
    monkeypatch.setattr(ship_box_model, "WEIGHTS", tmp_path)  # lgg-box is bundled: a candidate of that name not yet
    monkeypatch.setattr(ship_box_model, "evaluate", fake_evaluate(table, calls))
    monkeypatch.setattr(ship_box_model, "chain_cpu_minutes", lambda chain: 40.0)
    monkeypatch.setattr(ship_box_model, "run_chain", lambda run, uncounted_ok=False: [run])
    monkeypatch.setattr(ship_box_model, "write_results", lambda name, result, lines: written.append((name, result, lines)))
    monkeypatch.setattr(ship_box_model, "ship", lambda *a: (_ for _ in ()).throw(AssertionError("shipped")))
    started = {"data": {"init_checkpoint": "model/weights/lgg.safetensors"}}
    monkeypatch.setattr(ship_box_model, "checkpoint_info", lambda checkpoint: started)
    monkeypatch.setattr(sys, "argv", ["ship_box_model.py", "--name", "lgg-box", "--run", str(run), "--dataset", "lgg",
                                      "--baseline", "lgg"])
    ship_box_model.main()
    assert [name for name, _, _ in written] == ["box_lgg-box-val"] and written[0][1]["passed"] is False
    assert all(split == "val" for _, split, _ in calls)
    assert any("40.0 CPU-min of fine-tuning from `lgg`" in line for line in written[0][2])
    # A peer trained from scratch on the boxes (no starting checkpoint) is said to be one.
    started["data"] = {"init_checkpoint": None}
    ship_box_model.main()
    assert any("40.0 CPU-min from scratch on the boxes" in line for line in written[1][2])


def test_a_gone_run_ships_its_carried_file(monkeypatch, tmp_path):
    """A run folder that a later checkout lacks: its best checkpoint is the file gone_runs.json
    says it was carried as."""
    monkeypatch.setattr(ship_box_model, "gone_run", lambda run: {"carried_as": "benchmarks/carry/box/x.safetensors"})
    assert ship_box_model.best_checkpoint(Path("runs/box/x")) == ship_box_model.ROOT / "benchmarks/carry/box/x.safetensors"
    monkeypatch.setattr(ship_box_model, "gone_run", lambda run: None)
    assert ship_box_model.best_checkpoint(tmp_path) == tmp_path / "checkpoint_best.safetensors"


def test_a_shipped_name_is_replaced_only_when_asked_with_results_of_its_own(monkeypatch, tmp_path):
    weights = tmp_path / "weights"
    weights.mkdir()
    (weights / "heart-box.safetensors").write_bytes(b"")
    monkeypatch.setattr(ship_box_model, "WEIGHTS", weights)
    base = ["ship_box_model.py", "--name", "heart-box", "--run", str(tmp_path / "run"), "--dataset", "msd", "--baseline", "heart"]
    for extra in ([], ["--replace"], ["--results", "heart-box-2"]):
        monkeypatch.setattr(sys, "argv", [*base, *extra])
        try:
            ship_box_model.main()
        except SystemExit as exc:
            assert "--replace" in str(exc)
        else:
            raise AssertionError(f"{extra}: a shipped model would be replaced")
