"""Argmax prediction of already-normalised slices, step by step (validation and evaluation).

The slices of a SliceSet are normalised once by the loader, exactly as
:func:`napari_pixeldrl.model.inference.segment` normalises a raw image, so validation and
evaluation run the episode on them directly rather than normalising twice.
"""

from __future__ import annotations

import sys

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch

from napari_pixeldrl.model.config import ModelConfig
from napari_pixeldrl.model.inference import pad_to_multiple, run_batch


@dataclass
class SlicePrediction:
    mask: np.ndarray  # (H, W) uint8, the final f(T)
    step_masks: np.ndarray | None  # (T, H, W) uint8: m(t), t = 1..T (repeats after a fixed point)
    step_actions: np.ndarray | None  # (T, H, W) uint8: a(t)
    steps_taken: int


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
    progress: bool = False,
    start_masks: Sequence[np.ndarray] | None = None,
) -> list[SlicePrediction | None]:
    """Argmax episodes (or one U-Net forward) on slices (C, H, W) in [0, 1]; same-shape slices
    are batched. ``progress``: a progress bar on stderr. ``start_masks``: each slice's
    m(0) (H, W) 0/1, default all ones."""
    t_max = int(config.t_max if t_max is None else t_max)
    device = torch.device(device)
    was_training = model.training
    model.eval()
    out: list[SlicePrediction | None] = [None] * len(images)
    by_shape: dict[tuple, list[int]] = {}
    for i, im in enumerate(images):
        by_shape.setdefault(tuple(im.shape), []).append(i)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(images), unit="slice", desc="segmenting", file=sys.stderr, dynamic_ncols=True)
    try:
        for shape, idx_all in by_shape.items():
            for start in range(0, len(idx_all), batch_size):
                if cancel is not None and cancel():
                    break
                idx = idx_all[start : start + batch_size]
                x, size = pad_to_multiple(torch.from_numpy(np.stack([images[i] for i in idx])).float().to(device))
                start = None if start_masks is None else torch.from_numpy(np.stack([start_masks[i] for i in idx])).to(device)
                res = run_batch(model, config, x, size, t_max, return_steps=return_steps, start=start)
                for j, i in enumerate(idx):
                    out[i] = SlicePrediction(
                        res.mask[j].copy(),
                        res.step_masks[:, j].copy() if return_steps else None,
                        res.step_actions[:, j].copy() if return_steps else None,
                        int(res.steps_taken[j]),
                    )
                if bar is not None:
                    bar.update(len(idx))
    finally:
        if bar is not None:
            bar.close()
        model.train(was_training)
    return out  # type: ignore[return-value]  # None where cancelled before the slice


def run_with_progress(gen, desc: str, enabled: bool):
    """Drive an inference generator (it yields Progress(done, total), returns its result),
    with a progress bar on stderr when ``enabled``."""
    bar = None
    try:
        while True:
            try:
                p = next(gen)
            except StopIteration as stop:
                return stop.value
            if enabled:
                if bar is None:
                    from tqdm import tqdm

                    bar = tqdm(total=p.total, unit="slice", desc=desc, file=sys.stderr, dynamic_ncols=True)
                bar.n = p.done
                bar.refresh()
    finally:
        if bar is not None:
            bar.close()
