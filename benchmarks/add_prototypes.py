"""Give a lite checkpoint the state-prototype inputs without changing what it computes
(``model.network.with_state_prototypes``: the new inputs at zero weight), so that a
fine-tune (`pixeldrl finetune --checkpoint FILE --coarse-first 4 ...`) learns to use the
state from a network that already segments.

    python benchmarks/add_prototypes.py heart runs/heart-widened/heart_prototypes.safetensors
"""

from __future__ import annotations

import argparse
from pathlib import Path

from _runs import ROOT
from napari_pixeldrl.model.checkpoint import load_checkpoint, save_checkpoint
from napari_pixeldrl.model.network import with_state_prototypes


def name_source_run(info: dict, checkpoint) -> None:
    """A run's own checkpoint: name the run in ``info`` (relative to the repository, where
    benchmarks/_runs.run_chain reads it), so that a fine-tune of the widened file counts
    that run's CPU time in its chain."""
    run = Path(checkpoint).resolve().parent
    if "source_run" not in info and (run / "commands.jsonl").exists():
        where = run.relative_to(ROOT) if run.is_relative_to(ROOT) else run
        info["source_run"] = f"{where.as_posix()} (epoch {info.get('epoch')})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint")
    parser.add_argument("out", type=Path)
    args = parser.parse_args()
    loaded = load_checkpoint(args.checkpoint)
    try:
        net = with_state_prototypes(loaded.model)
    except ValueError as err:  # already widened, or not a lite network: nothing to add
        parser.exit(2, f"add_prototypes.py: {args.checkpoint}: {err}; pass a lite checkpoint without them\n")
    info = dict(loaded.info)
    info["widened_from"] = f"{args.checkpoint}: state-prototype inputs added at zero weight"
    name_source_run(info, args.checkpoint)
    save_checkpoint(args.out, net, net.config, info)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
