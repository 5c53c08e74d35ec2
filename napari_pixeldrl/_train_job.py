"""The computation behind the Train widget: checks, training data, and the training job.

No napari or Qt import here, so everything is testable without a display. The checks
(:func:`layer_training_data`, :func:`check_channels`, :func:`start_channels`,
:func:`check_dataset`, :func:`check_out_dir`) raise
:class:`~napari_pixeldrl.core.errors.InputError` / :class:`~napari_pixeldrl.core.errors.CheckpointError`
with a message that says what to do; the widget runs them *before* starting a worker
and shows the message as a notification. Painted slices are a dataset of
``training/data/painted.py``, split by the same ``select_split`` as a dataset folder.

:func:`train_job` is a generator for napari's ``thread_worker``: it yields
:class:`~napari_pixeldrl._messages.Stage` and :class:`TrainStarted`, then the trainer's own
events (``training.events``: EpisodeEvent, EpochEvent, EndEvent) as ``Trainer.run``
yields them, and returns :class:`TrainDone` or :class:`~napari_pixeldrl._messages.Failed`.
Draining it in a plain loop runs it without napari or Qt. The ``cancel`` event given to
the job *is* the trainer's ``trainer.cancel``: setting it stops the run before the next
episode, and the last/best checkpoints stay in the run folder.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import numpy as np
from datetime import datetime
from pathlib import Path
from typing import Any, Iterator

from napari_pixeldrl._registry import config_channels
from napari_pixeldrl._messages import Failed, Stage, TrainDone, TrainStarted, checkpoint_hint
from napari_pixeldrl.core.errors import CheckpointError, InputError, PixelDRLError

DATASET_KINDS = ("lgg", "msd", "folder")


# --------------------------------------------------------------------------- messages


@dataclass
class TrainData:
    """Training and validation slices (SliceSets: images (C, H, W) float32 in [0, 1], masks (H, W) uint8)."""

    train: Any
    val: Any
    channels: int
    note: str = ""
    slices: list[int] = field(default_factory=list)  # z of the painted slices (train + val)


# --------------------------------------------------------------------------- checks


def check_channels(data_channels: int, model_channels: int | None, model_name: str = "the starting model") -> None:
    """Refuse RGB data for a gray model and the reverse."""
    if model_channels is None or model_channels == data_channels:
        return
    if model_channels == 1:
        raise InputError(
            f"{model_name} takes one (gray) channel but the image is RGB; start from a fresh model, "
            "or split the channels (right-click the layer > Split RGB) and train on one of them"
        )
    if data_channels == 1:
        raise InputError(
            f"{model_name} takes {model_channels} channels (RGB) but the image is gray; "
            "start from a fresh model or from a gray (one-channel) model"
        )
    raise InputError(f"{model_name} takes {model_channels} channels, the data has {data_channels}")


def start_header(start) -> dict | None:
    """The header of a starting model (None: a fresh model; a LoadedModel; a checkpoint
    path or bundled name). A file that is not a napari-pixeldrl checkpoint raises
    CheckpointError with a hint."""
    if start is None:
        return None
    from napari_pixeldrl.model.checkpoint import header_of

    try:
        header = header_of(start)
        config_channels(header.get("model") or {})  # a damaged header fails here, not in the run
        return header
    except CheckpointError as exc:
        raise CheckpointError(checkpoint_hint(str(exc).rstrip("."))) from None
    except (TypeError, ValueError, AttributeError) as exc:
        raise CheckpointError(checkpoint_hint(f"{start} has a damaged config header ({exc})")) from None


def start_channels(start) -> int | None:
    """Input channels of a starting model (see :func:`start_header`); None for a fresh one."""
    header = start_header(start)
    return None if header is None else config_channels(header.get("model") or {})


@dataclass
class PaintedLayers:
    """An image layer's data and the labels painted on it, read into slices in the job."""

    image: Any
    labels: Any
    rgb: bool = False
    label: int | None = None
    image_name: str = "image"
    labels_name: str = "labels"


