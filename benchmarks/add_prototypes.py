"""Give a lite checkpoint the state-prototype inputs without changing what it computes
(``model.network.with_state_prototypes``: the new inputs at zero weight), so that a
fine-tune (`pixeldrl finetune --checkpoint FILE --coarse-first 4 ...`) learns to use the
state from a network that already segments.

    python benchmarks/add_prototypes.py heart runs/heart-widened/heart_prototypes.safetensors
"""

from __future__ import annotations

from _widen import widen_main
from napari_pixeldrl.model.network import with_state_prototypes


def main() -> None:
    widen_main(__doc__, "add_prototypes.py", with_state_prototypes, "state-prototype inputs added at zero weight")


if __name__ == "__main__":
    main()
