"""benchmarks/val_folds.py: each fold's arms are scored on that fold's validation patients and
pooled, each patient once; the paired differences are slice by slice."""

import csv
import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import val_folds  # noqa: E402
from _helpers import write_per_slice  # noqa: E402

# fold -> patients it validates; each arm's DICE per step on them
FOLDS = {"heart-valfold0": ["la_003", "la_007"], "heart-valfold1": ["la_010"]}
DICE = {"onestep": [0.70], "control": [0.72], "refine": [0.60, 0.74, 0.75]}


def fake_evaluate(checkpoint, dataset, data, split, out, **kw):
    checkpoint = Path(checkpoint)
    if checkpoint.parent.parent.name == "carry":  # benchmarks/carry/<chain>/<stage>.safetensors
        chain, stage = checkpoint.parent.name, checkpoint.stem
    else:  # runs/chain-<chain>/<stage>/checkpoint_best.safetensors
        chain, stage = checkpoint.parent.parent.name.removeprefix("chain-"), checkpoint.parent.name
    assert split == "val"
    rows = [{"patient": p, "slice": z, **{f"dice_t{t + 1}": d + 0.01 * z for t, d in enumerate(DICE[stage])},
             "dice": DICE[stage][-1] + 0.01 * z + (0.02 if kw.get("postprocess", "none") != "none" else 0.0),
             "empty_pred": "False"}
            for p in FOLDS[chain] for z in range(2)]
    Path(out).mkdir(parents=True, exist_ok=True)
    write_per_slice(Path(out) / "per_slice.csv", rows)
    return {}


def carried_under(root: Path):
    """chain.carried with benchmarks/carry/ under ``root`` (the repository's own may hold these folds)."""
    return lambda base, stage: root / "benchmarks" / "carry" / base.name.removeprefix("chain-") / f"{stage.name}.safetensors"


def test_folds_are_pooled_each_patient_once(monkeypatch, tmp_path):
    monkeypatch.setattr(val_folds, "ROOT", tmp_path)
    monkeypatch.setattr(val_folds, "ended", lambda run: True)
    monkeypatch.setattr(val_folds, "evaluate", fake_evaluate)
    written = {}
    monkeypatch.setattr(val_folds, "write_results", lambda name, result, lines: written.update({name: result}))
    monkeypatch.setattr(sys, "argv", ["val_folds.py", "--chains", *FOLDS])
    val_folds.main()
    result = json.loads(json.dumps(written["valfolds_heart"]))
    final = result["scores"]["refining, final (dice_t3)"]
    assert final["patients"] == 3 and final["slices"] == 6
    assert final["dice"] == pytest.approx(0.755)
    assert result["paired"]["refining final - control"]["mean"] == pytest.approx(0.03)
    assert result["paired"]["refining final - its m(1)"]["mean"] == pytest.approx(0.15)


def test_a_fold_not_trained_to_the_end_is_named(monkeypatch, tmp_path):
    monkeypatch.setattr(val_folds, "ROOT", tmp_path)
    monkeypatch.setattr(val_folds, "carried", carried_under(tmp_path))  # nothing carried either
    monkeypatch.setattr(val_folds, "ended", lambda run: False)
    monkeypatch.setattr(sys, "argv", ["val_folds.py", "--chains", "heart-valfold2"])
    with pytest.raises(SystemExit, match="chain.py --chain heart-valfold2"):
        val_folds.main()


def test_a_stage_carried_from_an_earlier_session_is_scored_from_its_file(monkeypatch, tmp_path):
    """A fold's one-step stage carried by `chain.py --carry` (its run folder gone) is scored
    from the carried file; stages whose folders are here are scored from them."""
    carry = tmp_path / "benchmarks" / "carry"
    monkeypatch.setattr(val_folds, "ROOT", tmp_path)
    monkeypatch.setattr(val_folds, "carried", carried_under(tmp_path))
    (carry / "heart-valfold0").mkdir(parents=True)
    (carry / "heart-valfold0" / "onestep.safetensors").write_bytes(b"")
    for stage in ("refine", "control"):
        (tmp_path / "runs" / "chain-heart-valfold0" / stage).mkdir(parents=True)
    monkeypatch.setattr(val_folds, "ended", lambda run: run.exists())
    scored = []
    monkeypatch.setattr(val_folds, "evaluate", lambda checkpoint, *a, **kw: scored.append(Path(checkpoint))
                        or fake_evaluate(checkpoint, *a, **kw))
    rows = val_folds.fold_rows("heart-valfold0", "one step")
    assert scored == [carry / "heart-valfold0" / "onestep.safetensors"]
    assert {r["patient"] for r in rows} == {"la_003", "la_007"}
    val_folds.fold_rows("heart-valfold0", "refining")
    assert scored[-1] == tmp_path / "runs" / "chain-heart-valfold0" / "refine" / "checkpoint_best.safetensors"
    (carry / "heart-valfold0" / "onestep.safetensors").unlink()
    with pytest.raises(SystemExit, match="has not ended"):
        val_folds.fold_rows("heart-valfold0", "one step")


