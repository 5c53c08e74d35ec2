"""Train a model's whole chain of stages in one command, stage by stage, so that a session
can start it at once and nothing of it depends on run folders of earlier sessions
(runs/ is not kept between sessions' checkouts).

    python benchmarks/chain.py --chain lgg-firsthead              # 1 thread per stage, 2 stages at once where they can
    python benchmarks/chain.py --chain lgg-firsthead --dry-run     # the commands, nothing run
    python benchmarks/chain.py --chain lgg-firsthead --carry onestep   # keep a stage for the next session
    python benchmarks/chain.py --chain heart-firsthead --jobs 3    # its BasicUNet peer trains beside it

Each stage lands in runs/chain-<chain>/<stage>. A stage whose folder holds a command that
ended is skipped; one that was stopped resumes with what is left of its CPU budget (counted as
benchmarks/_runs counts it: a killed command's whole epochs); a widening writes its file once.
Stages whose starts are done run at once (``--jobs``), one thread each by default. The runs
count their budget in process CPU time (``--cpu-budget``), whatever the thread count; more
threads finish sooner but do a little less work for the same budget (threads cost CPU time
to coordinate), so budgets compared with 1-thread peers are spent on 1 thread. Fine-tunes
name the checkpoint they start from, so ``ship_models.py`` and ``refine.py`` count the whole
chain behind the last stage.

A chain longer than a session carries a finished stage to the next one: ``--carry STAGE``
writes its best checkpoint (float16, as the bundled models) to benchmarks/carry/<chain>/ and
its CPU minutes and commands to benchmarks/results/gone_runs.json; a later checkout without
that run folder starts the next stage from the carried file and counts the record.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from _runs import DATA, ROOT, ended, next_command, pixeldrl, remember_run

ONE_STEP = ("--t-max", "1", "--lr", "2e-4", "--ema-decay", "0.995")


@dataclass(frozen=True)
class Stage:
    """One stage: ``train`` from scratch, ``finetune`` the best checkpoint of stage ``start``
    (or a widened file), or ``widen`` stage ``start``'s best checkpoint with ``script``.
    ``start_weights="last"`` starts from the run's checkpoint_last instead (its weights at
    the budget stop; for runs trained before the trainer kept those, and the heart chain's
    carried first stage is one, after its last whole epoch): on a split with few validation
    patients the best checkpoint is a peak of them, and a fine-tune that starts there is
    measured against a number it was selected for."""
    name: str
    kind: str
    cpu_minutes: float = 0.0
    options: tuple[str, ...] = ()
    start: str | None = None
    script: str | None = None
    start_weights: str = "best"


@dataclass(frozen=True)
class Chain:
    dataset: str
    stages: tuple[Stage, ...] = field(default_factory=tuple)
    about: str = ""
    # The stage whose whole chain of CPU minutes a ``peer`` stage trains for.
    peer_of: str = "refine"


CHAINS = {
    # The one-step chain behind the 0.8253 LGG model of refine_lgg-crop256.md (60 + 60 + 45 CPU-min),
    # then the first-step head with the refining recipe of refine_lgg-firsthead.md (0.8254, +0.121
    # from m(1)) and that screen's one-step control; both last stages start from the same checkpoint.
    "lgg-firsthead": Chain("lgg", (
        Stage("onestep", "train", 60, ("--preset", "lite", "--t-max", "1", "--fine-decoder", "16")),
        Stage("prototypes", "widen", start="onestep", script="add_prototypes.py"),
        Stage("onestep-prototypes", "finetune", 60, ONE_STEP, start="prototypes"),
        Stage("onestep-crop256", "finetune", 45, (*ONE_STEP, "--crop", "256"), start="onestep-prototypes"),
        Stage("first-head", "widen", start="onestep-crop256", script="add_first_step_head.py"),
        Stage("refine", "finetune", 20, ("--coarse-first", "4", "--t-max", "3", "--lr", "2e-4", "--ema-decay", "0.995",
                                         "--crop", "256"), start="first-head"),
        Stage("control", "finetune", 20, (*ONE_STEP, "--crop", "256"), start="onestep-crop256"),
        # Issue 16: the refine stage's recipe and budget on the same start given a prompt channel,
        # half of its episodes from the truth's box grown by 0-20 pixels.
        Stage("prompt", "widen", start="first-head", script="add_prompt_channel.py"),
        Stage("refine-prompt", "finetune", 20, ("--coarse-first", "4", "--t-max", "3", "--lr", "2e-4", "--ema-decay",
                                                "0.995", "--crop", "256", "--start-boxes", "0.5"), start="prompt"),
        # The prompt channel from the whole-slice stage on: 65 of the chain's CPU minutes with box starts.
        Stage("prompt-early", "widen", start="onestep-prototypes", script="add_prompt_channel.py"),
        Stage("onestep-crop256-prompt", "finetune", 45, (*ONE_STEP, "--crop", "256", "--start-boxes", "0.5"),
              start="prompt-early"),
        Stage("first-head-prompt", "widen", start="onestep-crop256-prompt", script="add_first_step_head.py"),
        Stage("refine-prompt-early", "finetune", 20, ("--coarse-first", "4", "--t-max", "3", "--lr", "2e-4",
                                                      "--ema-decay", "0.995", "--crop", "256", "--start-boxes", "0.5"),
              start="first-head-prompt"),
        Stage("control-prompt-early", "finetune", 20, (*ONE_STEP, "--crop", "256", "--start-boxes", "0.5"),
              start="onestep-crop256-prompt"),
    ), "LGG: one step with the fine decoder, state prototypes, whole-slice crops, then a first-step head and "
       "the refining recipe, with its one-step control, and the same recipe with a prompt channel and box starts "
       "(from the first-step head, or from the whole-slice stage on, with its one-step control)"),
    # The heart: the bundled heart's one-step recipe from scratch (94 CPU-min, 256-pixel crops, the fine
    # decoder), then state prototypes and a first-step head on its weights after its last whole epoch
    # (not its best validation on 2 patients), the refining recipe at the lr of refine_heart-lowlr-head.md beside
    # its one-step control, and the BasicUNet peer for the 114 CPU-min behind the refining stage.
    "heart-firsthead": Chain("msd", (
        Stage("onestep", "train", 94, ("--preset", "lite", "--t-max", "1", "--crop", "256", "--fine-decoder", "16")),
        Stage("prototypes", "widen", start="onestep", script="add_prototypes.py", start_weights="last"),
        Stage("first-head", "widen", start="prototypes", script="add_first_step_head.py"),
        Stage("refine", "finetune", 20, ("--coarse-first", "4", "--t-max", "3", "--lr", "5e-5", "--ema-decay", "0.995"),
              start="first-head"),
        Stage("control", "finetune", 20, ("--t-max", "1", "--lr", "5e-5", "--ema-decay", "0.995"), start="prototypes"),
        Stage("peer", "train", 114, ("--preset", "basicunet", "--crop", "256")),
        # Issue 16: the one-step recipe of the first stage with a prompt channel, half of its
        # episodes from the truth's box grown by 0-20 pixels, for the refining stage's budget.
        Stage("prompt", "widen", start="prototypes", script="add_prompt_channel.py"),
        Stage("control-prompt", "finetune", 20, (*ONE_STEP, "--start-boxes", "0.5"), start="prompt"),
    ), "heart: one step with the fine decoder at 256-pixel crops, then a first-step head and the refining "
       "recipe from its last whole epoch's weights, with its one-step control and its BasicUNet peer, and "
       "the one-step recipe with a prompt channel and box starts"),
}


def heart_val_fold(fold: int, folds: int = 4) -> Chain:
    """The heart chain's one-step stage, its refining stage and its one-step control on
    validation fold ``fold`` of the 13 development patients (``--val-fold``; the default
    split's 3 test patients stay out), so that refining against one-step is chosen on every
    development patient over the folds instead of the 2 of the default split, whose DICE
    swings by up to 0.1 from one epoch to the next. The first three: about 174 CPU-min per fold."""
    split = ("--val-fold", str(fold), "--folds", str(folds))
    return Chain("msd", (
        Stage("onestep", "train", 94, ("--preset", "lite", "--t-max", "1", "--crop", "256", "--fine-decoder", "16", *split)),
        Stage("prototypes", "widen", start="onestep", script="add_prototypes.py", start_weights="last"),
        Stage("first-head", "widen", start="prototypes", script="add_first_step_head.py"),
        Stage("refine", "finetune", 20, ("--coarse-first", "4", "--t-max", "3", "--lr", "5e-5", "--ema-decay", "0.995", *split),
              start="first-head"),
        Stage("control", "finetune", 20, ("--t-max", "1", "--lr", "5e-5", "--ema-decay", "0.995", *split), start="prototypes"),
        # rule_heart-valfolds-rlweight.md, variant A: the refine stage with the supervised term 10x the lite default's,
        # so that the policy-gradient and value terms of steps 2-3 (averaged over their few live pixels)
        # pull the shared layers about as little, against the supervised term, as they do in the control.
        Stage("refine-sw50", "finetune", 20, ("--coarse-first", "4", "--t-max", "3", "--lr", "5e-5", "--ema-decay",
                                              "0.995", "--supervised-weight", "50", *split), start="first-head"),
        # Variant B of the same rule: the refine stage with those terms divided by all pixels instead of the live ones.
        Stage("refine-allmean", "finetune", 20, ("--coarse-first", "4", "--t-max", "3", "--lr", "5e-5", "--ema-decay",
                                                 "0.995", "--live-mean", "all", *split), start="first-head"),
        # rule_heart-valfolds-t2.md: the refine stage one step shorter, so that the same CPU time buys more epochs.
        Stage("refine-t2", "finetune", 20, ("--coarse-first", "4", "--t-max", "2", "--lr", "5e-5", "--ema-decay", "0.995",
                                            *split), start="first-head"),
        # The standard peer on the same fold for the one-step stage's budget: lite against BasicUNet on every
        # development patient, not on the default split's 2 validation patients.
        Stage("peer", "train", 94, ("--preset", "basicunet", "--crop", "256", *split)),
        # rule_heart-jitter.md: the one-step stage with zoom and gamma augmentation, from scratch, against the
        # one-step stage and the peer (the screen of rule_heart-jitter-screen.md passed on fold 0).
        Stage("onestep-jitter", "train", 94, ("--preset", "lite", "--t-max", "1", "--crop", "256", "--fine-decoder", "16",
                                              "--scale-jitter", "0.2", "--gamma-jitter", "0.4", *split)),
        # rule_heart-jitter.md, point 1 (the augmentation passed on the four folds): the peer with the same
        # augmentation, so that the README compares the pair trained on the same data.
        Stage("peer-jitter", "train", 94, ("--preset", "basicunet", "--crop", "256", "--scale-jitter", "0.2",
                                           "--gamma-jitter", "0.4", *split)),
    ), f"heart, validation fold {fold} of {folds} of the development patients: the heart-firsthead chain's "
       "one-step, refine and control stages, the refine stage with a 10x supervised term, with its "
       "live-pixel terms divided by all pixels, or one step shorter, the BasicUNet peer of the one-step stage, "
       "and the one-step stage and the peer with zoom and gamma augmentation",
       peer_of="onestep")


CHAINS.update({f"heart-valfold{k}": heart_val_fold(k) for k in range(4)})

def stage_path(base: Path, stage: Stage) -> Path:
    """A stage's run folder, or a widening's file."""
    return base / f"{stage.name}.safetensors" if stage.kind == "widen" else base / stage.name


def carried(base: Path, stage: Stage, weights: str = "best") -> Path:
    """Where ``--carry`` keeps a stage's best checkpoint (or its weights at the stop)."""
    suffix = "" if weights == "best" else f"-{weights}"
    return ROOT / "benchmarks" / "carry" / base.name.removeprefix("chain-") / f"{stage.name}{suffix}.safetensors"


def start_file(base: Path, chain: Chain, consumer: Stage) -> Path:
    """The file ``consumer`` starts from: a widening's, a run's best checkpoint (or its weights
    at the stop, as the consumer asks), or, where the run folder is not here, the carried one."""
    stage = next(s for s in chain.stages if s.name == consumer.start)
    path = stage_path(base, stage)
    if stage.kind == "widen":
        return path
    weights = consumer.start_weights
    own = path / f"checkpoint_{weights}.safetensors"
    kept = carried(base, stage, weights)
    return kept if not own.exists() and kept.exists() else own


def carry(base: Path, stage: Stage, chain: Chain | None = None) -> Path:
    """Keep a finished run stage for a later checkout: its best checkpoint as float16 (and its
    weights at the stop, where a stage of ``chain`` starts from those), naming the run it came
    from, and the run's CPU minutes and commands in gone_runs.json."""
    import datetime as dt

    from napari_pixeldrl.model.checkpoint import load_checkpoint, save_checkpoint

    run = stage_path(base, stage)
    if stage.kind == "widen" or not ended(run) or not (run / "checkpoint_best.safetensors").exists():
        raise SystemExit(f"chain.py: {stage.name}: only a run stage that ended here can be carried")
    wanted = {"best"} | {s.start_weights for s in (chain.stages if chain else ()) if s.start == stage.name}
    where = run.relative_to(ROOT).as_posix()
    for weights in sorted(wanted):
        loaded = load_checkpoint(run / f"checkpoint_{weights}.safetensors")
        info = dict(loaded.info)
        info["source_run"] = f"{where} (epoch {info.get('epoch')})"
        kept = carried(base, stage, weights)
        kept.parent.mkdir(parents=True, exist_ok=True)
        save_checkpoint(kept, loaded.model, loaded.config, info, half=True)
    out = carried(base, stage)
    when = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    # The whole chain behind the stage: a record ends the chain that reads it.
    remember_run(run, f"benchmarks/chain.py --carry {stage.name}, {when}, from the run folders then",
                 carried_as=out.relative_to(ROOT).as_posix())
    return out


def commands(chain: Chain, base: Path, data: str, threads: int) -> list[tuple[Stage, list[str] | None]]:
    """What each stage would run now (None: done), in order; a stage that depends on one not
    yet done gets the command it will run."""
    rel = (lambda p: p.relative_to(ROOT) if p.is_relative_to(ROOT) else p)
    plan = []
    for stage in chain.stages:
        path = stage_path(base, stage)
        if stage.kind == "widen":
            done = path.exists()
            argv = [sys.executable, f"benchmarks/{stage.script}", str(rel(start_file(base, chain, stage))), str(rel(path))]
        elif not path.exists() and carried(base, stage).exists():
            done, argv = True, []
        else:  # a new run, the rest of a stopped one's budget, or nothing once it ended
            start = ("--checkpoint", rel(start_file(base, chain, stage))) if stage.kind == "finetune" else ()
            argv = next_command(path, stage.cpu_minutes, threads, pixeldrl(
                stage.kind, "--dataset", chain.dataset, "--data", data, *start, "--threads", threads, "--seed", "0",
                "--cpu-budget", stage.cpu_minutes, *stage.options, "--out", rel(path), "--no-progress"))
            done = argv is None
        plan.append((stage, None if done else argv))
    # A stage that a begun or carried later stage starts from needs no run (its folder may be gone).
    begun = {s.name for s in chain.stages if stage_path(base, s).exists() or carried(base, s).exists()}
    needed_by_begun = set()
    for stage in reversed(chain.stages):
        if stage.start and (stage.name in begun or stage.name in needed_by_begun):
            needed_by_begun.add(stage.start)
    return [(s, None if s.name in needed_by_begun else argv) for s, argv in plan]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chain", required=True, choices=sorted(CHAINS))
    parser.add_argument("--threads", type=int, default=1, help="threads of each stage's run")
    parser.add_argument("--jobs", type=int, default=2, help="stages that may run at once (their starts done)")
    parser.add_argument("--data", default=None, help="default: the release under ../shared/data")
    parser.add_argument("--dry-run", action="store_true", help="print the commands left, run nothing")
    parser.add_argument("--carry", metavar="STAGE", help="keep this finished stage for a later checkout, run nothing")
    args = parser.parse_args()
    chain = CHAINS[args.chain]
    base = ROOT / "runs" / f"chain-{args.chain}"
    if args.carry:
        stage = next((s for s in chain.stages if s.name == args.carry), None)
        if stage is None:
            parser.exit(2, f"chain.py: {args.chain} has no stage {args.carry!r}: {[s.name for s in chain.stages]}\n")
        print(f"carried {stage.name} to {carry(base, stage, chain).relative_to(ROOT)}")
        return
    data = args.data or DATA[chain.dataset]
    if args.dry_run:
        for stage, argv in commands(chain, base, data, args.threads):
            print(f"{stage.name}: " + ("done" if argv is None else " ".join(map(str, argv))))
        return
    base.mkdir(parents=True, exist_ok=True)
    running: dict[str, subprocess.Popen] = {}
    while True:
        plan = [(s, argv) for s, argv in commands(chain, base, data, args.threads) if s.name not in running]
        for stage, argv in ready(plan, args.jobs - len(running), running):
            print(f"{stage.name}: {' '.join(map(str, argv))}", flush=True)
            log = open(base / f"{stage.name}.log", "a")
            running[stage.name] = subprocess.Popen(list(map(str, argv)), cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        if not running:
            return
        time.sleep(2)  # then start what the stages that ended let start
        for name, proc in list(running.items()):
            if proc.poll() is not None:
                del running[name]
                if proc.returncode != 0:
                    for other in running.values():
                        other.wait()
                    raise SystemExit(f"chain {args.chain}: stage {name} failed; see {base / name}.log")


def ready(plan: list[tuple[Stage, list[str] | None]], slots: int, running=()) -> list[tuple[Stage, list[str]]]:
    """The stages to start now, at most ``slots``: those left whose start is done (not running),
    in chain order; a stage starts as soon as its start is done, so a refining variant and its
    one-step control from the same checkpoint run side by side."""
    done = {stage.name for stage, argv in plan if argv is None}
    return [(s, argv) for s, argv in plan if argv is not None and s.name not in running
            and (s.start is None or s.start in done)][:max(slots, 0)]


if __name__ == "__main__":
    main()
