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


def test_validate_only_scores_the_validation_split_and_writes_nothing(tmp_path, monkeypatch, tiny_config, capsys):
    import json

    import _runs
    from napari_pixeldrl.model.checkpoint import save_checkpoint

    for module in (_runs, ship_models):
        monkeypatch.setattr(module, "ROOT", tmp_path)
    monkeypatch.setattr(_runs, "GONE_RUNS", tmp_path / "gone_runs.json")
    monkeypatch.setattr(ship_models, "WEIGHTS", tmp_path / "weights")
    monkeypatch.setattr(ship_models, "RESULTS", tmp_path / "results")
    splits = []

    def evaluate(checkpoint, dataset, data, split, out, postprocess="none", reuse=False, extra=()):
        splits.append(split)
        dice = 0.80 if postprocess == "none" else 0.81
        return {"dice_per_step": [0.7, dice, dice] + [dice] * 7, "dice": dice, "empty_predictions": 2, "slices": 126}

    monkeypatch.setattr(ship_models, "evaluate", evaluate)
    config = tiny_config("lite")
    for run, minutes in (("lite", 20.0), ("basicunet", 19.0)):
        folder = tmp_path / "runs" / "race-x" / run
        save_checkpoint(folder / "checkpoint_best.safetensors", build_model(config), config,
                        {"epoch": 2, "train": {"t_max": 3}})
        (folder / "commands.jsonl").write_text("".join(json.dumps(r) + "\n" for r in (
            {"argv": ["pixeldrl", "train"], "started": "t0", "status": "started", "start_epoch": 0},
            {"argv": ["pixeldrl", "train"], "started": "t0", "status": "ended", "cpu_minutes": minutes, "reason": "time_budget"})))
    monkeypatch.setattr(sys, "argv", ["ship_models.py", "--model", "lgg", "--race", "lgg=x", "--validate-only"])
    ship_models.main()
    shown = json.loads(capsys.readouterr().out)
    assert (shown["t_max"], shown["postprocess"], shown["val_dice"], shown["val_empty_predictions"]) == (10, "largest-component", 0.81, 2)
    assert (shown["cpu_minutes"], shown["peer_cpu_minutes"]) == (20.0, 19.0)
    assert set(splits) == {"val"}  # the test split is not touched
    assert not (tmp_path / "weights").exists() and not (tmp_path / "results").exists()


def test_the_window_is_chosen_on_validation_and_its_whole_slice_report_reused(tmp_path, monkeypatch):
    """Whole slices or windows of the last training crop, by raw validation DICE (whole slices
    on a tie); choose_postprocess at whole slices reads back the same report."""
    from types import SimpleNamespace

    requests = {}

    def fake(dice_by_window):
        def evaluate(checkpoint, dataset, data, split, out, postprocess="none", reuse=False, extra=()):
            assert split == "val"
            requests[(out, postprocess, tuple(extra))] = requests.get((out, postprocess, tuple(extra)), 0) + 1
            window = int(extra[extra.index("--window") + 1]) if "--window" in extra else 0
            return {"dice": dice_by_window[window]}
        return evaluate

    spec = {"dataset": "msd", "data": "x"}
    monkeypatch.setattr(ship_models, "load_checkpoint", lambda path: SimpleNamespace(info={"train": {"crop": 256}}))
    monkeypatch.setattr(ship_models, "evaluate", fake({0: 0.70, 256: 0.72}))
    assert ship_models.choose_window(tmp_path / "c.safetensors", spec, tmp_path, t_max=3) == (256, {0: 0.70, 256: 0.72})
    assert (tmp_path / "eval_val_none_t3_w256", "none", ("--t-max", "3", "--window", "256")) in requests
    monkeypatch.setattr(ship_models, "evaluate", fake({0: 0.72, 256: 0.72}))
    assert ship_models.choose_window(tmp_path / "d.safetensors", spec, tmp_path / "d")[0] == 0  # a tie: whole slices
    ship_models.choose_postprocess(tmp_path / "d.safetensors", spec, tmp_path / "d", window=0)
    assert requests[(tmp_path / "d" / "eval_val_none", "none", ())] == 2
    monkeypatch.setattr(ship_models, "load_checkpoint", lambda path: SimpleNamespace(info={"train": {"crop": 0}}))
    assert ship_models.choose_window(tmp_path / "e.safetensors", spec, tmp_path / "e") == (0, {0: 0.72})
    assert "windows" not in ship_models.windows_words(0, {0: 0.72})
    assert ship_models.windows_words(256, {0: 0.70, 256: 0.72}).startswith("slices in half-overlapping 256-pixel")
