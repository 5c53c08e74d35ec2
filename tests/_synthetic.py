"""Synthetic 64x64 slices for the training tests: bright discs on a darker noisy background."""

import numpy as np

TINY = dict(widths=(4, 8, 8, 8), head_widths=(8, 8), head_dilations=(1, 2), context_channels=8, fine_channels=4)


def discs(n: int, seed: int = 0, size: int = 64, radius=(10, 20)):
    """(images (1, H, W) float32 in [0, 1], masks (H, W) uint8) lists."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    images, masks = [], []
    for _ in range(n):
        cy, cx = rng.integers(size // 3, 2 * size // 3, 2)
        r = rng.integers(*radius)
        m = ((yy - cy) ** 2 + (xx - cx) ** 2 < r * r).astype(np.uint8)
        im = np.clip(rng.normal(0.25, 0.05, (size, size)) + 0.5 * m, 0, 1).astype(np.float32)[None]
        images.append(im)
        masks.append(m)
    return images, masks