def check_painted(painted: PaintedLayers, n_shot: int | None = None, seed: int = 0) -> tuple[list[int], int]:
    """(z of the painted slices, channels): everything :func:`layer_training_data` would
    refuse, without normalising a slice, so the widget can say it before a job starts."""
    from napari_pixeldrl.training.data.painted import check_painted as check
    from napari_pixeldrl.training.data.splits import hold_back, n_shot as choose

    if isinstance(painted.image, (list, tuple)):
        raise InputError(f"layer {painted.image_name!r} is multiscale; convert it to a single-resolution image first")
    z, _, channels = check(np.shape(painted.image), painted.labels, rgb=painted.rgb, label=painted.label,
                           image_name=painted.image_name, labels_name=painted.labels_name)
    if n_shot:
        choose(hold_back(len(z), seed=seed)["train"], n_shot, seed)
    return z, channels


def layer_training_data(
    image,
    labels,
    *,
    rgb: bool = False,
    label: int | None = None,
    n_shot: int | None = None,
    seed: int = 0,
    image_name: str = "image",
    labels_name: str = "labels",
) -> TrainData:
    """Training/validation slices from an image layer's data and a painted labels layer,
    split by the held-back rule and N-shot as ``select_split`` splits them."""
    from napari_pixeldrl.training.data.painted import painted_slice_set
    from napari_pixeldrl.training.data.splits import select_split

    data = painted_slice_set(image, labels, rgb=rgb, label=label, image_name=image_name, labels_name=labels_name)
    provenance = {"split_by": "held_back", "seed": seed, "n_shot": n_shot or None}
    train, val = select_split(data, provenance, "train"), select_split(data, provenance, "val")
    if len(data) == 1:
        note = "only one painted slice: validation DICE is measured on the training slice itself"
    else:
        note = f"{len(val)} of {len(data)} slices held back for validation"
        if n_shot:
            note += f"; training on {len(train)} slice(s) (N-shot)"
    return TrainData(train=train, val=val, channels=data.in_channels, note=note, slices=list(data.slice_index))


def check_dataset(kind: str, path) -> Path:
    if kind not in DATASET_KINDS:
        raise InputError(f"dataset kind must be one of {', '.join(DATASET_KINDS)}, got {kind!r}")
    if not path or not str(path).strip():
        raise InputError("choose the dataset folder (Browse...)")
    path = Path(path).expanduser()
    if not path.is_dir():
        raise InputError(f"{path} is not a folder; choose the dataset folder (Browse...)")
    return path


def dataset_training_data(kind: str, path, *, label: int | None = None, n_shot: int | None = None, seed: int = 0) -> TrainData:
    """Training/validation slices of a dataset folder, split as ``pixeldrl train`` splits it:
    by patient, 70/10/20 with ``seed`` (the test part left alone), N-shot drawn from the
    training part and refused when larger."""
    from napari_pixeldrl.training.data import load_dataset
    from napari_pixeldrl.training.data.splits import select_split

    data = load_dataset(kind, check_dataset(kind, path), label=label)
    if len(data.images) == 0:
        raise InputError(f"{path} holds no slice with the object; check the folder and the dataset kind")
    provenance = {"split_by": "patient", "seed": seed, "n_shot": n_shot or None}
    train, val = select_split(data, provenance, "train"), select_split(data, provenance, "val")
    note = (f"split by patient as pixeldrl train splits it (seed {seed}): {len(train)} training slices of "
            f"{len(train.patient_ids)} patients, {len(val)} validation slices of {len(val.patient_ids)}; "
            "the test part is left out")
    return TrainData(train=train, val=val, channels=data.in_channels, note=note)


def default_run_dir(now: datetime | None = None) -> Path:
    """``<cache>/runs/<timestamp>`` (cache: $PIXELDRL_CACHE, else ~/.cache/napari-pixeldrl)."""
    from napari_pixeldrl.training.data import default_cache_dir

    stamp = (now or datetime.now()).strftime("%Y%m%d-%H%M%S")
    base = Path(default_cache_dir()) / "runs"
    out = base / stamp
    k = 1
    while out.exists():
        k += 1
        out = base / f"{stamp}-{k}"
    return out


def check_out_dir(out) -> Path:
    """The run folder of a new run, by the rule ``pixeldrl train`` follows (created if needed)."""
    from napari_pixeldrl.training.run_folder import check_run_folder

    return check_run_folder(out, resume=False)


