"""benchmarks/chain.py: a chain skips the stages that ended and resumes a stopped one with
what is left of its CPU budget."""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import chain as chain_script  # noqa: E402
from chain import Chain, Stage, commands  # noqa: E402


def write_lines(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_ended_stages_are_skipped_and_a_stopped_one_resumes_with_its_budget_left(tmp_path, monkeypatch):
    monkeypatch.setattr(chain_script, "ROOT", tmp_path)
    chain = Chain("lgg", (
        Stage("a", "train", 60, ("--t-max", "1")),
        Stage("wide", "widen", start="a", script="add_prototypes.py"),
        Stage("b", "finetune", 30, ("--crop", "256"), start="wide"),
        Stage("c", "finetune", 10, start="b"),
    ))
    base = tmp_path / "runs" / "chain-x"
    write_lines(base / "a" / "commands.jsonl", [{"argv": ["a"], "started": "t0", "status": "started", "start_epoch": 0},
                                                {"argv": ["a"], "started": "t0", "status": "ended", "cpu_minutes": 60.0}])
    (base / "wide.safetensors").write_bytes(b"x")
    # b was killed after two whole epochs of 6 CPU-min each.
    write_lines(base / "b" / "commands.jsonl", [{"argv": ["b"], "started": "t1", "status": "started", "start_epoch": 0}])
    write_lines(base / "b" / "metrics.jsonl", [{"epoch": e, "cpu_seconds": 360.0} for e in (1, 2)])
    (base / "b" / "training_state.safetensors").write_bytes(b"x")
    plan = {s.name: argv for s, argv in commands(chain, base, "DATA", 2)}
    assert plan["a"] is None and plan["wide"] is None
    b = [str(x) for x in plan["b"]]
    assert b[b.index("train") + 1] == "--resume" and b[b.index("--cpu-budget") + 1] == "18.00"
    c = [str(x) for x in plan["c"]]
    assert c[c.index("--checkpoint") + 1] == "runs/chain-x/b/checkpoint_best.safetensors"
    assert c[c.index("--cpu-budget") + 1] == "10" and "finetune" in c


def test_a_carried_stage_starts_the_next_one_in_a_checkout_without_its_run(tmp_path, monkeypatch, tiny_config):
    import shutil

    from napari_pixeldrl.model.checkpoint import load_checkpoint, save_checkpoint
    from napari_pixeldrl.model.network import build_model

    monkeypatch.setattr(chain_script, "ROOT", tmp_path)
    monkeypatch.setattr(chain_script, "GONE_RUNS", tmp_path / "gone_runs.json")
    chain = Chain("lgg", (Stage("a", "train", 60), Stage("b", "finetune", 10, start="a")))
    base = tmp_path / "runs" / "chain-x"
    config = tiny_config("lite")
    (base / "a").mkdir(parents=True)
    save_checkpoint(base / "a" / "checkpoint_best.safetensors", build_model(config), config, {"epoch": 3})
    write_lines(base / "a" / "commands.jsonl", [{"argv": ["pixeldrl", "train"], "started": "t0", "status": "started", "start_epoch": 0},
                                                {"argv": ["pixeldrl", "train"], "started": "t0", "status": "ended", "cpu_minutes": 59.5}])
    out = chain_script.carry(base, chain.stages[0])
    assert out == tmp_path / "benchmarks" / "carry" / "x" / "a.safetensors"
    assert load_checkpoint(out).info["source_run"] == "runs/chain-x/a (epoch 3)"
    record = json.loads((tmp_path / "gone_runs.json").read_text())["runs/chain-x/a"]
    assert record["cpu_minutes"] == 59.5 and record["steps"] == ["`pixeldrl train`"]
    shutil.rmtree(base)  # a later checkout: no runs/
    plan = {s.name: argv for s, argv in commands(chain, base, "DATA", 1)}
    assert plan["a"] is None
    b = [str(x) for x in plan["b"]]
    assert b[b.index("--checkpoint") + 1] == "benchmarks/carry/x/a.safetensors"


def test_stages_whose_starts_are_done_run_at_once():
    from chain import ready

    a, w = Stage("a", "train", 60), Stage("w", "widen", start="a", script="s.py")
    v, c, later = Stage("v", "finetune", 20, start="w"), Stage("c", "finetune", 20, start="a"), Stage("z", "finetune", 5, start="v")
    plan = [(a, None), (w, ["widen"]), (v, ["v"]), (c, ["c"]), (later, ["z"])]
    assert [s.name for s, _ in ready(plan, 2)] == ["w", "c"]
    plan = [(a, None), (w, None), (v, ["v"]), (c, ["c"]), (later, ["z"])]
    assert [s.name for s, _ in ready(plan, 2)] == ["v", "c"] and [s.name for s, _ in ready(plan, 1)] == ["v"]
    assert ready([(a, None), (w, None), (v, None), (c, None), (later, None)], 2) == []
