"""Synthetic slices for tests and small benchmarks: bright discs on a darker noisy background."""

from __future__ import annotations

import numpy as np


def discs(n: int, seed: int = 0, size: int = 64, radius=(10, 20), centre=(1 / 3, 2 / 3)):
    """``n`` slices: (images (1, H, W) float32 in [0, 1], masks (H, W) uint8) lists.

    Each holds one disc of a radius drawn from ``radius`` whose centre lies in the
    ``centre`` fraction of the slice on both axes.
    """
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    lo, hi = int(size * centre[0]), int(size * centre[1])
    images, masks = [], []
    for _ in range(n):
        cy, cx = rng.integers(lo, hi, 2)
        r = rng.integers(*radius)
        m = ((yy - cy) ** 2 + (xx - cx) ** 2 < r * r).astype(np.uint8)
        im = np.clip(rng.normal(0.25, 0.05, (size, size)) + 0.5 * m, 0, 1).astype(np.float32)[None]
        images.append(im)
        masks.append(m)
    return images, masks