def test_four_folds_are_checked_against_the_rule_and_listed_one_by_one(monkeypatch, tmp_path):
    """With all four folds the table says which of rule_heart-valfolds.md's conditions hold
    (here the final is 0.03 above the control, 0.05 above one step and 0.15 above its m(1)),
    and gives each fold's arms."""
    for k, patients in ((2, ["la_011"]), (3, ["la_014", "la_016"])):
        monkeypatch.setitem(FOLDS, f"heart-valfold{k}", patients)
    monkeypatch.setattr(val_folds, "ROOT", tmp_path)
    monkeypatch.setattr(val_folds, "ended", lambda run: True)
    monkeypatch.setattr(val_folds, "evaluate", fake_evaluate)
    written = {}
    monkeypatch.setattr(val_folds, "write_results", lambda name, result, lines: written.update({name: (result, lines)}))
    monkeypatch.setattr(sys, "argv", ["val_folds.py", "--chains", *sorted(FOLDS)])
    val_folds.main()
    result, lines = written["valfolds_heart"]
    assert all(result["rule_conditions"].values()) and len(result["rule_conditions"]) == 5
    assert [f["patients"] for f in result["folds"]] == [FOLDS[c] for c in sorted(FOLDS)]
    assert result["folds"][0]["refining final"] - result["folds"][0]["control"] == pytest.approx(0.03)
    monkeypatch.setitem(DICE, "refine", [0.60, 0.70, 0.71])  # 0.01 below the control, 0.01 above one step
    val_folds.main()
    conditions = written["valfolds_heart"][0]["rule_conditions"]
    assert [text for text, ok in conditions.items() if not ok] == [
        "1. point 2: refining final - control >= 0", "2. the recipe: refining final - control >= -0.005"]


def test_a_refining_variant_takes_the_refining_arm_under_its_own_rule(monkeypatch, tmp_path):
    """``--refine refine-allmean`` scores that stage in the refining arm against the same
    one-step and control arms, and names the variants' rule."""
    monkeypatch.setitem(DICE, "refine-allmean", [0.50, 0.80, 0.80])
    monkeypatch.setattr(val_folds, "ROOT", tmp_path)
    monkeypatch.setattr(val_folds, "ended", lambda run: True)
    monkeypatch.setattr(val_folds, "evaluate", fake_evaluate)
    written = {}
    monkeypatch.setattr(val_folds, "write_results", lambda name, result, lines: written.update({name: (result, lines)}))
    monkeypatch.setattr(sys, "argv", ["val_folds.py", "--chains", *FOLDS, "--refine", "refine-allmean",
                                      "--name", "heart-refine-allmean"])
    val_folds.main()
    result, lines = written["valfolds_heart-refine-allmean"]
    assert result["refining stage"] == "refine-allmean"
    assert result["paired"]["refining final - control"]["mean"] == pytest.approx(0.08)
    assert result["paired"]["refining final - its m(1)"]["mean"] == pytest.approx(0.30)
    assert any("rule_heart-valfolds-rlweight.md" in line for line in lines)


