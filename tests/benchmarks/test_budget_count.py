"""benchmarks/_runs.cpu_minutes_spent: a run's budget counts killed commands' whole epochs."""

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import _runs  # noqa: E402
from _runs import cpu_minutes_spent, killed_cpu_minutes, run_chain, uncounted_training  # noqa: E402


def write_lines(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_a_killed_commands_whole_epochs_are_counted(tmp_path, tiny_config):
    from napari_pixeldrl.model.checkpoint import save_checkpoint
    from napari_pixeldrl.model.network import build_model

    run = tmp_path / "run"
    run.mkdir()
    config = tiny_config("lite")
    save_checkpoint(run / "checkpoint_best.safetensors", build_model(config), config, {"epoch": 5})  # from scratch
    write_lines(run / "commands.jsonl", [
        {"argv": ["a"], "started": "t0", "status": "started", "start_epoch": 0},
        {"argv": ["a"], "started": "t0", "status": "ended", "cpu_minutes": 5.0},  # epochs 1-2, ended on record
        {"argv": ["b"], "started": "t1", "status": "started", "start_epoch": 2},  # killed after epochs 3-4
        {"argv": ["c"], "started": "t2", "status": "started", "start_epoch": 4},  # killed before an epoch ended
        {"argv": ["d"], "started": "t3", "status": "started", "start_epoch": 4},  # killed after epoch 5
    ])
    write_lines(run / "metrics.jsonl", [{"epoch": e, "cpu_seconds": 60.0 * e} for e in range(1, 6)])
    assert killed_cpu_minutes(run) == pytest.approx(3 + 4 + 5)
    assert cpu_minutes_spent(run) == pytest.approx(5 + 12)


def test_a_fine_tune_of_a_runs_checkpoint_counts_that_run(tmp_path, tiny_config, monkeypatch):
    from napari_pixeldrl.model.checkpoint import save_checkpoint
    from napari_pixeldrl.model.network import build_model

    monkeypatch.setattr(_runs, "ROOT", tmp_path)
    config = tiny_config("lite")
    base, tune, loose = tmp_path / "runs" / "base", tmp_path / "runs" / "tune", tmp_path / "runs" / "loose"
    for run in (base, tune, loose):
        run.mkdir(parents=True)
    save_checkpoint(base / "checkpoint_best.safetensors", build_model(config), config, {"epoch": 2})
    write_lines(base / "commands.jsonl", [{"argv": ["a"], "started": "t0", "status": "ended", "cpu_minutes": 30.0}])
    save_checkpoint(tune / "checkpoint_best.safetensors", build_model(config), config,
                    {"epoch": 1, "data": {"init_checkpoint": "runs/base/checkpoint_best.safetensors"}})
    write_lines(tune / "commands.jsonl", [{"argv": ["b"], "started": "t1", "status": "ended", "cpu_minutes": 10.0}])
    assert run_chain(tune) == [base, tune] and uncounted_training(tune) is None
    # A starting file outside any run folder, naming no run: its training is not counted, and the results say so.
    save_checkpoint(tmp_path / "model.safetensors", build_model(config), config, {})
    save_checkpoint(loose / "checkpoint_best.safetensors", build_model(config), config,
                    {"epoch": 1, "data": {"init_checkpoint": "model.safetensors"}})
    assert run_chain(loose, uncounted_ok=True) == [loose]
    assert "names no run it came from" in uncounted_training(loose)


def test_a_fine_tune_of_a_gone_runs_checkpoint_counts_its_recorded_minutes(tmp_path, tiny_config, monkeypatch):
    from napari_pixeldrl.model.checkpoint import save_checkpoint
    from napari_pixeldrl.model.network import build_model

    monkeypatch.setattr(_runs, "ROOT", tmp_path)
    record = tmp_path / "gone_runs.json"
    monkeypatch.setattr(_runs, "GONE_RUNS", record)
    config = tiny_config("lite")
    tune = tmp_path / "runs" / "tune"
    tune.mkdir(parents=True)
    # The starting file names its run, which is not here (no folder at all).
    save_checkpoint(tmp_path / "shipped.safetensors", build_model(config), config, {"source_run": "runs/old/lite (epoch 4)"})
    save_checkpoint(tune / "checkpoint_best.safetensors", build_model(config), config,
                    {"epoch": 1, "data": {"init_checkpoint": "shipped.safetensors"}})
    write_lines(tune / "commands.jsonl", [{"argv": ["b"], "started": "t1", "status": "started", "start_epoch": 0},
                                          {"argv": ["b"], "started": "t1", "status": "ended", "cpu_minutes": 10.0}])
    assert "holds no commands.jsonl" in uncounted_training(tune)
    assert cpu_minutes_spent(tune, uncounted_ok=True) == pytest.approx(10.0)
    record.write_text(json.dumps({"runs/old/lite": {"cpu_minutes": 150.5, "steps": ["`a`"], "recorded_in": "x"}}))
    assert uncounted_training(tune) is None
    assert run_chain(tune) == [tmp_path / "runs" / "old" / "lite", tune]
    assert cpu_minutes_spent(tune) == pytest.approx(160.5)
    # A folder that is here is read as it is, whatever the record says.
    (tmp_path / "runs" / "old" / "lite").mkdir(parents=True)
    write_lines(tmp_path / "runs" / "old" / "lite" / "commands.jsonl",
                [{"argv": ["a"], "started": "t0", "status": "started", "start_epoch": 0},
                 {"argv": ["a"], "started": "t0", "status": "ended", "cpu_minutes": 99.0}])
    save_checkpoint(tmp_path / "runs" / "old" / "lite" / "checkpoint_best.safetensors", build_model(config), config, {"epoch": 4})
    assert cpu_minutes_spent(tune) == pytest.approx(109.0)
