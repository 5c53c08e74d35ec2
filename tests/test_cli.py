import json

import numpy as np
import pytest

from napari_pixeldrl.model.checkpoint import save_checkpoint
from napari_pixeldrl.model.network import build_model
from napari_pixeldrl.training.cli import main


def run(capsys, *argv):
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_info_json_has_required_keys(capsys):
    code, out, _ = run(capsys, "info", "--preset", "paper", "--json")
    info = json.loads(out)
    assert code == 0
    assert {"preset", "params", "in_channels", "t_max"} <= set(info)
    assert info["preset"] == "paper" and abs(info["params"] - 7.14e6) / 7.14e6 < 0.01


def test_unknown_preset_is_one_clear_line(capsys):
    code, out, err = run(capsys, "info", "--preset", "huge")
    assert code == 2 and "unknown preset 'huge'" in err and "Traceback" not in err


def test_info_of_checkpoint_and_foreign_file(capsys, tmp_path, tiny_config):
    cfg = tiny_config("lite", in_channels=3)
    path = save_checkpoint(tmp_path / "m.safetensors", build_model(cfg), cfg, {"trained_on": "synthetic"})
    code, out, _ = run(capsys, "info", "--checkpoint", str(path), "--json")
    assert code == 0 and json.loads(out)["in_channels"] == 3
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x00" * 40)
    code, _, err = run(capsys, "info", "--checkpoint", str(bad))
    assert code == 2 and "bad.safetensors" in err


def test_bench_reports_ratio(capsys):
    code, out, _ = run(capsys, "bench", "--preset", "lite", "--size", "64", "--repeats", "1", "--warmup", "0", "--json")
    r = json.loads(out)
    assert code == 0
    assert {"pixeldrl_s", "unet_s", "ratio", "steps", "threads"} <= set(r)
    assert r["steps"] == 10 and r["threads"] == 2
    assert r["ratio"] == pytest.approx(r["pixeldrl_s"] / r["unet_s"], rel=0.01)
