"""Segment a 2D image or a 3D volume with a trained PixelDRL-MG (or U-Net) model.

:func:`iter_segment` is a generator: it yields :class:`Progress` after each batch of
slices and returns the :class:`Segmentation` (napari thread workers and the command
line both drive it); :func:`segment` runs it to the end.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterator

import numpy as np
import torch
import torch.nn.functional as F

from napari_pixeldrl.core.checks import check_finite_numeric
from napari_pixeldrl.core.errors import InputError, PixelDRLError

from .box_zoom import bounding_box, resize, resize_mask, zoom_box
from .config import ModelConfig, check_t_max
from .episode import run_episode
from .postprocess import apply_postprocess
from .threshold import keep_margin
from .preprocess import normalize_slice
from .window import needs_window, windowed_steps

MULTIPLE = 8  # three 2x poolings in the extractor
UNET_MULTIPLE = 16  # four in the U-Net baselines


class Cancelled(PixelDRLError):
    """Raised when the caller's cancel flag was set between two batches."""


@dataclass
class Progress:
    done: int  # slices finished
    total: int


@dataclass
class Layout:
    """Where the slices and channels are in the caller's array."""

    is_volume: bool
    channel_axis: int | None  # axis of the caller's array, None for one channel
    shape: tuple[int, ...]  # spatial shape: (H, W) or (Z, H, W)


@dataclass
class Segmentation:
    """The result in the caller's spatial shape: (H, W) or (Z, H, W)."""

    mask: np.ndarray  # uint8 {0,1}
    steps_taken: np.ndarray  # per slice: the step at which the fixed point was seen, else t_max
    t_max: int
    layout: Layout
    # With return_steps: (t_max, *shape) stacks for t = 1..t_max. After a slice's fixed
    # point its later steps are repeats, exactly as argmax would have produced them.
    step_masks: np.ndarray | None = None
    step_actions: np.ndarray | None = None
    value: np.ndarray | None = None  # V of the final state, float32 (with return_steps)
    constant_slices: list[int] = field(default_factory=list)  # slices with no signal (empty mask)


def resolve_layout(shape: tuple[int, ...], in_channels: int, channel_axis: int | None = None, source=None) -> Layout:
    """Decide whether an array is 2D or 3D and where its channels are.

    Accepted: (H, W), (H, W, C), (C, H, W), (Z, H, W), (Z, H, W, C), (Z, C, H, W). A
    3-dimensional array for a one-channel model is a volume unless its last axis has 3
    or 4 entries (an RGB image), which is refused as the wrong number of channels.
    """
    where = f" in {source}" if source else ""
    nd = len(shape)
    if nd not in (2, 3, 4):
        raise InputError(f"expected a 2D image or a 3D volume, got {nd} dimensions {tuple(shape)}{where}")
    if channel_axis is not None:
        if not -nd <= channel_axis < nd:
            raise InputError(f"channel axis {channel_axis} does not exist in an array of {nd} dimensions {tuple(shape)}{where}")
        channel_axis %= nd
        if shape[channel_axis] != in_channels:
            raise InputError(
                f"the model wants {in_channels} channel(s), the image has {shape[channel_axis]} on axis {channel_axis}{where}"
            )
        spatial = tuple(s for i, s in enumerate(shape) if i != channel_axis)
        if len(spatial) not in (2, 3):
            raise InputError(f"cannot read shape {tuple(shape)} with channel axis {channel_axis}{where}")
        return Layout(len(spatial) == 3, channel_axis, spatial)
    if nd == 2:
        if in_channels != 1:
            raise InputError(f"the model wants {in_channels} channels, the image is gray {tuple(shape)}{where}")
        return Layout(False, None, tuple(shape))
    rgb_last = shape[-1] in (3, 4) and min(shape[:-1]) > 4 * shape[-1]
    if in_channels == 1:
        if rgb_last:
            raise InputError(
                f"the model wants one channel, the image has {shape[-1]} (shape {tuple(shape)}){where}; "
                "convert it to gray or pick one channel"
            )
        if nd == 4:
            raise InputError(f"a 4D array {tuple(shape)} does not fit a one-channel model{where}")
        return Layout(True, None, tuple(shape))
    # Multi-channel model: channels last or first (after the slice axis for volumes).
    if shape[-1] == in_channels:
        return Layout(nd == 4, nd - 1, tuple(shape[:-1]))
    first = 1 if nd == 4 else 0
    if shape[first] == in_channels:
        return Layout(nd == 4, first, tuple(s for i, s in enumerate(shape) if i != first))
    raise InputError(f"the model wants {in_channels} channels, none of the axes of {tuple(shape)} has {in_channels} entries{where}")