# --------------------------------------------------------------------------- job


def preload_training_stack() -> None:
    """Import now what a training run would import on its first step.

    Called by the widget when it opens, on the GUI thread, while nothing runs. Imported
    for the first time from the worker thread, these modules hold the GIL for their whole
    import and the window stalls: the trainer's extension modules (~0.4 s), and
    ``torch._dynamo`` (with sympy and mpmath, ~0.35 s), which ``torch.optim.Optimizer``
    imports lazily in its constructor, and matplotlib's figure and Agg canvas, which the run
    folder's curve (``run_folder.write_curve``) imports at the end of the first epoch
    (~0.3 s). One Adam step on a scalar runs the optimizer's paths.
    """
    import matplotlib.backends.backend_agg  # noqa: F401
    import matplotlib.figure  # noqa: F401
    import torch

    import napari_pixeldrl.training.trainer  # noqa: F401

    p = torch.zeros(1, requires_grad=True)
    opt = torch.optim.Adam([p], lr=1e-3)
    (p * 2.0).sum().backward()
    opt.step()


def train_job(
    data: TrainData | PaintedLayers | None,
    config,
    out_dir,
    *,
    start=None,
    dataset: tuple[str, str, int | None] | None = None,
    n_shot: int | None = None,
    cancel: threading.Event | None = None,
) -> Iterator[object]:
    """Train (``config``: a TrainConfig) and return TrainDone / Failed.

    ``data``: slices from :func:`layer_training_data`, :class:`PaintedLayers` to read
    them here, or None with ``dataset`` = (kind, path, label) to load a folder here.
    ``start``: None (fresh ``config.preset`` model), a checkpoint path / bundled name, or a
    LoadedModel, handed to the trainer as it is (the trainer trains a copy).
    """
    from napari_pixeldrl.model.checkpoint import load_checkpoint
    from napari_pixeldrl.training.loader import batches_per_epoch
    from napari_pixeldrl.training.trainer import Trainer

    t0 = time.perf_counter()
    out_dir = Path(out_dir)
    device = str(getattr(config, "device", "cpu"))
    try:
        if isinstance(data, PaintedLayers):
            yield Stage("reading the painted slices")
            p = data
            data = layer_training_data(p.image, p.labels, rgb=p.rgb, label=p.label, n_shot=n_shot, seed=config.seed,
                                       image_name=p.image_name, labels_name=p.labels_name)
        elif data is None:
            yield Stage("loading the dataset")
            kind, path, label = dataset
            data = dataset_training_data(kind, path, label=label, n_shot=n_shot, seed=config.seed)
        check_channels(data.channels, start_channels(start))
        trainer = Trainer(config, data.train, data.val, out_dir, init_checkpoint=start)
        if cancel is not None:
            trainer.cancel = cancel
        n_ep = batches_per_epoch(len(data.train), config.batch_size, 1)
        yield TrainStarted(len(data.train), len(data.val), data.note, int(config.epochs), n_ep, out_dir)
        # The trainer's events go to the consumer unchanged; closing this job closes the run,
        # which releases its folder.
        result = yield from trainer.run()
        yield Stage("loading the best model")
        loaded = load_checkpoint(result.best_checkpoint, device="cpu")
        return TrainDone(result, loaded, len(data.train), len(data.val), data.note, time.perf_counter() - t0)
    except CheckpointError as exc:
        msg = str(exc)
        return Failed(msg if "saved by napari-pixeldrl" in msg else checkpoint_hint(msg.rstrip(".")), "checkpoint")
    except PixelDRLError as exc:
        return Failed(str(exc), "input")
    finally:
        if device.startswith("cuda") or device == "auto":
            try:
                import torch

                if torch.cuda.is_available():
                    torch.cuda.empty_cache()
            except Exception:  # noqa: BLE001
                pass


def save_model(loaded, path) -> Path:
    """Write a trained model to ``path`` (.safetensors)."""
    from napari_pixeldrl.model.checkpoint import save_checkpoint

    return save_checkpoint(path, loaded.model, loaded.config, loaded.info)
