"""benchmarks/_runs.cpu_minutes_spent: a run's budget counts killed commands' whole epochs."""

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from _runs import cpu_minutes_spent, killed_cpu_minutes  # noqa: E402


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
