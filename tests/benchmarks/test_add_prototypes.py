"""benchmarks/add_prototypes.py: the widened checkpoint computes what the original did and
names the run it came from, so that a fine-tune of it counts that run's CPU time."""

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import add_prototypes  # noqa: E402
from napari_pixeldrl.model.checkpoint import load_checkpoint, save_checkpoint  # noqa: E402
from napari_pixeldrl.model.network import build_model  # noqa: E402


def widen(monkeypatch, source, out):
    monkeypatch.setattr(sys, "argv", ["add_prototypes.py", str(source), str(out)])
    add_prototypes.main()
    return load_checkpoint(out)


def test_a_runs_checkpoint_is_widened_and_names_its_run(tmp_path, tiny_config, monkeypatch):
    torch.manual_seed(0)
    config = tiny_config("lite", head_scale=4)
    net = build_model(config)
    run = tmp_path / "run"
    run.mkdir()
    (run / "commands.jsonl").write_text("{}\n")
    save_checkpoint(run / "checkpoint_best.safetensors", net, config, {"epoch": 3})
    monkeypatch.chdir(run)  # the path given relative to wherever the command runs
    wide = widen(monkeypatch, Path("checkpoint_best.safetensors"), tmp_path / "wide.safetensors")
    assert wide.model.config.state_prototypes and not config.state_prototypes
    # Outside the repository the run is named by its full path (inside, relative to the repository).
    assert wide.info["source_run"] == f"{run.resolve().as_posix()} (epoch 3)"
    assert wide.info["widened_by"] == "python benchmarks/add_prototypes.py"  # what a model card quotes
    image = torch.rand(1, config.in_channels, 32, 32)
    mask = torch.ones(1, 1, 32, 32)
    net.eval(), wide.model.eval()
    with torch.no_grad():
        (p0, v0), (p1, v1) = net(image, mask), wide.model(image, mask)
    assert torch.allclose(p0, p1, atol=1e-5) and torch.allclose(v0, v1, atol=1e-5)


def test_a_file_outside_a_run_keeps_what_it_says(tmp_path, tiny_config, monkeypatch):
    config = tiny_config("lite", head_scale=4)
    net = build_model(config)
    (tmp_path / "commands.jsonl").write_text("{}\n")  # in a run folder, yet it names its own source
    save_checkpoint(tmp_path / "model.safetensors", net, config, {"source_run": "runs/x (epoch 1)"})
    wide = widen(monkeypatch, tmp_path / "model.safetensors", tmp_path / "wide.safetensors")
    assert wide.info["source_run"] == "runs/x (epoch 1)"


def test_a_file_widened_twice_lists_both_widenings_for_the_model_card(tmp_path, tiny_config, monkeypatch):
    import _runs
    import add_first_step_head

    monkeypatch.setattr(_runs, "ROOT", tmp_path)
    config = tiny_config("lite", head_scale=4)
    run = tmp_path / "run"
    run.mkdir()
    (run / "commands.jsonl").write_text("{}\n")
    save_checkpoint(run / "checkpoint_last.safetensors", build_model(config), config, {"epoch": 7})
    widen(monkeypatch, run / "checkpoint_last.safetensors", tmp_path / "wide.safetensors")
    monkeypatch.setattr(sys, "argv", ["add_first_step_head.py", str(tmp_path / "wide.safetensors"), str(tmp_path / "head.safetensors")])
    add_first_step_head.main()
    steps = _runs.starting_checkpoint(str(tmp_path / "head.safetensors"))
    assert len(steps) == 1
    text = steps[0]
    assert "checkpoint_last.safetensors` (epoch 7): state-prototype" in text and "`python benchmarks/add_prototypes.py`" in text
    assert "wide.safetensors`: a first-step head" in text and "`python benchmarks/add_first_step_head.py`" in text
    assert text.index("add_prototypes.py") < text.index("add_first_step_head.py")  # oldest first
