"""benchmarks/keep_thresholds.py: each fold is scored at the threshold chosen on the other
folds, never on its own slices."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import keep_thresholds  # noqa: E402
import val_folds  # noqa: E402
from _helpers import write_per_slice  # noqa: E402

FOLDS = {"heart-valfold0": ["la_003", "la_007"], "heart-valfold1": ["la_010"], "heart-valfold2": ["la_011"]}
# stage -> fold -> threshold -> DICE of every slice (plus 0.01 per slice index)
DICE = {"onestep": {"heart-valfold0": {0.4: 0.70, 0.5: 0.72, 0.6: 0.80},
                    "heart-valfold1": {0.4: 0.70, 0.5: 0.72, 0.6: 0.78},
                    "heart-valfold2": {0.4: 0.90, 0.5: 0.72, 0.6: 0.60}},
        "peer": {chain: {0.4: 0.74, 0.5: 0.75, 0.6: 0.76} for chain in FOLDS}}


def fake_evaluate(checkpoint, dataset, data, split, out, **kw):
    checkpoint = Path(checkpoint)
    chain, stage = checkpoint.parent.parent.name.removeprefix("chain-"), checkpoint.parent.name
    extra = list(kw.get("extra", ()))
    threshold = float(extra[extra.index("--keep-threshold") + 1]) if "--keep-threshold" in extra else 0.5
    assert Path(out).name == ("eval_val" if threshold == 0.5 else f"eval_val-keep{threshold:g}")
    rows = [{"patient": p, "slice": z, "dice": DICE[stage][chain][threshold] + 0.01 * z, "empty_pred": "False"}
            for p in FOLDS[chain] for z in range(2)]
    Path(out).mkdir(parents=True, exist_ok=True)
    write_per_slice(Path(out) / "per_slice.csv", rows)
    return {}


def test_each_fold_takes_the_threshold_best_on_the_other_folds(monkeypatch, tmp_path):
    monkeypatch.setattr(val_folds, "ROOT", tmp_path)
    monkeypatch.setattr(val_folds, "ended", lambda run: True)
    monkeypatch.setattr(val_folds, "evaluate", fake_evaluate)
    written = {}
    monkeypatch.setattr(keep_thresholds, "write_results", lambda name, result, lines: written.update({name: (result, lines)}))
    monkeypatch.setattr(sys, "argv", ["keep_thresholds.py", "--chains", *FOLDS, "--thresholds", "0.4", "0.5", "0.6"])
    keep_thresholds.main()
    result, lines = written["keep_thresholds_heart"]
    one_step, peer = result["arms"]["one step"], result["arms"]["BasicUNet peer"]
    # fold 2 sees folds 0-1, best at 0.6; folds 0 and 1 see fold 2's 0.90 at 0.4 and choose it
    assert one_step["chosen"] == {"heart-valfold0": 0.4, "heart-valfold1": 0.4, "heart-valfold2": 0.6}
    assert one_step["cross_validated"]["dice"] == pytest.approx((0.70 * 4 + 0.70 * 2 + 0.60 * 2) / 8 + 0.005)
    assert one_step["argmax"]["dice"] == pytest.approx(0.725)
    assert one_step["gain"]["mean"] == pytest.approx(one_step["cross_validated"]["dice"] - 0.725)
    assert set(peer["chosen"].values()) == {0.6}
    assert result["paired"]["one step - BasicUNet peer, both at 0.5"]["mean"] == pytest.approx(-0.03)
    assert result["paired"]["one step - BasicUNet peer, both cross-validated"]["mean"] == pytest.approx(
        one_step["cross_validated"]["dice"] - 0.765)
    assert any(line.startswith("| one step | 0.") and "0.4, 0.4, 0.6" in line for line in lines)


def test_thresholds_without_the_argmax_or_one_fold_are_refused(monkeypatch):
    for argv in (["--chains", *FOLDS, "--thresholds", "0.4", "0.6"], ["--chains", "heart-valfold0"],
                 ["--chains", *FOLDS, "--thresholds", "0.5", "1.0"]):
        monkeypatch.setattr(sys, "argv", ["keep_thresholds.py", *argv])
        with pytest.raises(SystemExit):
            keep_thresholds.main()