def test_the_peer_table_pairs_one_step_with_the_folds_basicunet(monkeypatch, tmp_path):
    """``--peer`` scores each fold's one-step stage and its BasicUNet peer on that fold's
    validation patients, pairs them slice by slice and counts empty predictions."""
    monkeypatch.setitem(DICE, "peer", [0.75])

    def with_empty(checkpoint, dataset, data, split, out, **kw):
        fake_evaluate(checkpoint, dataset, data, split, out, **kw)
        path = Path(out) / "per_slice.csv"
        rows = list(csv.DictReader(open(path, newline="")))
        for r in rows:  # the peer leaves its first slice empty
            r["empty_pred"] = str(Path(checkpoint).parent.name == "peer" and r is rows[0])
        write_per_slice(path, rows)
        return {}

    monkeypatch.setattr(val_folds, "ROOT", tmp_path)
    monkeypatch.setattr(val_folds, "ended", lambda run: True)
    monkeypatch.setattr(val_folds, "evaluate", with_empty)
    written = {}
    monkeypatch.setattr(val_folds, "write_results", lambda name, result, lines: written.update({name: (result, lines)}))
    monkeypatch.setattr(sys, "argv", ["val_folds.py", "--chains", *FOLDS, "--peer"])
    val_folds.main()
    result, lines = written["valfolds_heart-peer"]
    assert result["paired"]["one step - BasicUNet peer"]["mean"] == pytest.approx(-0.05)
    assert result["scores"]["BasicUNet peer"]["patients"] == 3
    assert result["empty_predictions"] == {"one step": 0, "BasicUNet peer": 2}  # one per fold
    assert [f["fold"] for f in result["folds"]] == list(FOLDS)
    patients = {p["patient"]: p for p in result["patients"]}
    assert sorted(patients) == ["la_003", "la_007", "la_010"] and patients["la_010"]["fold"] == "heart-valfold1"
    assert patients["la_003"]["one step"]["dice"] == pytest.approx(0.705)  # slices 0 and 1: 0.70, 0.71
    assert patients["la_003"]["BasicUNet peer"]["dice"] == pytest.approx(0.755)
    assert any(line.startswith("| la_010 | heart-valfold1 | 2 | 0.705 / - / - | 0.755 / - / - | -0.0500 |") for line in lines)


def test_the_peer_table_post_processes_both_arms_in_their_own_reports(monkeypatch, tmp_path):
    """``--peer --postprocess largest-component`` scores both arms' post-processed masks (the
    ``dice`` column) into reports of their own, beside the raw ones."""
    monkeypatch.setitem(DICE, "peer", [0.75])
    monkeypatch.setattr(val_folds, "ROOT", tmp_path)
    monkeypatch.setattr(val_folds, "ended", lambda run: True)
    reports = []
    monkeypatch.setattr(val_folds, "evaluate", lambda checkpoint, dataset, data, split, out, **kw: reports.append(
        (Path(out).name, kw["postprocess"])) or fake_evaluate(checkpoint, dataset, data, split, out, **kw))
    written = {}
    monkeypatch.setattr(val_folds, "write_results", lambda name, result, lines: written.update({name: (result, lines)}))
    monkeypatch.setattr(sys, "argv", ["val_folds.py", "--chains", *FOLDS, "--peer", "--postprocess", "largest-component",
                                      "--name", "heart-peer-lc"])
    val_folds.main()
    result, lines = written["valfolds_heart-peer-lc"]
    assert {r for r in reports} == {("eval_val-largest-component", "largest-component")}
    assert result["scores"]["one step"]["dice"] == pytest.approx(0.725)  # 0.70 + 0.005 + 0.02
    assert result["postprocess"] == "largest-component"
    assert "largest object" in lines[-2]
    monkeypatch.setattr(sys, "argv", ["val_folds.py", "--chains", *FOLDS, "--peer", "--postprocess", "largest-component"])
    val_folds.main()
    assert "valfolds_heart-peer-largest-component" in written  # not over the raw table's file
    monkeypatch.setattr(sys, "argv", ["val_folds.py", "--chains", *FOLDS, "--postprocess", "largest-component"])
    with pytest.raises(SystemExit):
        val_folds.main()


