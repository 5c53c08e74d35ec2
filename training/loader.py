"""Training batches: random crops with augmentation, drawn from lists of slices.

Each epoch visits every training slice once, in an order and with crops drawn from a
NumPy generator seeded by (seed, epoch, rank), so an epoch is the same whether the run
was resumed or not, and each DDP process sees its own share of the slices.

Augmentation (``augment=True``): horizontal and vertical flips (p = 0.5 each) and a
rotation by an angle uniform in [-rotate, +rotate] degrees (p = 0.5; bilinear for the
image, nearest for the mask). Optional, off by default: a zoom about the slice's centre by a
factor uniform in [1 - scale_jitter, 1 + scale_jitter] (p = 0.5; the same interpolation) and
an intensity gamma, image ** g with log g uniform in [-log(1 + gamma_jitter), +log(1 +
gamma_jitter)] (p = 0.5; images are in [0, 1] after normalisation), so that a model sees
objects of other sizes and contrasts than its few training patients'. Off, they draw no random
numbers, so runs without them cut the same batches as before they existed. Crops are ``crop``
x ``crop`` (padded with zeros when the slice is smaller); with probability ``foreground_p`` the crop is centred on a random
object pixel, else placed uniformly, so that small objects (LGG tumours) are seen often.
Sizes are rounded up to a multiple of 8 (three 2x poolings in the extractor).

With ``box_zoom`` S (a model that segments inside a user's box) the crop is instead the
truth's bounding box, each side grown by its own 0..20 pixels as a user's box might be,
resized to S x S as inference resizes a box (model/box_zoom.py); slices without the
object are skipped by the caller (nobody boxes what is not there).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np
from scipy import ndimage

MULTIPLE = 8


@dataclass
class CropSettings:
    crop: int = 128
    augment: bool = True
    rotate: float = 15.0
    foreground_p: float = 0.5
    box_zoom: int = 0  # S: crops are the truth's box, grown at random, resized to S x S
    scale_jitter: float = 0.0  # zoom factor in [1 - s, 1 + s] (0: off)
    gamma_jitter: float = 0.0  # intensity gamma in [1 / (1 + g), 1 + g] (0: off)

    @classmethod
    def of(cls, train, box_zoom: int = 0) -> "CropSettings":
        """The settings of a training configuration (training.train_config.TrainConfig)."""
        return cls(crop=train.crop, augment=train.augment, rotate=train.rotate, foreground_p=train.foreground_p,
                   box_zoom=box_zoom, scale_jitter=train.scale_jitter, gamma_jitter=train.gamma_jitter)


def box_zoom_crop(image: np.ndarray, mask: np.ndarray, side: int, rng: np.random.Generator):
    """The truth's bounding box, each side grown by 0..BOX_GROW_MAX pixels, resized to
    ``side`` x ``side`` (image bilinear, mask bilinear then 0.5, as at inference)."""
    import torch

    from napari_pixeldrl.model.box_zoom import grown_box, zoom_box

    from .prompts import BOX_GROW_MAX

    box = grown_box(mask, tuple(int(g) for g in rng.integers(0, BOX_GROW_MAX + 1, size=4)))
    if box is None:
        raise ValueError("box_zoom_crop needs a slice that holds the object")
    crop, m = zoom_box(torch.from_numpy(np.ascontiguousarray(image)), torch.from_numpy(np.ascontiguousarray(mask)), box, side)
    return crop.numpy(), m.numpy()


def round_up(n: int, m: int = MULTIPLE) -> int:
    return int(math.ceil(n / m) * m)


def zoom_about_centre(image: np.ndarray, mask: np.ndarray, factor: float) -> tuple[np.ndarray, np.ndarray]:
    """Magnify one slice (C, H, W) and its mask (H, W) by ``factor`` about the centre, the
    shape kept: above 1 the borders are cut, below 1 they are zero."""
    h, w = mask.shape
    centre = np.array([(h - 1) / 2, (w - 1) / 2])
    matrix = np.eye(2) / factor  # output pixel -> input pixel
    offset = centre - matrix @ centre
    image = np.stack([ndimage.affine_transform(c, matrix, offset, order=1, mode="constant", cval=0.0) for c in image])
    mask = ndimage.affine_transform(mask, matrix, offset, order=0, mode="constant", cval=0)
    return image, mask


def augment_pair(image: np.ndarray, mask: np.ndarray, rng: np.random.Generator, rotate: float,
                 scale_jitter: float = 0.0, gamma_jitter: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Flip, rotate, zoom and change the contrast of one slice (C, H, W) and its mask (H, W) together."""
    if rng.random() < 0.5:
        image, mask = image[:, :, ::-1], mask[:, ::-1]
    if rng.random() < 0.5:
        image, mask = image[:, ::-1, :], mask[::-1, :]
    if rotate > 0 and rng.random() < 0.5:
        angle = float(rng.uniform(-rotate, rotate))
        image = ndimage.rotate(image, angle, axes=(1, 2), reshape=False, order=1, mode="constant", cval=0.0)
        mask = ndimage.rotate(mask, angle, axes=(0, 1), reshape=False, order=0, mode="constant", cval=0)
        image = np.clip(image, 0.0, 1.0)
    if scale_jitter > 0 and rng.random() < 0.5:
        image, mask = zoom_about_centre(image, mask, float(rng.uniform(1.0 - scale_jitter, 1.0 + scale_jitter)))
        image = np.clip(image, 0.0, 1.0)
    if gamma_jitter > 0 and rng.random() < 0.5:
        bound = math.log1p(gamma_jitter)
        image = np.clip(image, 0.0, 1.0) ** math.exp(float(rng.uniform(-bound, bound)))
    return np.ascontiguousarray(image, dtype=np.float32), np.ascontiguousarray(mask, dtype=np.uint8)


