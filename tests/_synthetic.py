"""Synthetic data and stand-in models for the tests: bright discs on a darker noisy background, fixed blobs."""

import numpy as np
import torch

from napari_pixeldrl.training.synthetic import discs  # noqa: F401  (re-exported for the tests)

def disc_folder(root, empty=()):
    """A folder dataset of 10 patients, one 64x64 disc slice each; the patients in ``empty`` hold no object."""
    from PIL import Image

    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    images, masks = discs(10, 0)
    for i, (im, m) in enumerate(zip(images, masks)):
        m = m * 0 if i in empty else m
        Image.fromarray((im[0] * 255).astype(np.uint8)).save(root / "images" / f"p{i}__0.png")
        Image.fromarray((m * 255).astype(np.uint8)).save(root / "masks" / f"p{i}__0.png")
    return root


TINY = dict(widths=(4, 8, 8, 8), head_widths=(8, 8), head_dilations=(1, 2), context_channels=8, fine_channels=4)


def two_blobs():
    m = np.zeros((20, 20), np.uint8)
    m[2:5, 2:5] = 1  # 9 pixels
    m[10:16, 10:16] = 1  # 36 pixels
    m[16, 16] = 1  # touches the big one diagonally: 8-connected to it
    return m


class FixedLogits(torch.nn.Module):
    """A stand-in U-Net whose output is a fixed two-blob logit map."""

    def forward(self, x):
        m = torch.from_numpy(two_blobs()).float()
        out = torch.full((x.shape[0], 1, *x.shape[-2:]), -5.0)
        out[:, 0, :20, :20] = m * 10 - 5
        return out
