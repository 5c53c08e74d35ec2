"""benchmarks/chain.py: a chain skips the stages that ended and resumes a stopped one with
what is left of its CPU budget; a carried stage lets a checkout without runs/ go on, counting
the whole chain behind it."""

import json
import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import _runs  # noqa: E402
import chain as chain_script  # noqa: E402
from chain import Chain, Stage, commands, ready  # noqa: E402


def write_lines(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def ended_run(run, minutes, argv=("a",), reason="time_budget"):
    write_lines(run / "commands.jsonl", [
        {"argv": list(argv), "started": "t0", "status": "started", "start_epoch": 0},
        {"argv": list(argv), "started": "t0", "status": "ended", "cpu_minutes": minutes, "reason": reason}])


@pytest.fixture
def root(tmp_path, monkeypatch):
    for module in (chain_script, _runs):
        monkeypatch.setattr(module, "ROOT", tmp_path)
    monkeypatch.setattr(_runs, "GONE_RUNS", tmp_path / "gone_runs.json")
    return tmp_path


def test_ended_stages_are_skipped_and_a_stopped_one_resumes_with_its_budget_left(root):
    chain = Chain("lgg", (
        Stage("a", "train", 60, ("--t-max", "1")),
        Stage("wide", "widen", start="a", script="add_prototypes.py"),
        Stage("b", "finetune", 30, ("--crop", "256"), start="wide"),
        Stage("c", "finetune", 10, start="b"),
    ))
    base = root / "runs" / "chain-x"
    ended_run(base / "a", 60.0)
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


def test_a_cancelled_stage_is_resumed_not_skipped(root):
    chain = Chain("lgg", (Stage("a", "train", 60),))
    base = root / "runs" / "chain-x"
    ended_run(base / "a", 25.0, reason="cancelled")
    (base / "a" / "training_state.safetensors").write_bytes(b"x")
    a = [str(x) for x in dict((s.name, argv) for s, argv in commands(chain, base, "DATA", 1))["a"]]
    assert "--resume" in a and a[a.index("--cpu-budget") + 1] == "35.00"


def test_a_carried_stage_starts_the_next_one_in_a_checkout_without_its_runs(root, tiny_config):
    from napari_pixeldrl.model.checkpoint import load_checkpoint, save_checkpoint
    from napari_pixeldrl.model.network import build_model

    chain = Chain("lgg", (Stage("a", "train", 60), Stage("b", "finetune", 30, start="a"),
                          Stage("c", "finetune", 10, start="b"), Stage("d", "finetune", 10, start="b")))
    base = root / "runs" / "chain-x"
    config = tiny_config("lite")
    save_checkpoint(base / "a" / "checkpoint_best.safetensors", build_model(config), config, {"epoch": 3})
    ended_run(base / "a", 59.5, argv=("pixeldrl", "train"))
    save_checkpoint(base / "b" / "checkpoint_best.safetensors", build_model(config), config,
                    {"epoch": 2, "data": {"init_checkpoint": "runs/chain-x/a/checkpoint_best.safetensors"}})
    ended_run(base / "b", 30.0, argv=("pixeldrl", "finetune"))
    out = chain_script.carry(base, chain.stages[1])
    assert out == root / "benchmarks" / "carry" / "x" / "b.safetensors"
    assert load_checkpoint(out).info["source_run"] == "runs/chain-x/b (epoch 2)"
    record = json.loads((root / "gone_runs.json").read_text())["runs/chain-x/b"]
    assert record["cpu_minutes"] == pytest.approx(89.5)  # the whole chain behind b
    assert "`pixeldrl train`" in record["steps"] and "`pixeldrl finetune`" in record["steps"]
    shutil.rmtree(base)  # a later checkout: no runs/
    plan = {s.name: argv for s, argv in commands(chain, base, "DATA", 1)}
    assert plan["a"] is None and plan["b"] is None  # b carried, so a need not run again
    c = [str(x) for x in plan["c"]]
    assert c[c.index("--checkpoint") + 1] == "benchmarks/carry/x/b.safetensors"
    # Once c has run from the carried file, its budget counts the chain behind b from the record.
    save_checkpoint(base / "c" / "checkpoint_best.safetensors", build_model(config), config,
                    {"epoch": 1, "data": {"init_checkpoint": "benchmarks/carry/x/b.safetensors"}})
    ended_run(base / "c", 10.0)
    assert _runs.cpu_minutes_spent(base / "c") == pytest.approx(99.5) and _runs.uncounted_training(base / "c") is None


def test_stages_start_as_soon_as_their_starts_are_done():
    a, w = Stage("a", "train", 60), Stage("w", "widen", start="a", script="s.py")
    v, c, later = Stage("v", "finetune", 20, start="w"), Stage("c", "finetune", 20, start="a"), Stage("z", "finetune", 5, start="v")
    plan = [(a, None), (w, ["widen"]), (v, ["v"]), (c, ["c"]), (later, ["z"])]
    assert [s.name for s, _ in ready(plan, 2)] == ["w", "c"]
    # w (a widening) ended while c runs: v starts in the slot w left.
    plan = [(a, None), (w, None), (v, ["v"]), (later, ["z"])]
    assert [s.name for s, _ in ready(plan, 1, running={"c"})] == ["v"]
    assert ready(plan, 0, running={"c", "v"}) == []
    assert ready([(a, None), (w, None), (v, None), (c, None), (later, None)], 2) == []


def test_the_command_line_lists_a_chain_and_refuses_an_unknown_stage():
    import subprocess

    script = Path(chain_script.__file__)
    done = subprocess.run([sys.executable, str(script), "--chain", "lgg-firsthead", "--dry-run"], capture_output=True, text=True)
    assert done.returncode == 0 and [line.split(":")[0] for line in done.stdout.splitlines()] == [
        s.name for s in chain_script.CHAINS["lgg-firsthead"].stages]
    bad = subprocess.run([sys.executable, str(script), "--chain", "lgg-firsthead", "--carry", "nope"], capture_output=True, text=True)
    assert bad.returncode == 2 and "has no stage 'nope'" in bad.stderr and "Traceback" not in bad.stderr


def test_a_stage_can_start_from_the_weights_at_the_stop_and_they_are_carried(root, tiny_config):
    from napari_pixeldrl.model.checkpoint import load_checkpoint, save_checkpoint
    from napari_pixeldrl.model.network import build_model

    chain = Chain("msd", (Stage("a", "train", 60), Stage("w", "widen", start="a", script="s.py", start_weights="last"),
                          Stage("c", "finetune", 10, start="a")))
    base = root / "runs" / "chain-x"
    config = tiny_config("lite")
    for weights, epoch in (("best", 2), ("last", 5)):
        save_checkpoint(base / "a" / f"checkpoint_{weights}.safetensors", build_model(config), config, {"epoch": epoch})
    ended_run(base / "a", 60.0, argv=("pixeldrl", "train"))
    plan = {s.name: [str(x) for x in argv] for s, argv in commands(chain, base, "DATA", 1) if argv}
    assert plan["w"][2] == "runs/chain-x/a/checkpoint_last.safetensors"
    assert plan["c"][plan["c"].index("--checkpoint") + 1] == "runs/chain-x/a/checkpoint_best.safetensors"
    chain_script.carry(base, chain.stages[0], chain)
    kept = root / "benchmarks" / "carry" / "x"
    assert load_checkpoint(kept / "a-last.safetensors").info["source_run"] == "runs/chain-x/a (epoch 5)"
    assert load_checkpoint(kept / "a.safetensors").info["source_run"] == "runs/chain-x/a (epoch 2)"
    shutil.rmtree(base)
    plan = {s.name: [str(x) for x in argv] for s, argv in commands(chain, base, "DATA", 1) if argv}
    assert plan["w"][2] == "benchmarks/carry/x/a-last.safetensors"


def test_a_chains_peer_gets_the_cpu_minutes_behind_the_stage_it_is_the_peer_of():
    for name, chain in chain_script.CHAINS.items():
        stages = {s.name: s for s in chain.stages}
        if "peer" not in stages:
            continue
        behind, stage = 0.0, stages[chain.peer_of]
        while stage is not None:
            behind += stage.cpu_minutes
            stage = stages.get(stage.start)
        assert stages["peer"].cpu_minutes == behind, name


def test_every_chain_starts_stages_from_earlier_ones_and_trains_a_prompt_channel_from_boxes():
    """A stage starts from one listed before it, a widening names a script that is there, and
    every fine-tune behind a prompt channel has box starts (from all ones only, it learns nothing)."""
    for name, chain in chain_script.CHAINS.items():
        seen: dict[str, Stage] = {}
        for stage in chain.stages:
            assert stage.start is None or stage.start in seen, (name, stage.name)
            if stage.kind == "widen":
                assert (Path(chain_script.__file__).parent / stage.script).exists(), (name, stage.script)
            behind, prompt = stage, False
            while behind is not None:
                prompt |= behind.script == "add_prompt_channel.py"
                behind = seen.get(behind.start)
            if prompt and stage.kind == "finetune":
                assert "--start-boxes" in stage.options, (name, stage.name)
            seen[stage.name] = stage