def raw_slices(image: np.ndarray, layout: Layout) -> np.ndarray:
    """The caller's array as (N, C, H, W) slices, values untouched (a view where possible)."""
    x = image if layout.channel_axis is None else np.moveaxis(image, layout.channel_axis, -1)
    if layout.channel_axis is None:
        x = x[..., None]
    if not layout.is_volume:
        x = x[None]
    return np.moveaxis(x, -1, 1)


def prepare_slices(image: np.ndarray, layout: Layout, source=None) -> tuple[np.ndarray, list[int]]:
    """(N, C, H, W) float32 normalised slices, and the indices of constant slices."""
    image = check_finite_numeric(image, source)
    x = raw_slices(image, layout)
    if layout.is_volume and float(x.max()) == float(x.min()):
        raise InputError(f"volume is constant; there is nothing to segment{' in ' + source if source else ''}")
    out = np.empty(x.shape, np.float32)
    constant = []
    for i in range(x.shape[0]):
        name = f"{source or 'image'}, slice {i}" if layout.is_volume else source
        out[i] = normalize_slice(x[i], name, allow_constant=layout.is_volume)
        if layout.is_volume and not out[i].any():
            constant.append(i)
    return out, constant


def start_slices(start_mask: np.ndarray, layout: Layout, source=None) -> np.ndarray:
    """A start mask as (N, H, W) float32 0/1, one per slice; refused unless it has the
    image's spatial shape."""
    start = check_finite_numeric(np.asarray(start_mask), f"start mask for {source}" if source else "start mask")
    if tuple(start.shape) != tuple(layout.shape):
        raise InputError(f"the start mask has shape {tuple(start.shape)} but the image's slices are "
                         f"{tuple(layout.shape)}; draw it on the same image")
    start = (start != 0).astype(np.float32)
    return start if layout.is_volume else start[None]


