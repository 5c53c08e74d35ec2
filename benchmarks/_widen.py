"""The one body of the scripts that add inputs or heads to a trained lite checkpoint without
changing what it computes (add_prototypes.py, add_first_step_head.py)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Callable

from _runs import ROOT
from napari_pixeldrl.model.checkpoint import load_checkpoint, save_checkpoint


def name_source_run(info: dict, checkpoint) -> None:
    """A run's own checkpoint: name the run in ``info`` (relative to the repository, where
    benchmarks/_runs.run_chain reads it), so that a fine-tune of the widened file counts
    that run's CPU time in its chain."""
    run = Path(checkpoint).resolve().parent
    if "source_run" not in info and (run / "commands.jsonl").exists():
        where = run.relative_to(ROOT) if run.is_relative_to(ROOT) else run
        info["source_run"] = f"{where.as_posix()} (epoch {info.get('epoch')})"


def widen_main(doc: str, script: str, widen: Callable, what, options: Callable | None = None) -> None:
    """``script CHECKPOINT OUT``: write ``widen(model)`` to OUT, its info saying ``what`` was
    added; a checkpoint ``widen`` cannot take gets one line and exit status 2. With
    ``options`` (adds arguments to the parser) ``widen`` and ``what`` take the parsed arguments too."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("checkpoint")
    parser.add_argument("out", type=Path)
    if options is not None:
        options(parser)
    args = parser.parse_args()
    loaded = load_checkpoint(args.checkpoint)
    if loaded.config.arch != "pixeldrl":
        parser.exit(2, f"{script}: {args.checkpoint} is a U-Net; pass a lite PixelDRL-MG checkpoint\n")
    try:
        net = widen(loaded.model) if options is None else widen(loaded.model, args)
        if options is not None:
            what = what(args)
    except ValueError as err:
        parser.exit(2, f"{script}: {args.checkpoint}: {err}\n")
    info = dict(loaded.info)
    info["widened_from"] = f"{args.checkpoint}: {what}"
    info["widened_by"] = f"python benchmarks/{script}"
    name_source_run(info, args.checkpoint)
    # Every widening since the run's checkpoint, oldest first (a file widened twice names both).
    info["widenings"] = [*loaded.info.get("widenings", []), {
        "from": str(args.checkpoint), "epoch": None if "widened_from" in loaded.info else loaded.info.get("epoch"),
        "what": what, "by": info["widened_by"]}]
    save_checkpoint(args.out, net, net.config, info)
    print(f"wrote {args.out}")
