"""The computation behind the Train widget: checks, painted slices, and the training job.

No napari or Qt import here, so everything is testable without a display. The checks
(:func:`painted_slices`, :func:`layer_training_data`, :func:`check_channels`,
:func:`held_back_split`, :func:`start_channels`) raise
:class:`~napari_pixeldrl.core.errors.InputError` / :class:`~napari_pixeldrl.core.errors.CheckpointError`
with a message that says what to do; the widget runs them *before* starting a worker
and shows the message as a notification.

:func:`train_job` is a generator for napari's ``thread_worker``: it yields typed
progress messages (:class:`TrainStarted`, :class:`TrainEpisode`, :class:`TrainEpoch`,
:class:`~napari_pixeldrl._workers.Stage`) and returns :class:`TrainDone` or
:class:`~napari_pixeldrl._workers.Failed`. ``Trainer.fit`` reports through callbacks, so
the job runs it on a helper thread and relays its events through a queue; draining the
generator in a plain loop (``for msg in train_job(...)``) runs it without napari or Qt.
The ``cancel`` event given to the job *is* the trainer's ``trainer.cancel``: setting it
stops the run before the next episode, and the last/best checkpoints stay in the run
folder.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from napari_pixeldrl._workers import Failed, Stage, checkpoint_hint
from napari_pixeldrl.core.errors import CheckpointError, InputError, PixelDRLError

DATASET_KINDS = ("lgg", "msd", "folder")
HELD_BACK = 0.2  # fraction of the painted slices held back for validation


# --------------------------------------------------------------------------- messages


@dataclass
class TrainStarted:
    n_train: int
    n_val: int
    note: str  # how validation is done, e.g. "validating on the training slice"
    epochs: int
    episodes_per_epoch: int
    out_dir: Path


@dataclass
class TrainEpisode:
    epoch: int  # 1-based
    episode: int  # 1-based within the epoch
    episodes_per_epoch: int
    loss: float
    mean_reward: float
    elapsed: float


@dataclass
class TrainEpoch:
    epoch: int
    epochs: int
    loss: float
    mean_reward: float
    val_dice: float | None
    best_dice: float
    best_epoch: int
    is_best: bool
    elapsed: float


@dataclass
class TrainDone:
    reason: str  # "done" | "time_budget" | "cancelled"
    epochs_done: int
    best_dice: float
    best_epoch: int
    out_dir: Path
    best_checkpoint: Path
    loaded: Any  # LoadedModel of checkpoint_best
    n_train: int
    n_val: int
    note: str = ""
    seconds: float = 0.0


@dataclass
class TrainData:
    """Training and validation slices: images (C, H, W) float32 in [0, 1], masks (H, W) uint8."""

    train: tuple[list, list]
    val: tuple[list, list]
    channels: int
    note: str = ""
    slices: list[int] = field(default_factory=list)  # z of the painted slices (train + val)


# --------------------------------------------------------------------------- checks


def image_layout(shape, rgb: bool, name: str = "image") -> tuple[bool, int]:
    """(is_volume, channels) of an image layer; refuses anything but 2D/3D (RGB: + colour axis)."""
    shape = tuple(shape)
    spatial = shape[:-1] if rgb else shape
    if len(spatial) not in (2, 3):
        raise InputError(
            f"layer {name!r} has shape {shape}: training needs a 2D image or a 3D volume (slices, rows, columns); "
            "pick one time point or channel first (e.g. Layers > Data > Split Stack)"
        )
    return len(spatial) == 3, (3 if rgb else 1)


def label_values(labels) -> list[int]:
    """The nonzero values painted in a labels array, sorted."""
    values = np.unique(np.asarray(labels))
    return [int(v) for v in values if v != 0]


def choose_label(labels, label: int | None = None, name: str = "labels") -> int:
    """The object label to train on: ``label`` if given (and painted), else the only one painted."""
    values = label_values(labels)
    if not values:
        raise InputError(
            f"nothing is painted in layer {name!r}: paint the object on at least one slice "
            "(select the labels layer, press P for the brush) and train again"
        )
    if label:
        if label not in values:
            raise InputError(f"label {label} is not painted in layer {name!r} (painted: {values}); pick one of those")
        return int(label)
    if len(values) > 1:
        raise InputError(
            f"layer {name!r} holds several labels {values}: choose the object's label in 'Label' "
            "(every other label then counts as background)"
        )
    return values[0]


def painted_slices(labels, label: int | None = None, name: str = "labels") -> tuple[list[int], int]:
    """(z of the slices carrying the chosen label, the label); a 2D layer is slice 0.

    In a volume only the slices with paint are training slices: a slice with any pixel of
    the chosen label counts, the others (unpainted, or another label only) are ignored.
    """
    labels = np.asarray(labels)
    if labels.ndim not in (2, 3):
        raise InputError(f"labels layer {name!r} has shape {labels.shape}; it must be 2D or 3D like the image")
    value = choose_label(labels, label, name)
    vol = labels[None] if labels.ndim == 2 else labels
    z = [int(i) for i in np.flatnonzero((vol == value).reshape(vol.shape[0], -1).any(axis=1))]
    return z, value


def held_back_split(n: int, fraction: float = HELD_BACK, seed: int = 0) -> tuple[list[int], list[int], str]:
    """(train, val, note): ~``fraction`` of ``n`` slices held back, at least 1 when n >= 2.

    With a single slice there is nothing to hold back: it is used for training and for
    validation, and the note says so.
    """
    if n < 1:
        raise InputError("no training slices")
    if n == 1:
        return [0], [0], "only one painted slice: validation DICE is measured on the training slice itself"
    n_val = min(n - 1, max(1, int(round(n * fraction))))
    order = np.random.default_rng(seed).permutation(n)
    val = sorted(int(i) for i in order[:n_val])
    train = sorted(int(i) for i in order[n_val:])
    return train, val, f"{len(val)} of {n} slices held back for validation"


def pick_n_shot(train: list[int], n_shot: int | None, seed: int = 0) -> list[int]:
    """``n_shot`` of the training indices, chosen by seed as ``pixeldrl train --n-shot`` does;
    None/0: all. More than there are is refused, not capped."""
    from napari_pixeldrl.training.data import n_shot as choose

    if not n_shot:
        return list(train)
    return [int(i) for i in choose(train, n_shot, seed)]


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


def start_channels(start) -> int | None:
    """Input channels of a starting model: None (fresh), a LoadedModel, or a checkpoint path/bundled name.

    A file that is not a napari-pixeldrl checkpoint raises CheckpointError with a hint.
    """
    if start is None:
        return None
    from napari_pixeldrl.model.checkpoint import LoadedModel, read_header

    if isinstance(start, LoadedModel):
        return int(start.config.in_channels)
    try:
        header = read_header(start)
        return int(header["model"].get("in_channels", 1))
    except CheckpointError as exc:
        raise CheckpointError(checkpoint_hint(str(exc).rstrip("."))) from None
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise CheckpointError(checkpoint_hint(f"{start} has a damaged config header ({exc})")) from None


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
    """Training/validation slices from an image layer's data and a painted labels layer."""
    from napari_pixeldrl.model.preprocess import normalize_slice

    if isinstance(image, (list, tuple)):
        raise InputError(f"layer {image_name!r} is multiscale; convert it to a single-resolution image first")
    shape = tuple(np.shape(image))
    is_volume, channels = image_layout(shape, rgb, image_name)
    spatial = shape[:-1] if rgb else shape
    labels = np.asarray(labels)
    if tuple(labels.shape) != tuple(spatial):
        raise InputError(
            f"labels layer {labels_name!r} has shape {labels.shape} but image {image_name!r} has {spatial}; "
            "paint in a labels layer made for this image (Layers > New Labels layer with the image selected)"
        )
    z, value = painted_slices(labels, label, labels_name)
    vol = np.asarray(image)
    if rgb:
        vol = vol[..., :3]
        vol = np.moveaxis(vol, -1, -3)  # (..., C, H, W)
    else:
        vol = vol[..., None, :, :]
    if not is_volume:
        vol, lab = vol[None], labels[None]
    else:
        lab = labels
    images, masks = [], []
    for i in z:
        where = f"layer {image_name!r}, slice {i}" if is_volume else f"layer {image_name!r}"
        images.append(normalize_slice(np.asarray(vol[i]), where))
        masks.append((lab[i] == value).astype(np.uint8))
    train, val, note = held_back_split(len(z), seed=seed)
    train = pick_n_shot(train, n_shot, seed)
    if n_shot and len(z) > 1:
        note += f"; training on {len(train)} slice(s) (N-shot)"
    return TrainData(
        train=([images[i] for i in train], [masks[i] for i in train]),
        val=([images[i] for i in val], [masks[i] for i in val]),
        channels=channels,
        note=note,
        slices=z,
    )


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
    return TrainData(
        train=(list(train.images), list(train.masks)),
        val=(list(val.images), list(val.masks)),
        channels=int(data.images[0].shape[0]),
        note=note,
    )


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
    from napari_pixeldrl.training.run_folder import STATE

    out = Path(out).expanduser()
    if out.exists() and not out.is_dir():
        raise InputError(f"output folder {out} is a file; choose a folder")
    if (out / STATE).exists():
        raise InputError(f"{out} already holds a training run; choose another output folder (or leave it empty for a new one)")
    return out


