"""Make a trained PixelDRL-MG checkpoint segment inside a user's box (model config
``box_zoom``, model/box_zoom.py): the same weights, run on the start mask's box resized to
S x S, so that a fine-tune on the truth's boxes (`pixeldrl finetune --checkpoint FILE ...`,
which then trains on box crops and validates from boxes) starts from what the network knows.

    python benchmarks/zoom_to_box.py lgg runs/x/lgg-box128.safetensors --side 128
"""

from __future__ import annotations

import argparse

from _widen import widen_main
from napari_pixeldrl.model.network import build_model


def zoomed(net, args: argparse.Namespace):
    if net.config.box_zoom:
        raise ValueError(f"the network already segments inside a box (box_zoom {net.config.box_zoom})")
    out = build_model(net.config.replace(box_zoom=args.side).validate())
    out.load_state_dict(net.state_dict())
    return out


def main() -> None:
    widen_main(__doc__, "zoom_to_box.py", zoomed, lambda args: f"box_zoom {args.side}: episodes inside the start mask's box, resized",
               options=lambda p: p.add_argument("--side", type=int, default=128, help="S: the box is resized to S x S (default 128)"))


if __name__ == "__main__":
    main()
