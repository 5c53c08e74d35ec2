"""Give a lite checkpoint a head of its own for step 1, a copy of the shared head, without
changing what it computes (``model.network.with_first_step_head``), so that a fine-tune
(`pixeldrl finetune --checkpoint FILE --coarse-first 4 --t-max 3 ...`) can let step 1 and
the later steps learn different decisions.

    python benchmarks/add_first_step_head.py runs/x/checkpoint_best.safetensors runs/x/first_head.safetensors
"""

from __future__ import annotations

from _widen import widen_main
from napari_pixeldrl.model.network import with_first_step_head


def main() -> None:
    widen_main(__doc__, "add_first_step_head.py", with_first_step_head, "a first-step head added, a copy of the shared head")


if __name__ == "__main__":
    main()
