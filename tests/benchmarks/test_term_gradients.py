"""benchmarks/term_gradients.py: each arm's term norms and its reinforcement-to-supervised ratio
are written to a results file, not only printed."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import term_gradients  # noqa: E402


def test_each_arm_gets_a_row_and_its_ratio(monkeypatch):
    norms = {"refine": {"policy": 0.3, "value": 0.1, "supervised": 1.0, "entropy": 0.1},
             "control": {"policy": 0.02, "value": 0.02, "supervised": 2.0, "entropy": 0.0}}
    monkeypatch.setattr(term_gradients, "run_train_config", lambda run: None)
    monkeypatch.setattr(term_gradients, "training_batches", lambda dataset, train, n: [None] * n)
    monkeypatch.setattr(term_gradients, "term_norms", lambda run, batches: norms[run.name])
    written = {}
    monkeypatch.setattr(term_gradients, "write_results", lambda name, result, lines: written.update({name: (result, lines)}))
    monkeypatch.setattr(sys, "argv", ["term_gradients.py", "--chain", "heart-valfold2", "--arms", "refine", "control",
                                      "--batches", "3"])
    term_gradients.main()
    result, lines = written["term_gradients_heart-valfold2"]
    assert result["batches"] == 3
    assert result["arms"]["refine"]["rl_over_supervised"] == pytest.approx(0.5)
    assert result["arms"]["control"]["rl_over_supervised"] == pytest.approx(0.02)
    assert "| refine | 0.3000 | 0.1000 | 1.0000 | 0.1000 | 0.500 |" in lines