# --------------------------------------------------------------------------- job


def preload_training_stack() -> None:
    """Import now what a training run would import on its first step.

    Called by the widget when it opens, on the GUI thread, while nothing runs. Imported
    for the first time from the worker thread, these modules hold the GIL for their whole
    import and the window stalls: the trainer's extension modules (~0.4 s), and
    ``torch._dynamo`` (with sympy and mpmath, ~0.35 s), which ``torch.optim.Optimizer``
    imports lazily in its constructor. One Adam step on a scalar runs those paths.
    """
    import torch

    import napari_pixeldrl.training.trainer  # noqa: F401

    p = torch.zeros(1, requires_grad=True)
    opt = torch.optim.Adam([p], lr=1e-3)
    (p * 2.0).sum().backward()
    opt.step()


def train_job(
    data: TrainData | None,
    config,
    out_dir,
    *,
    start=None,
    dataset: tuple[str, str, int | None] | None = None,
    n_shot: int | None = None,
    cancel: threading.Event | None = None,
    threaded: bool | None = None,
) -> Iterator[Stage | TrainStarted | TrainEpisode | TrainEpoch]:
    """Train (``config``: a TrainConfig) and return TrainDone / Failed.

    ``data``: slices from :func:`layer_training_data`, or None with ``dataset`` =
    (kind, path, label) to load a folder here. ``start``: None (fresh ``config.preset``
    model), a checkpoint path / bundled name, or a LoadedModel (saved into the run folder
    first, since the trainer starts from a file). ``threaded=False`` (or the environment
    variable ``PIXELDRL_TRAIN_INLINE=1``) runs ``fit`` in the caller's thread, with no
    helper thread; its progress messages then arrive together when the run has ended.
    """
    from napari_pixeldrl.model.checkpoint import LoadedModel, load_checkpoint, save_checkpoint
    from napari_pixeldrl.training.loader import batches_per_epoch
    from napari_pixeldrl.training.events import EndEvent, EpisodeEvent, EpochEvent
    from napari_pixeldrl.training.trainer import Trainer

    cancel = cancel or threading.Event()
    t0 = time.perf_counter()
    out_dir = Path(out_dir)
    device = str(getattr(config, "device", "cpu"))
    try:
        if data is None:
            yield Stage("loading the dataset")
            kind, path, label = dataset
            data = dataset_training_data(kind, path, label=label, n_shot=n_shot, seed=config.seed)
        check_channels(data.channels, start_channels(start))
        init = start
        if isinstance(start, LoadedModel):
            init = start.path if start.path is not None and Path(start.path).exists() else None
            if init is None:
                init = save_checkpoint(out_dir / "init.safetensors", start.model, start.config, start.info)
        trainer = Trainer(config, data.train, data.val, out_dir, init_checkpoint=init)
        trainer.cancel = cancel
        events: queue.Queue = queue.Queue()
        trainer.callbacks.append(events.put)
        n_ep = batches_per_epoch(len(data.train[0]), config.batch_size, 1)
        yield TrainStarted(len(data.train[0]), len(data.val[0]), data.note, int(config.epochs), n_ep, out_dir)
        outcome: dict = {}

        def run():
            try:
                outcome["result"] = trainer.fit()
            except BaseException as exc:  # noqa: BLE001 - handed back to the job's thread
                outcome["error"] = exc

        if threaded is None:
            threaded = os.environ.get("PIXELDRL_TRAIN_INLINE", "") in ("", "0")
        thread = threading.Thread(target=run, name="pixeldrl-train", daemon=True)
        if threaded:
            thread.start()
        else:
            run()
        try:
            while thread.is_alive() or not events.empty():
                try:
                    ev = events.get(timeout=0.05)
                except queue.Empty:
                    continue
                if isinstance(ev, EpisodeEvent):
                    yield TrainEpisode(ev.epoch, ev.episode, ev.episodes_per_epoch, float(ev.stats.loss), float(ev.stats.mean_reward), ev.elapsed)
                elif isinstance(ev, EpochEvent):
                    yield TrainEpoch(
                        ev.epoch, ev.epochs, float(ev.train.get("loss", np.nan)), float(ev.train.get("mean_reward", np.nan)),
                        ev.val_dice, ev.best_dice, ev.best_epoch, ev.is_best, ev.elapsed,
                    )
                elif isinstance(ev, EndEvent):
                    yield Stage("loading the best model")
        finally:
            # The consumer stopped (worker.quit / generator closed) or we are done: stop the run.
            if thread.is_alive():
                cancel.set()
            if threaded:
                thread.join()
        if "error" in outcome:
            raise outcome["error"]
        result = outcome["result"]
        loaded = load_checkpoint(result.best_checkpoint, device="cpu")
        return TrainDone(
            result.reason, result.epochs_done, result.best_dice, result.best_epoch, result.out_dir,
            result.best_checkpoint, loaded, len(data.train[0]), len(data.val[0]), data.note, time.perf_counter() - t0,
        )
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
