"""Give a lite checkpoint's extractor m(0), the episode's start mask, as one more input
channel at zero weight, without changing what it computes
(``model.network.with_prompt_channel``), so that a fine-tune with episodes from boxes
(`pixeldrl finetune --checkpoint FILE --start-boxes 0.5 ...`) can teach it to use a box.

    python benchmarks/add_prompt_channel.py runs/x/checkpoint_best.safetensors runs/x/prompt.safetensors
"""

from __future__ import annotations

from _widen import widen_main
from napari_pixeldrl.model.network import with_prompt_channel


def main() -> None:
    widen_main(__doc__, "add_prompt_channel.py", with_prompt_channel, "a prompt channel added: the extractor sees m(0), at zero weight")


if __name__ == "__main__":
    main()
