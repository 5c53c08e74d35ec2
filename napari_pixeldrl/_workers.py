"""The computations behind the widgets, as generators for napari's ``thread_worker``.

Nothing here imports napari or Qt at import time, so the jobs and the helpers can be
tested (and reused) without a display. Each job is a generator that yields typed
progress messages and *returns* one typed outcome: ``...Done``, :class:`Failed` or
:class:`Cancelled`. Expected problems (:class:`~napari_pixeldrl.core.errors.PixelDRLError`:
bad input, a foreign checkpoint) become :class:`Failed` with a message that says what
to do, so the widget shows a notification instead of napari's traceback relay; only
genuine bugs reach the worker's ``errored`` signal.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from napari_pixeldrl.core.errors import CheckpointError, InputError, PixelDRLError
from napari_pixeldrl.model.episode import KEPT, ZEROED, action_map

# Colours of the action layer (paper Fig. 4), one per code of model.episode.action_map.
ACTION_COLORS = {
    0: (0.0, 0.0, 0.0, 0.0),  # zeroed at an earlier step: no action any more
    KEPT: (0.2, 0.8, 0.3, 0.55),  # green: kept
    ZEROED: (1.0, 0.0, 0.0, 1.0),  # red: zeroed at this step (its action changed from keep)
}


# --------------------------------------------------------------------------- messages


@dataclass
class Stage:
    """A named phase started (loading the model, segmenting, ...)."""

    text: str


@dataclass
class SegmentProgress:
    done: int  # slices finished
    total: int


@dataclass
class SegmentDone:
    mask: np.ndarray  # (H, W) or (Z, H, W) uint8
    steps: np.ndarray  # (t_max, *spatial) uint8 masks m(1..t_max)
    actions: np.ndarray  # (t_max, *spatial) uint8, model.episode.action_map codes
    value: np.ndarray  # (*spatial) float32
    steps_taken: np.ndarray
    t_max: int
    model_name: str
    loaded: Any  # the LoadedModel, so the widget can cache it
    seconds: float
    constant_slices: list[int] = field(default_factory=list)


@dataclass
class Failed:
    message: str
    kind: str = "input"  # "input" | "checkpoint" | "other"


@dataclass
class Cancelled:
    message: str = "cancelled"


@dataclass
class EvaluateDone:
    rows: list[tuple[str, dict]]  # (row label, metrics dict) per slice, then overall rows
    ndim: int


# --------------------------------------------------------------------------- inputs


def notify(kind: str, message: str) -> None:
    """A napari notification ('error', 'warning' or 'info'); napari is imported only here."""
    from napari.utils.notifications import show_error, show_info, show_warning

    {"error": show_error, "warning": show_warning, "info": show_info}[kind](message)


def prepare_image(data, *, rgb: bool, in_channels: int, name: str = "image") -> tuple[np.ndarray, int | None]:
    """The array and channel axis to give :func:`iter_segment` for a napari image layer.

    RGB(A) layers map to 3 channels (alpha dropped); a gray layer must be 2D or 3D. The
    messages say what to do, since they end up in a notification.
    """
    if isinstance(data, (list, tuple)):
        raise InputError(f"layer {name!r} is multiscale; convert it to a single-resolution image first")
    shape = tuple(np.shape(data))
    if rgb:
        channels = shape[-1]
        spatial = shape[:-1]
        if in_channels == 1:
            raise InputError(
                f"the model wants one (gray) channel but layer {name!r} is RGB {shape}; "
                "pick a model trained on 3-channel images, or split the channels "
                "(right-click the layer > Split RGB) and segment one of them"
            )
        if in_channels != 3:
            raise InputError(f"the model wants {in_channels} channels; layer {name!r} is RGB with {channels}")
        if len(spatial) not in (2, 3):
            raise InputError(
                f"layer {name!r} has shape {shape}: the widget segments a 2D image or a 3D volume "
                "(slices, rows, columns); remove the extra axes first"
            )
        array = np.asarray(data)
        if channels == 4:
            array = array[..., :3]
        return array, array.ndim - 1
    if len(shape) == 4 and in_channels > 1 and in_channels in (shape[0], shape[1], shape[-1]):
        axis = len(shape) - 1 if shape[-1] == in_channels else (1 if shape[1] == in_channels else 0)
        return np.asarray(data), axis
    if len(shape) not in (2, 3):
        raise InputError(
            f"layer {name!r} has {len(shape)} dimensions {shape}: the widget segments a 2D image or a "
            "3D volume (slices, rows, columns); pick one time point or channel first "
            "(e.g. Layers > Data > Split Stack)"
        )
    if in_channels != 1:
        raise InputError(
            f"the model wants {in_channels} channels (an RGB image) but layer {name!r} is gray {shape}; "
            "pick a model trained on one-channel images"
        )
    return np.asarray(data), None


# --------------------------------------------------------------------------- model


def load_model(source, device: str = "cpu"):
    """A LoadedModel from a bundled name, a path, or an already loaded model."""
    from napari_pixeldrl.model.checkpoint import LoadedModel, load_checkpoint

    if isinstance(source, LoadedModel):
        return source
    try:
        return load_checkpoint(source, device="cpu")
    except CheckpointError:
        raise
    except PixelDRLError:
        raise
    except Exception as exc:  # noqa: BLE001 - any other failure while opening is still a bad checkpoint
        raise CheckpointError(f"cannot load {source}: {type(exc).__name__}: {exc}") from exc


def checkpoint_hint(message: str) -> str:
    return (f"{message}. Choose a .safetensors checkpoint saved by napari-pixeldrl (pixeldrl train, or the Train widget), "
            "or a bioimage.io package (.zip) made by pixeldrl export.")


# --------------------------------------------------------------------------- jobs


def segment_job(
    data,
    *,
    rgb: bool,
    model_source,
    model_name: str = "model",
    t_max: int | None = None,
    device: str = "cpu",
    batch_size: int = 4,
    cancel: threading.Event | None = None,
    name: str = "image",
    postprocess: str = "auto",
    start_mask=None,
) -> Iterator[Stage | SegmentProgress]:
    """Load the model, run :func:`iter_segment` with all steps, return SegmentDone/Failed/Cancelled.

    ``postprocess``: "auto" (the model's own, chosen on validation), "none" or
    "largest-component"; it changes the final mask only, never the step layers.
    ``start_mask``: the episodes' m(0), a rough mask to refine: an array of the image's spatial
    shape, or a function of that shape that draws one (a Shapes layer's ``to_masks``);
    None: all ones.
    """
    from napari_pixeldrl.model.inference import Cancelled as _Cancelled
    from napari_pixeldrl.model.inference import iter_segment
    from napari_pixeldrl.model.postprocess import with_postprocess

    cancel = cancel or threading.Event()
    start = time.perf_counter()
    try:
        yield Stage(f"loading {model_name}")
        try:
            loaded = load_model(model_source)
        except CheckpointError as exc:
            return Failed(checkpoint_hint(str(exc).rstrip(".")), "checkpoint")
        if cancel.is_set():
            return Cancelled()
        array, channel_axis = prepare_image(data, rgb=rgb, in_channels=loaded.config.in_channels, name=name)
        if callable(start_mask):
            axis = None if channel_axis is None else channel_axis % array.ndim
            start_mask = start_mask(tuple(s for i, s in enumerate(array.shape) if i != axis))
        if start_mask is not None and not np.any(start_mask):
            return Failed("the start layer is empty: draw a box or paint a region on it, or start from the whole image",
                          "input")
        yield Stage("segmenting")
        gen = iter_segment(
            loaded.model,
            with_postprocess(loaded.config, postprocess),
            array,
            channel_axis=channel_axis,
            t_max=t_max,
            return_steps=True,
            batch_size=batch_size,
            device=device,
            cancel=cancel.is_set,
            source=f"layer {name!r}",
            start_mask=start_mask,
        )
        while True:
            try:
                p = next(gen)
            except StopIteration as stop:
                seg = stop.value
                break
            yield SegmentProgress(p.done, p.total)
        return SegmentDone(
            mask=seg.mask,
            steps=seg.step_masks,
            actions=action_map(seg.step_masks),
            value=seg.value,
            steps_taken=seg.steps_taken,
            t_max=seg.t_max,
            model_name=model_name,
            loaded=loaded,
            seconds=time.perf_counter() - start,
            constant_slices=list(seg.constant_slices),
        )
    except _Cancelled:
        return Cancelled("segmentation cancelled")
    except CheckpointError as exc:
        return Failed(checkpoint_hint(str(exc).rstrip(".")), "checkpoint")
    except PixelDRLError as exc:
        return Failed(str(exc), "input")
    finally:
        if str(device).startswith("cuda"):
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()


def evaluate_job(pred, gt, *, spacing=None, pred_name: str = "prediction", gt_name: str = "ground truth",
                 label: int | None = None):
    """Six metrics per slice (3D) or for the image (2D), then the overall rows. ``label``
    picks the object in multi-label layers (see :func:`scored_pair`); without it a layer
    with several labels is refused rather than scored as their union."""
    from napari_pixeldrl.core.checks import scored_pair
    from napari_pixeldrl.training.metrics import aggregate, slice_metrics, volume_metrics

    yield Stage("evaluating")
    try:
        pred, gt = np.asarray(pred), np.asarray(gt)
        if pred.shape != gt.shape:
            raise InputError(
                f"{pred_name!r} has shape {pred.shape} but {gt_name!r} has shape {gt.shape}; "
                "pick two labels layers drawn on the same image"
            )
        if pred.ndim not in (2, 3):
            raise InputError(f"labels layers must be 2D or 3D, {pred_name!r} has shape {pred.shape}")
        pred, gt = scored_pair(pred, gt, label, f"layer {pred_name!r}", f"layer {gt_name!r}")
        rows: list[tuple[str, dict]] = []
        if pred.ndim == 2:
            rows.append(("image", slice_metrics(pred, gt, spacing=spacing)))
        else:
            sp2 = tuple(spacing[-2:]) if spacing is not None else None
            per_slice = []
            for z in range(pred.shape[0]):
                m = slice_metrics(pred[z], gt[z], spacing=sp2)
                per_slice.append(m)
                rows.append((f"slice {z}", m))
            agg = aggregate(per_slice)
            rows.append(("mean of slices", {k: v["mean"] for k, v in agg.items() if isinstance(v, dict) and "mean" in v}))
            rows.append(("volume", volume_metrics(pred, gt, spacing=spacing)))
        return EvaluateDone(rows, pred.ndim)
    except PixelDRLError as exc:
        return Failed(str(exc), "input")


def save_model(loaded, path) -> Path:
    from napari_pixeldrl.model.checkpoint import save_checkpoint

    return save_checkpoint(path, loaded.model, loaded.config, loaded.info)
