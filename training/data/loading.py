"""``load_dataset`` and ``summarize``: one entry point over the layout readers and the cache.

Policy for files that cannot be read (missing partner, empty, truncated or undecodable):
they are skipped and counted, not fatal. Each is recorded as ``(file, reason)`` in
``SliceSet.skipped`` and named in one ``UserWarning``; ``strict=True`` turns the first one
into an :class:`InputError` instead. A load where nothing is readable fails. Everything
else that is wrong raises :class:`InputError` naming the file, because skipping it would
silently change the task: an image/mask shape mismatch, a multi-label mask without
``label``, NaN/Inf values, a label found in no file, or images with different channel counts.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from napari_pixeldrl.core.errors import InputError
from napari_pixeldrl.core.io import UnreadableFileError
from napari_pixeldrl.model.preprocess import normalize_slice

from . import cache as _cache
from . import folder, hecktor, lgg, msd
from .records import SliceSet

LOADERS = {"lgg": lgg, "msd": msd, "hecktor": hecktor, "folder": folder}


def _module(kind: str):
    try:
        return LOADERS[kind]
    except KeyError:
        raise InputError(f"unknown dataset kind {kind!r}; choose one of {', '.join(LOADERS)}") from None


def _warn_skipped(root: Path, skipped: list[tuple[str, str]]) -> None:
    if skipped:
        names = "; ".join(f"{f} ({why})" for f, why in skipped[:10])
        more = f" and {len(skipped) - 10} more" if len(skipped) > 10 else ""
        warnings.warn(f"{len(skipped)} file(s) skipped while loading {root}: {names}{more}", UserWarning, stacklevel=4)


def _load_all(kind, path, label, cache, cache_dir, strict) -> SliceSet:
    module = _module(kind)
    root = Path(path).expanduser()
    if not root.is_dir():
        raise InputError(f"dataset folder not found: {root}")
    root = root.resolve()
    items, problems = module.scan(root)
    if not items:
        found = f"; unpaired: {', '.join(f for f, _ in problems[:5])}" if problems else ""
        raise InputError(f"no image/mask pairs found in {root} (expected {module.LAYOUT}){found}")
    if strict and problems:
        raise InputError(f"{problems[0][0]}: {problems[0][1]}")
    files = [f for it in items for f in it.files] + list(getattr(module, "extra_files", lambda r: [])(root))
    key = _cache.cache_key(kind, root, files, {"label": label})
    where = _cache.cache_path(cache_dir, kind, key)
    if cache:
        cached = _cache.read_cache(where, key)
        if cached is not None:
            if strict and cached.skipped:
                raise InputError(f"{cached.skipped[0][0]}: {cached.skipped[0][1]}")
            _warn_skipped(root, cached.skipped)
            return cached

    images, masks, patients, index, spacing, sources = [], [], [], [], [], []
    values: dict[int, str] = {}  # object value -> first file that marks its object so
    skipped = list(problems)
    for item in items:
        try:
            raw = module.read(item, label)
        except UnreadableFileError as exc:
            if strict:
                raise
            skipped.append((exc.path or str(item.image), str(exc)))
            continue
        for s in raw:
            if s.object_value is not None:
                values.setdefault(s.object_value, s.source)
            images.append(normalize_slice(s.image, source=f"{s.source} slice {s.index}", allow_constant=True))
            masks.append(np.ascontiguousarray(s.mask, dtype=np.uint8))
            patients.append(item.patient)
            index.append(int(s.index))
            spacing.append(s.spacing)
            sources.append(s.source)
    # 1 and 255 both mean "object" in a binary mask; other values differing between files
    # are different labels, which one training run must not merge.
    distinct = {1 if v == 255 else v for v in values}
    if label is None and len(distinct) > 1:
        shown = "; ".join(f"{v} in {src}" for v, src in sorted(values.items())[:4])
        raise InputError(f"the masks in {root} mark their object with different labels in different files ({shown}); "
                         "choose one with --label")
    if not images:
        raise InputError(f"no readable image/mask pair in {root}; skipped: " + "; ".join(f"{f} ({w})" for f, w in skipped[:5]))
    channels = images[0].shape[0]
    for im, src in zip(images, sources):
        if im.shape[0] != channels:
            raise InputError(f"{src} has {im.shape[0]} channel(s), {sources[0]} has {channels}: one dataset needs one channel count")
    data = SliceSet(images, masks, patients, index, spacing, sources, kind=kind, root=str(root), skipped=skipped)
    if label is not None and not data.positive.any():
        raise InputError(f"no mask in {root} holds label {label}")
    _warn_skipped(root, skipped)
    if cache:
        _cache.write_cache(where, data, key)
    return data


def load_dataset(
    kind: str,
    path,
    *,
    keep_empty: bool = False,
    label: int | None = None,
    cache: bool = True,
    cache_dir=None,
    strict: bool = False,
) -> SliceSet:
    """Load a dataset as 2D slices: images (C, H, W) float32 in [0, 1], masks (H, W) uint8 {0, 1}.

    ``kind``: ``'lgg'`` (Kaggle kaggle_3m TIFs), ``'msd'`` (Decathlon task folder),
    ``'hecktor'`` (HECKTOR 2020, PET only) or ``'folder'`` (image/mask pairs; see
    :mod:`.folder`). Slices whose mask is empty are removed unless ``keep_empty`` (the
    paper's protocol). ``label`` picks one object label of multi-label masks. ``cache``
    reuses preprocessed slices from ``cache_dir`` (see :mod:`.cache`). Unreadable files are
    skipped, warned about and listed in ``.skipped`` unless ``strict`` (see module doc).
    """
    data = _load_all(kind, path, label, cache, None if cache_dir is None else Path(cache_dir), strict)
    if keep_empty:
        return data
    kept = data.subset(np.flatnonzero(data.positive))
    return kept


def summarize(kind: str, path, *, label: int | None = None, cache: bool = True, cache_dir=None) -> dict[str, int]:
    """Counts over ALL slices, empty ones included: ``{"patients", "slices", "positive_slices"}``."""
    return load_dataset(kind, path, keep_empty=True, label=label, cache=cache, cache_dir=cache_dir).summary()