def pad_to_multiple(x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
    h, w = x.shape[-2:]
    ph, pw = (-h) % MULTIPLE, (-w) % MULTIPLE
    return (F.pad(x, (0, pw, 0, ph)) if ph or pw else x), (h, w)


def padded_start(start: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """m(0) (B, h, w) padded as :func:`pad_to_multiple` padded ``x``, as (B, 1, H, W): outside the slice is outside m(0)."""
    return pad_to_multiple(start.to(x.dtype))[0].reshape(x.shape[0], 1, *x.shape[-2:])


@dataclass
class BatchResult:
    """Argmax episode of one batch, cropped to (h, w)."""

    mask: np.ndarray  # (B, h, w) uint8, the final f(T), post-processed as the config says
    steps_taken: np.ndarray  # (B,) the step at which the fixed point was seen, else t_max
    step_masks: np.ndarray | None  # (T, B, h, w); after a fixed point the last step repeats
    step_actions: np.ndarray | None  # (T, B, h, w)
    last_mask: torch.Tensor  # (B, 1, H, W) padded, the state the value map is taken of
    value: np.ndarray | None = None  # (B, h, w) where the batch computed it itself (a box model, on its crops)


def run_batch(model, config: ModelConfig, x: torch.Tensor, size: tuple[int, int], t_max: int, *,
              early_stop: bool = True, return_steps: bool = False, start: torch.Tensor | None = None) -> BatchResult:
    """One argmax episode (or one U-Net forward) on a padded batch ``x`` (B, C, H, W).

    ``start`` (B, h, w) 0/1: the episode's m(0) (default all ones), padded here as ``x``
    was. A U-Net has no episode: its mask is cut to ``start``, the prompt's plain use."""
    if config.box_zoom:
        return zoomed_batch(model, config, x, size, t_max, early_stop=early_stop, return_steps=return_steps, start=start)
    h, w = size
    b = x.shape[0]
    if start is not None:
        start = padded_start(start, x)
    if needs_window(config.window, (h, w)):
        return windowed_batch(model, config, x, size, t_max, early_stop=early_stop, start=start)
    if config.arch == "unet":
        # Its four poolings need sides that are multiples of 16, not only of the extractor's 8.
        logits = model(F.pad(x, (0, (-x.shape[-1]) % UNET_MULTIPLE, 0, (-x.shape[-2]) % UNET_MULTIPLE)))
        logits = logits[..., : x.shape[-2], : x.shape[-1]]
        raw = logits[:, 0, :h, :w] > keep_margin(config.keep_threshold)
        if start is not None:
            raw &= start[:, 0, :h, :w] > 0
        raw = raw.to(torch.uint8).cpu().numpy()
        stack = np.repeat(raw[None], t_max, axis=0) if return_steps else None
        final = apply_postprocess(raw, config.postprocess)
        return BatchResult(final, np.ones(b, np.int32), stack, stack, torch.from_numpy(raw)[:, None])
    steps_taken = np.full(b, t_max, np.int32)
    masks, actions = [], []
    for step in run_episode(model, x, t_max, sample=False, early_stop=early_stop, with_value=False, start_mask=start,
                            keep_threshold=config.keep_threshold):
        unchanged = ~step.changed.cpu().numpy()
        steps_taken = np.where(unchanged & (steps_taken == t_max) & (step.t < t_max), step.t, steps_taken)
        final = step.mask[:, :h, :w].to(torch.uint8).cpu().numpy()
        if return_steps:
            masks.append(final)
            actions.append(step.action[:, :h, :w].cpu().numpy())
        last = step.mask
    step_masks = step_actions = None
    if return_steps:
        while len(masks) < t_max:  # fixed point: every later step repeats the last one exactly
            masks.append(masks[-1])
            actions.append(actions[-1])
        step_masks, step_actions = np.stack(masks), np.stack(actions)
    final = apply_postprocess(final, config.postprocess)
    return BatchResult(final, steps_taken.astype(np.int32), step_masks, step_actions, last[:, None])


def windowed_batch(model, config: ModelConfig, x: torch.Tensor, size: tuple[int, int], t_max: int, *,
                   early_stop: bool = True, start: torch.Tensor | None = None) -> BatchResult:
    """:func:`run_batch` by sliding windows (model/window.py); ``start`` is padded as ``x``.

    a(t) is reported as m(t): an already zeroed pixel's action has no effect, and the blend
    has no single policy to ask."""
    h, w = size
    b = x.shape[0]
    steps = windowed_steps(model, config, x, t_max, start=start, early_stop=early_stop)  # (T, B, H, W) padded
    masks = steps[:, :, :h, :w].cpu().numpy()
    first = np.ones((1, b, h, w), np.uint8) if start is None else (start[:, 0, :h, :w] > 0).to(torch.uint8).cpu().numpy()[None]
    changed = (masks != np.concatenate([first, masks[:-1]])).reshape(t_max, b, -1).any(axis=2)  # (T, B)
    # The step at which the fixed point was seen: the one after the last change.
    last_change = np.where(changed.any(axis=0), t_max - np.argmax(changed[::-1], axis=0), 0)
    steps_taken = np.ones(b, np.int32) if config.arch == "unet" else np.minimum(last_change + 1, t_max).astype(np.int32)
    final = apply_postprocess(masks[-1], config.postprocess)
    return BatchResult(final, steps_taken, masks, masks.copy(), steps[-1][:, None].to(x.dtype))


def zoomed_batch(model, config, x: torch.Tensor, size: tuple[int, int], t_max: int, *, early_stop: bool,
                 return_steps: bool, start: torch.Tensor | None):
    """:func:`run_batch` for a ``box_zoom`` model: each slice's episode runs on its start
    mask's box resized to S x S (``start`` (B, h, w) 0/1; model/box_zoom.py)."""
    side = int(config.box_zoom)
    if start is None:
        raise InputError(f"this model segments inside a box (box_zoom {side}): give it a start mask, a box or "
                         "a rough region round the object (--start-mask, the widget's start layer)")
    h, w = size
    b = x.shape[0]
    boxes = [bounding_box(start[i, :h, :w]) for i in range(b)]
    live = [i for i in range(b) if boxes[i] is not None]
    final = np.zeros((b, h, w), np.uint8)
    steps_taken = np.ones(b, np.int32)  # an empty start is its own fixed point
    step_masks = np.zeros((t_max, b, h, w), np.uint8) if return_steps else None
    step_actions = np.zeros((t_max, b, h, w), np.uint8) if return_steps else None
    value = np.zeros((b, h, w), np.float32) if return_steps and config.arch != "unet" else None
    if live:
        crops, starts = zip(*(zoom_box(x[i], start[i], boxes[i], side) for i in live))
        crops, starts = torch.stack(crops).to(x), torch.stack(starts).to(x)
        inner = config.replace(box_zoom=0, postprocess="none", window=0)
        res = run_batch(model, inner, crops, (side, side), t_max, early_stop=early_stop, return_steps=return_steps,
                        start=starts)
        crop_value = None
        if value is not None:  # the value map the GUI shows, of the final state, on the view the model has
            _, v = model.step(model.encode(crops, start=starts[:, None]), res.last_mask.to(crops), with_value=True)
            crop_value = v[:, 0].float()
        inside = start[:, :h, :w].cpu().numpy() != 0  # a rough region resized twice may not leave it
        for j, i in enumerate(live):
            y0, y1, x0, x1 = boxes[i]
            back = (y1 - y0, x1 - x0)
            keep = inside[i, y0:y1, x0:x1]
            final[i, y0:y1, x0:x1] = resize_mask(torch.from_numpy(res.mask[j]), back).numpy() & keep
            steps_taken[i] = res.steps_taken[j]
            if return_steps:
                step_masks[:, i, y0:y1, x0:x1] = resize_mask(torch.from_numpy(res.step_masks[:, j]), back).numpy() & keep
                step_actions[:, i, y0:y1, x0:x1] = resize_mask(torch.from_numpy(res.step_actions[:, j]), back).numpy()
            if crop_value is not None:
                value[i, y0:y1, x0:x1] = resize(crop_value[j].cpu(), back).numpy()
    last = pad_to_multiple(torch.from_numpy(final)[:, None].to(x))[0]
    return BatchResult(apply_postprocess(final, config.postprocess), steps_taken, step_masks, step_actions, last, value)


def iter_segment(
    model: torch.nn.Module,
    config: ModelConfig,
    image: np.ndarray,
    *,
    channel_axis: int | None = None,
    t_max: int | None = None,
    early_stop: bool = True,
    return_steps: bool = False,
    batch_size: int = 8,
    device: str | torch.device = "cpu",
    cancel: Callable[[], bool] | None = None,
    source: str | None = None,
    start_mask: np.ndarray | None = None,
) -> Iterator[Progress]:
    """Generator form of :func:`segment`; its return value is the Segmentation.

    ``start_mask``: the episodes' m(0), a rough mask of the image's spatial shape (any
    nonzero value is inside) that the agents refine; default all ones."""
    layout = resolve_layout(np.shape(image), config.in_channels, channel_axis, source)
    slices, constant = prepare_slices(np.asarray(image), layout, source)
    starts = None if start_mask is None else start_slices(start_mask, layout, source)
    t_max = check_t_max(config.t_max if t_max is None else t_max)
    n, _, h, w = slices.shape
    device = torch.device(device)
    model = model.to(device).eval()
    mask = np.zeros((n, h, w), np.uint8)
    steps_taken = np.full(n, t_max, np.int32)
    step_masks = np.zeros((t_max, n, h, w), np.uint8) if return_steps else None
    step_actions = np.zeros((t_max, n, h, w), np.uint8) if return_steps else None
    value = np.zeros((n, h, w), np.float32) if return_steps else None
    todo = [i for i in range(n) if i not in set(constant)]
    yield Progress(0, n)
    done = n - len(todo)
    with torch.inference_mode():
        for start in range(0, len(todo), batch_size):
            if cancel is not None and cancel():
                raise Cancelled("segmentation cancelled")
            idx = todo[start : start + batch_size]
            x, _ = pad_to_multiple(torch.from_numpy(slices[idx]).to(device))
            start_t = None if starts is None else torch.from_numpy(starts[idx]).to(device)
            res = run_batch(model, config, x, (h, w), t_max, early_stop=early_stop, return_steps=return_steps,
                            start=start_t)
            mask[idx] = res.mask
            steps_taken[idx] = res.steps_taken
            if return_steps:
                step_masks[:, idx] = res.step_masks
                step_actions[:, idx] = res.step_actions
                if res.value is not None:
                    value[idx] = res.value
                elif config.arch == "unet":
                    value[idx] = 0.0  # the U-Net has no value map
                else:
                    # The value map of the final state, the one the GUI shows.
                    m0 = None if start_t is None else padded_start(start_t, x)
                    _, v = model.step(model.encode(x, start=m0), res.last_mask.to(x), with_value=True)
                    value[idx] = v[:, 0, :h, :w].float().cpu().numpy()
            done += len(idx)
            yield Progress(done, n)
    if device.type == "cuda":
        torch.cuda.empty_cache()

    def back(a):  # (..., N, H, W) -> caller's spatial shape
        return a if layout.is_volume else a[..., 0, :, :]

    return Segmentation(
        mask=back(mask),
        steps_taken=steps_taken,
        t_max=t_max,
        layout=layout,
        step_masks=back(step_masks) if return_steps else None,
        step_actions=back(step_actions) if return_steps else None,
        value=back(value) if return_steps else None,
        constant_slices=constant,
    )


def segment(model, config: ModelConfig, image: np.ndarray, **kwargs) -> Segmentation:
    """Segment ``image`` (2D, 3D, gray or multi-channel; any size). See :func:`iter_segment`."""
    gen = iter_segment(model, config, image, **kwargs)
    while True:
        try:
            next(gen)
        except StopIteration as stop:
            return stop.value
