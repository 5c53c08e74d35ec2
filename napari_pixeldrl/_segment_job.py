"""The computation behind the Segment widget, as a generator for napari's ``thread_worker``.

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
from typing import Iterator

import numpy as np

from napari_pixeldrl._messages import Cancelled, Failed, SegmentDone, SegmentProgress, Stage, checkpoint_hint
from napari_pixeldrl.core.errors import CheckpointError, InputError, PixelDRLError
from napari_pixeldrl.model.episode import ZEROED, action_map

# --------------------------------------------------------------------------- inputs


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


# --------------------------------------------------------------------------- jobs


def step_views(step_masks: np.ndarray, start_mask=None) -> tuple[np.ndarray, np.ndarray]:
    """The step layers: masks m(0)..m(T) and actions a(0)..a(T), so that index t is step t
    as the paper counts (m(0) the start mask, a(0) empty). Step 1's zeroed pixels get their
    own, faint code: removing the far background first is expected, not news."""
    from napari_pixeldrl._colors import STEP1_ZEROED

    masks = np.asarray(step_masks).astype(np.uint8)
    start = np.ones(masks.shape[1:], np.uint8) if start_mask is None else (np.asarray(start_mask) != 0).astype(np.uint8)
    actions = action_map(masks, start)
    first = actions[0]
    first[first == ZEROED] = STEP1_ZEROED
    empty = np.zeros((1, *masks.shape[1:]), np.uint8)
    return np.concatenate([start[None], masks]), np.concatenate([empty, actions])


def _import_label_colours() -> None:
    """Import what napari's first Labels layer of a session imports (skimage's colour
    conversions, for its random colours: 0.1-0.2 s on 2 cores), here in the worker thread,
    so that showing the result does not pay for it on the GUI thread. skimage loads its
    submodules lazily: only an attribute access runs the import."""
    from skimage.color import lab2rgb  # noqa: F401


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
    window="auto",
    keep_threshold="auto",
    start_mask=None,
) -> Iterator[Stage | SegmentProgress]:
    """Load the model, run :func:`iter_segment` with all steps, return SegmentDone/Failed/Cancelled.

    ``postprocess``: "auto" (the model's own, chosen on validation), "none" or
    "largest-component"; it changes the final mask only, never the step layers.
    ``window``: "auto" (the model's own), 0 (whole slices) or a window side in pixels
    (model/window.py).
    ``keep_threshold``: "auto" (the model's own) or P: a pixel is kept where pi(keep) > P
    (model/threshold.py).
    ``start_mask``: the episodes' m(0), a rough mask to refine: an array of the image's spatial
    shape, or a function of that shape that draws one (a Shapes layer's ``to_masks``);
    None: all ones.
    """
    from napari_pixeldrl.model.inference import Cancelled as _Cancelled
    from napari_pixeldrl.model.inference import iter_segment
    from napari_pixeldrl.model.postprocess import with_postprocess
    from napari_pixeldrl.model.threshold import with_keep_threshold
    from napari_pixeldrl.model.window import with_window

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
            instead = "" if loaded.config.box_zoom else ", or start from the whole image"
            return Failed(f"the start layer is empty: draw a box or paint a region on it{instead}", "input")
        _import_label_colours()
        yield Stage("segmenting")
        gen = iter_segment(
            loaded.model,
            with_keep_threshold(with_window(with_postprocess(loaded.config, postprocess), window), keep_threshold),
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
        steps, actions = step_views(seg.step_masks, start_mask)
        return SegmentDone(
            mask=seg.mask,
            steps=steps,
            actions=actions,
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
