"""Slices a user painted in a viewer: an image (2D, or a volume of slices) and a labels
array of the same shape, as a :class:`SliceSet` like every other dataset.

Only the slices that carry the chosen label are training slices. They all belong to one
image, so no split by patient is possible: ``select_split`` splits them by the
``held_back`` rule (:func:`~napari_pixeldrl.training.data.splits.hold_back`), with the
same N-shot rule as a dataset folder (more than there are is refused).
"""

from __future__ import annotations

import numpy as np

from napari_pixeldrl.core.errors import InputError
from napari_pixeldrl.model.preprocess import normalize_slice

from .records import SliceSet

KIND = "painted"


def image_layout(shape, rgb: bool, name: str = "image") -> tuple[bool, int]:
    """(is_volume, channels) of an image; refuses anything but 2D/3D (RGB: + colour axis)."""
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
    """(z of the slices carrying the chosen label, the label); a 2D array is slice 0.

    A slice with any pixel of the chosen label counts; the others (unpainted, or another
    label only) are left out.
    """
    labels = np.asarray(labels)
    if labels.ndim not in (2, 3):
        raise InputError(f"labels layer {name!r} has shape {labels.shape}; it must be 2D or 3D like the image")
    value = choose_label(labels, label, name)
    vol = labels[None] if labels.ndim == 2 else labels
    z = [int(i) for i in np.flatnonzero((vol == value).reshape(vol.shape[0], -1).any(axis=1))]
    return z, value


def check_painted(image_shape, labels, *, rgb: bool = False, label: int | None = None,
                  image_name: str = "image", labels_name: str = "labels") -> tuple[list[int], int, int]:
    """(z of the painted slices, the label, the image's channels): the checks of
    :func:`painted_slice_set` without reading the image, cheap enough to run before a job."""
    shape = tuple(image_shape)
    is_volume, channels = image_layout(shape, rgb, image_name)
    spatial = shape[:-1] if rgb else shape
    if tuple(np.shape(labels)) != tuple(spatial):
        raise InputError(
            f"labels layer {labels_name!r} has shape {np.shape(labels)} but image {image_name!r} has {spatial}; "
            "paint in a labels layer made for this image (Layers > New Labels layer with the image selected)"
        )
    z, value = painted_slices(labels, label, labels_name)
    return z, value, channels


def painted_slice_set(image, labels, *, rgb: bool = False, label: int | None = None,
                      image_name: str = "image", labels_name: str = "labels") -> SliceSet:
    """The painted slices of ``image`` (normalised as every loader does) with their masks."""
    if isinstance(image, (list, tuple)):
        raise InputError(f"layer {image_name!r} is multiscale; convert it to a single-resolution image first")
    labels = np.asarray(labels)
    z, value, _ = check_painted(np.shape(image), labels, rgb=rgb, label=label, image_name=image_name,
                                labels_name=labels_name)
    is_volume = labels.ndim == 3
    vol = np.asarray(image)
    vol = np.moveaxis(vol[..., :3], -1, -3) if rgb else vol[..., None, :, :]  # (..., C, H, W)
    vol, lab = (vol, labels) if is_volume else (vol[None], labels[None])
    images, masks, sources = [], [], []
    for i in z:
        where = f"layer {image_name!r}, slice {i}" if is_volume else f"layer {image_name!r}"
        images.append(normalize_slice(np.asarray(vol[i]), where))
        masks.append((lab[i] == value).astype(np.uint8))
        sources.append(where)
    return SliceSet(images=images, masks=masks, patients=[image_name] * len(z), slice_index=z,
                    spacing=[(1.0, 1.0)] * len(z), sources=sources, kind=KIND)