def random_crop(image: np.ndarray, mask: np.ndarray, size: int, rng: np.random.Generator, foreground_p: float):
    """A ``size`` x ``size`` crop (zero-padded if the slice is smaller)."""
    _, h, w = image.shape
    ph, pw = max(0, size - h), max(0, size - w)
    if ph or pw:
        image = np.pad(image, ((0, 0), (ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2)))
        mask = np.pad(mask, ((ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2)))
        _, h, w = image.shape
    if mask.any() and rng.random() < foreground_p:
        ys, xs = np.nonzero(mask)
        k = int(rng.integers(len(ys)))
        y0 = int(np.clip(ys[k] - size // 2, 0, h - size))
        x0 = int(np.clip(xs[k] - size // 2, 0, w - size))
    else:
        y0 = int(rng.integers(h - size + 1))
        x0 = int(rng.integers(w - size + 1))
    return image[:, y0 : y0 + size, x0 : x0 + size], mask[y0 : y0 + size, x0 : x0 + size]


def crop_size_for(images: Sequence[np.ndarray], crop: int | None) -> int:
    """The crop side: ``crop`` (or the largest slice side when None/0), a multiple of 8."""
    largest = max(max(im.shape[-2:]) for im in images)
    side = largest if not crop else min(int(crop), largest)
    return round_up(side)


def epoch_batches(
    images: Sequence[np.ndarray],
    masks: Sequence[np.ndarray],
    *,
    batch_size: int,
    settings: CropSettings,
    seed: int,
    epoch: int,
    rank: int = 0,
    world_size: int = 1,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield (images (B, C, s, s) float32, masks (B, s, s) float32) for one epoch.

    Every process yields the same number of batches (the slice order is padded by
    wrapping around), so DDP processes step together.
    """
    n = len(images)
    size = crop_size_for(images, settings.crop)
    order = np.random.default_rng([seed, epoch]).permutation(n)
    per_rank = math.ceil(n / world_size)
    n_batches = max(1, math.ceil(per_rank / batch_size))
    total = n_batches * batch_size * world_size
    order = np.resize(order, total)  # wraps around
    mine = order[rank::world_size]
    rng = np.random.default_rng([seed, epoch, rank, 1])
    for b in range(n_batches):
        xs, ys = [], []
        for i in mine[b * batch_size : (b + 1) * batch_size]:
            image, mask = images[i], masks[i]
            if settings.augment:
                image, mask = augment_pair(image, mask, rng, settings.rotate, settings.scale_jitter,
                                           settings.gamma_jitter)
                if settings.box_zoom and not mask.any():  # rotated out of the slice: box the slice as it was
                    image, mask = images[i], masks[i]
            if settings.box_zoom:
                image, mask = box_zoom_crop(image, mask, settings.box_zoom, rng)
            else:
                image, mask = random_crop(image, mask, size, rng, settings.foreground_p)
            xs.append(image)
            ys.append(mask)
        yield np.stack(xs).astype(np.float32), np.stack(ys).astype(np.float32)


def batches_per_epoch(n: int, batch_size: int, world_size: int = 1) -> int:
    return max(1, math.ceil(math.ceil(n / world_size) / batch_size))
