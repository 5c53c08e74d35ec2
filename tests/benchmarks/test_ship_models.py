"""benchmarks/ship_models.py: a second call keeps the shipped file that was scored, byte for
byte, so that its test scores are read back rather than the test split scored again."""

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import ship_models  # noqa: E402
from _runs import file_sha256  # noqa: E402
from napari_pixeldrl.model.network import build_model  # noqa: E402


def test_save_unless_same_keeps_the_bytes_of_the_same_content(tmp_path, tiny_config):
    torch.manual_seed(0)
    config = tiny_config("lite", head_scale=4)
    net = build_model(config)
    info = {"epoch": 3, "source_run": "runs/x", "train": {"t_max": 1, "lr": 1e-3}}
    path = tmp_path / "shipped.safetensors"
    ship_models.save_unless_same(path, net, config, info)
    first = file_sha256(path)
    for _ in range(3):  # safetensors may write the same header in another order each time
        ship_models.save_unless_same(path, net, config, dict(info))
        assert file_sha256(path) == first

    ship_models.save_unless_same(path, net, config, {**info, "epoch": 4})
    assert file_sha256(path) != first
    with torch.no_grad():
        next(net.parameters()).add_(1.0)
    other = tmp_path / "other.safetensors"
    ship_models.save_unless_same(other, net, config, {**info, "epoch": 4})
    assert not ship_models.same_checkpoint(path, other)


def test_choose_steps_ships_ten_steps_only_where_validation_says_so(tmp_path, monkeypatch):
    calls = []

    def fake(curve):
        def evaluate(checkpoint, dataset, data, split, out, **kw):
            calls.append((split, kw.get("extra")))
            return {"dice_per_step": curve}
        return evaluate

    spec = {"dataset": "lgg", "data": "x"}
    rising = [0.65, 0.78, 0.789, 0.790, 0.790, 0.790, 0.790, 0.790, 0.790, 0.7903]
    monkeypatch.setattr(ship_models, "evaluate", fake(rising))
    assert ship_models.choose_steps(tmp_path / "c.safetensors", 3, spec, tmp_path) == (10, rising)
    assert calls == [("val", ("--t-max", "10"))]  # the validation split only, one episode of 10 steps
    falling = [0.79, 0.785, 0.784] + [0.78] * 7
    monkeypatch.setattr(ship_models, "evaluate", fake(falling))
    assert ship_models.choose_steps(tmp_path / "c.safetensors", 1, spec, tmp_path)[0] == 1
    assert ship_models.choose_steps(tmp_path / "c.safetensors", 3, spec, tmp_path)[0] == 3


def test_the_ten_step_validation_is_scored_once_for_both_choices(tmp_path, monkeypatch):
    requests = {}

    def evaluate(checkpoint, dataset, data, split, out, postprocess="none", reuse=False, extra=()):
        requests.setdefault((out, postprocess, tuple(extra)), 0)
        requests[(out, postprocess, tuple(extra))] += 1
        return {"dice_per_step": [0.7] * 10, "dice": 0.7}

    monkeypatch.setattr(ship_models, "evaluate", evaluate)
    spec = {"dataset": "lgg", "data": "x"}
    t_max, _ = ship_models.choose_steps(tmp_path / "c.safetensors", 3, spec, tmp_path)
    ship_models.choose_postprocess(tmp_path / "c.safetensors", spec, tmp_path, t_max=t_max)
    # The raw ten-step report goes to one folder with one request, so evaluate's reuse reads it back.
    assert requests[(tmp_path / "eval_val_none_t10", "none", ("--t-max", "10"))] == 2
    assert len(requests) == 2  # that one and the largest-component report


def test_a_rerun_that_regenerates_the_same_entry_keeps_its_shipping_date():
    entry = {"model": "lgg", "test": {"dice": 0.75}, "postprocess": "none"}
    old = [{**entry, "date": "2026-12-01T12:56:42+00:00"}, {"model": "heart", "date": "2026-11-30T00:00:00+00:00"}]
    now = "2026-12-02T09:00:00+00:00"
    assert ship_models.ship_date(dict(entry), old, now) == "2026-12-01T12:56:42+00:00"
    assert ship_models.ship_date({**entry, "test": {"dice": 0.76}}, old, now) == now  # new scores: a new shipping
    assert ship_models.ship_date({**entry, "model": "heart"}, old, now) == now


def test_a_recorded_peer_is_used_only_with_its_test_scoring_on_record(tmp_path, monkeypatch):
    import json

    import pytest

    import _runs

    monkeypatch.setattr(_runs, "ROOT", tmp_path)
    record, scorings = tmp_path / "gone_runs.json", tmp_path / "test_scorings.jsonl"
    monkeypatch.setattr(_runs, "GONE_RUNS", record)
    monkeypatch.setattr(ship_models, "TEST_SCORINGS", scorings)
    peer = {"cpu_minutes": 100.0, "steps": [], "recorded_in": "x", "postprocess": "none",
            "val_dice_by_postprocess": {"none": 0.8}, "test": {"dice": 0.7},
            "checkpoint": {"epoch": 3, "val_dice": 0.8, "sha256": "ab" * 32}}
    record.write_text(json.dumps({"runs/race-x/basicunet": peer}))
    with pytest.raises(SystemExit, match="has no scoring"):
        ship_models.recorded_peer(tmp_path / "runs/race-x/basicunet", {"dataset": "lgg"})
    scorings.write_text(json.dumps({"dataset": "lgg", "sha256": "ab" * 32, "postprocess": "largest-component", "dice": 0.7}) + "\n")
    with pytest.raises(SystemExit, match="has no scoring"):  # scored with another post-processing
        ship_models.recorded_peer(tmp_path / "runs/race-x/basicunet", {"dataset": "lgg"})
    scorings.write_text(json.dumps({"dataset": "lgg", "sha256": "ab" * 32, "postprocess": "none", "dice": 0.7}) + "\n")
    test, pp, val, info = ship_models.recorded_peer(tmp_path / "runs/race-x/basicunet", {"dataset": "lgg"})
    assert (test["dice"], pp, val, info["epoch"]) == (0.7, "none", {"none": 0.8}, 3)