def test_also_puts_the_jitter_stage_between_one_step_and_the_peer_under_its_rule(monkeypatch, tmp_path):
    """``--peer --also onestep-jitter`` scores that stage as a third arm, pairs it with the peer
    and with the one-step stage, and with all four folds says whether rule_heart-jitter.md's
    +0.01 over one step holds."""
    monkeypatch.setitem(DICE, "peer", [0.75])
    monkeypatch.setitem(DICE, "onestep-jitter", [0.72])
    monkeypatch.setattr(val_folds, "ROOT", tmp_path)
    monkeypatch.setattr(val_folds, "ended", lambda run: True)
    monkeypatch.setattr(val_folds, "evaluate", fake_evaluate)
    written = {}
    monkeypatch.setattr(val_folds, "write_results", lambda name, result, lines: written.update({name: (result, lines)}))
    monkeypatch.setattr(sys, "argv", ["val_folds.py", "--chains", *FOLDS, "--peer", "--also", "onestep-jitter"])
    val_folds.main()
    result, lines = written["valfolds_heart-peer-onestep-jitter"]
    jitter = "one step, zoom + gamma jitter"
    assert list(result["scores"]) == ["one step", jitter, "BasicUNet peer"]
    assert result["paired"][f"{jitter} - one step"]["mean"] == pytest.approx(0.02)
    assert result["paired"][f"{jitter} - BasicUNet peer"]["mean"] == pytest.approx(-0.03)
    assert result["paired"]["one step - BasicUNet peer"]["mean"] == pytest.approx(-0.05)
    assert result["rule_conditions"] == {}  # two folds decide nothing
    assert any("decides nothing" in line for line in lines)
    assert any(line.startswith("| la_010 | heart-valfold1 | 2 | 0.705 / - / - | 0.725 / - / - | 0.755 / - / - | "
                               "-0.0500 | -0.0300 |") for line in lines)
    for k, patients in ((2, ["la_011"]), (3, ["la_014", "la_016"])):
        monkeypatch.setitem(FOLDS, f"heart-valfold{k}", patients)
    monkeypatch.setattr(sys, "argv", ["val_folds.py", "--chains", *sorted(FOLDS), "--peer", "--also", "onestep-jitter"])
    val_folds.main()
    assert list(written["valfolds_heart-peer-onestep-jitter"][0]["rule_conditions"].values()) == [True]
    monkeypatch.setitem(DICE, "onestep-jitter", [0.705])  # +0.005: below the rule's +0.01
    val_folds.main()
    assert list(written["valfolds_heart-peer-onestep-jitter"][0]["rule_conditions"].values()) == [False]
    monkeypatch.setattr(sys, "argv", ["val_folds.py", "--chains", *FOLDS, "--also", "onestep-jitter"])
    with pytest.raises(SystemExit):
        val_folds.main()


def test_the_peer_with_the_same_augmentation_pairs_with_the_jitter_arm_under_the_same_rule(monkeypatch, tmp_path):
    """``--also onestep-jitter peer-jitter``: the peer's variant is a peer arm (scored at its own
    episode length), paired with every lite arm and with the plain peer; with four folds the
    rule's second condition (jitter - peer jitter >= -0.030) is printed; without the jitter
    stage that condition has no arm, and the command says so."""
    monkeypatch.setitem(DICE, "peer", [0.75])
    monkeypatch.setitem(DICE, "onestep-jitter", [0.72])
    monkeypatch.setitem(DICE, "peer-jitter", [0.76])
    for k, patients in ((2, ["la_011"]), (3, ["la_014", "la_016"])):
        monkeypatch.setitem(FOLDS, f"heart-valfold{k}", patients)
    monkeypatch.setattr(val_folds, "ROOT", tmp_path)
    monkeypatch.setattr(val_folds, "ended", lambda run: True)
    seen = []
    monkeypatch.setattr(val_folds, "evaluate", lambda *a, **kw: (seen.append(kw.get("extra")), fake_evaluate(*a, **kw))[1])
    written = {}
    monkeypatch.setattr(val_folds, "write_results", lambda name, result, lines: written.update({name: (result, lines)}))
    argv = ["val_folds.py", "--chains", *sorted(FOLDS), "--peer", "--also", "onestep-jitter", "peer-jitter"]
    monkeypatch.setattr(sys, "argv", argv)
    val_folds.main()
    result, lines = written["valfolds_heart-peer-onestep-jitter-peer-jitter"]
    peer_jitter = "BasicUNet peer, zoom + gamma jitter"
    assert list(result["scores"]) == ["one step", val_folds.JITTER, "BasicUNet peer", peer_jitter]
    assert result["paired"][f"{val_folds.JITTER} - {peer_jitter}"]["mean"] == pytest.approx(-0.04)
    assert result["paired"][f"{peer_jitter} - BasicUNet peer"]["mean"] == pytest.approx(0.01)
    assert result["rule_conditions"] == {
        f"`rule_heart-jitter.md`: {val_folds.JITTER} - one step >= +0.010": True,
        f"`rule_heart-jitter.md`: {val_folds.JITTER} - {peer_jitter} >= -0.030": False}
    assert ("--t-max", "1") in seen and () in seen  # lite arms at one step, peers at their own length
    monkeypatch.setitem(DICE, "peer-jitter", [0.745])
    val_folds.main()
    assert all(written["valfolds_heart-peer-onestep-jitter-peer-jitter"][0]["rule_conditions"].values())
    monkeypatch.setattr(sys, "argv", ["val_folds.py", "--chains", *sorted(FOLDS), "--peer", "--also", "peer-jitter"])
    with pytest.raises(SystemExit):
        val_folds.main()
