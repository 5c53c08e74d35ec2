"""Give a lite checkpoint a head of its own for step 1, a copy of the shared head, without
changing what it computes (``model.network.with_first_step_head``), so that a fine-tune
(`pixeldrl finetune --checkpoint FILE --first-step-recall 9 ...`) can let step 1 and the
later steps learn different decisions.

    python benchmarks/add_first_step_head.py runs/x/checkpoint_best.safetensors runs/x/first_head.safetensors
"""

from __future__ import annotations

import argparse
from pathlib import Path

from add_prototypes import name_source_run
from napari_pixeldrl.model.checkpoint import load_checkpoint, save_checkpoint
from napari_pixeldrl.model.network import with_first_step_head


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint")
    parser.add_argument("out", type=Path)
    args = parser.parse_args()
    loaded = load_checkpoint(args.checkpoint)
    if loaded.config.arch != "pixeldrl" or loaded.config.head_scale == 1 or not loaded.config.shared_head:
        parser.exit(2, f"add_first_step_head.py: {args.checkpoint} is not a lite network with a shared head\n")
    try:
        net = with_first_step_head(loaded.model)
    except ValueError as err:
        parser.exit(2, f"add_first_step_head.py: {args.checkpoint}: {err}\n")
    info = dict(loaded.info)
    info["widened_from"] = f"{args.checkpoint}: a first-step head added, a copy of the shared head"
    name_source_run(info, args.checkpoint)
    save_checkpoint(args.out, net, net.config, info)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
