"""Argmax prediction of already-normalised slices, step by step (validation and evaluation).

The slices of a SliceSet are normalised once by the loader, exactly as
:func:`napari_pixeldrl.model.inference.segment` normalises a raw image, so validation and
evaluation run the episode on them directly rather than normalising twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from napari_pixeldrl.model.config import ModelConfig
from napari_pixeldrl.model.episode import run_episode

MULTIPLE = 8


@dataclass
class SlicePrediction:
    mask: np.ndarray  # (H, W) uint8, the final f(T)
    step_masks: np.ndarray | None  # (T, H, W) uint8: m(t), t = 1..T (repeats after a fixed point)
    step_actions: np.ndarray | None  # (T, H, W) uint8: a(t)
    steps_taken: int


def _pad(x: torch.Tensor) -> torch.Tensor:
    h, w = x.shape[-2:]
    ph, pw = (-h) % MULTIPLE, (-w) % MULTIPLE
    return F.pad(x, (0, pw, 0, ph)) if ph or pw else x


@torch.inference_mode()
def predict_slices(
    model: torch.nn.Module,
    config: ModelConfig,
    images: Sequence[np.ndarray],
    *,
    t_max: int | None = None,
    return_steps: bool = False,
    batch_size: int = 4,
    device: str | torch.device = "cpu",
    cancel: Callable[[], bool] | None = None,
) -> list[SlicePrediction | None]:
    """Argmax episodes (or one U-Net forward) on slices (C, H, W) in [0, 1]; same-shape slices are batched."""
    t_max = int(t_max or config.t_max)
    device = torch.device(device)
    was_training = model.training
    model.eval()
    out: list[SlicePrediction | None] = [None] * len(images)
    by_shape: dict[tuple, list[int]] = {}
    for i, im in enumerate(images):
        by_shape.setdefault(tuple(im.shape), []).append(i)
    try:
        for shape, idx_all in by_shape.items():
            h, w = shape[-2:]
            for start in range(0, len(idx_all), batch_size):
                if cancel is not None and cancel():
                    break
                idx = idx_all[start : start + batch_size]
                x = _pad(torch.from_numpy(np.stack([images[i] for i in idx])).float().to(device))
                if config.arch == "unet":
                    final = (model(x)[:, 0, :h, :w] > 0).to(torch.uint8).cpu().numpy()
                    for j, i in enumerate(idx):
                        steps = final[j][None] if return_steps else None
                        out[i] = SlicePrediction(final[j], steps, steps, 1)
                    continue
                masks, actions = [], []
                taken = np.full(len(idx), t_max)
                for step in run_episode(model, x, t_max, sample=False, early_stop=True):
                    masks.append(step.mask[:, :h, :w].to(torch.uint8).cpu().numpy())
                    actions.append(step.action[:, :h, :w].cpu().numpy())
                    unchanged = ~step.changed.cpu().numpy()
                    taken = np.where(unchanged & (taken == t_max) & (step.t < t_max), step.t, taken)
                while len(masks) < t_max:  # fixed point: later steps repeat exactly
                    masks.append(masks[-1])
                    actions.append(actions[-1])
                m = np.stack(masks, 1)  # (B, T, H, W)
                a = np.stack(actions, 1)
                for j, i in enumerate(idx):
                    out[i] = SlicePrediction(
                        m[j, -1].copy(),
                        m[j].copy() if return_steps else None,
                        a[j].copy() if return_steps else None,
                        int(taken[j]),
                    )
    finally:
        model.train(was_training)
    return out  # type: ignore[return-value]  # None where cancelled before the slice
