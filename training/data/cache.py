"""On-disk cache of preprocessed slices, so that a second load skips decoding and normalising.

One ``.npz`` file per (dataset, options), written uncompressed with ``allow_pickle=False``
to a temporary name and renamed (atomic). The key is a SHA-256 of: the cache format version,
the loader kind, the dataset's absolute path, every input file's path, size and mtime (ns),
the options that change the content (``label``) and the normalisation percentiles. Any change
to a file therefore misses the cache; stale entries are simply never read again
(:func:`clear_cache` removes them). The cache holds every slice, empty ones included, so
``keep_empty`` and :func:`summarize` share one entry. Arrays are stored exactly (float32
images, uint8 masks): a cached load returns the same numbers as a fresh one.

Default folder: ``$PIXELDRL_CACHE``, else ``~/.cache/napari-pixeldrl``.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from pathlib import Path

import numpy as np

from napari_pixeldrl.core.atomic import atomic_write
from napari_pixeldrl.model.preprocess import PERCENTILES

from .records import SliceSet

CACHE_FORMAT_VERSION = 2  # 2: a set is built only if its masks agree on the object's label


def default_cache_dir() -> Path:
    env = os.environ.get("PIXELDRL_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "napari-pixeldrl"


def cache_key(kind: str, root: Path, files: list[Path], options: dict) -> str:
    listing = []
    for f in sorted(set(files)):
        st = f.stat()
        listing.append([str(f.resolve()), st.st_size, st.st_mtime_ns])
    payload = {
        "version": CACHE_FORMAT_VERSION,
        "kind": kind,
        "root": str(Path(root).resolve()),
        "files": listing,
        "options": options,
        "percentiles": list(PERCENTILES),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def cache_path(cache_dir: Path | None, kind: str, key: str) -> Path:
    return Path(cache_dir if cache_dir is not None else default_cache_dir()) / f"{kind}-{key[:32]}.npz"


def write_cache(path: Path, data: SliceSet, key: str) -> bool:
    """Write ``data`` atomically; on failure (read-only disk, full disk) warn and return False."""
    arrays: dict[str, np.ndarray] = {
        "version": np.array(CACHE_FORMAT_VERSION),
        "key": np.array(key),
        "kind": np.array(data.kind),
        "root": np.array(data.root),
        "patients": np.array(data.patients, dtype=str),
        "slice_index": np.array(data.slice_index, dtype=np.int64),
        "spacing": np.array(data.spacing, dtype=np.float64).reshape(len(data), 2),
        "sources": np.array(data.sources, dtype=str),
        "skipped": np.array(data.skipped, dtype=str).reshape(len(data.skipped), 2),
    }
    groups: dict[tuple, list[int]] = {}
    for i, (im, m) in enumerate(zip(data.images, data.masks)):
        groups.setdefault((im.shape, m.shape), []).append(i)
    arrays["n_groups"] = np.array(len(groups))
    for g, idx in enumerate(groups.values()):
        arrays[f"order_{g}"] = np.array(idx, dtype=np.int64)
        arrays[f"images_{g}"] = np.stack([data.images[i] for i in idx]).astype(np.float32, copy=False)
        arrays[f"masks_{g}"] = np.stack([data.masks[i] for i in idx]).astype(np.uint8, copy=False)
    def write(tmp: str) -> None:
        with open(tmp, "wb") as fh:  # a file object: given a name, np.savez would add ".npz"
            np.savez(fh, **arrays)

    try:
        atomic_write(path, write)
        return True
    except OSError as exc:
        warnings.warn(f"could not write the dataset cache {path}: {exc}", stacklevel=3)
        return False


def read_cache(path: Path, key: str) -> SliceSet | None:
    """The cached SliceSet, or None when absent, of another version/key, or unreadable."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            if int(z["version"]) != CACHE_FORMAT_VERSION or str(z["key"]) != key:
                return None
            n = len(z["patients"])
            images: list = [None] * n
            masks: list = [None] * n
            for g in range(int(z["n_groups"])):
                order, ims, ms = z[f"order_{g}"], z[f"images_{g}"], z[f"masks_{g}"]
                for j, i in enumerate(order):
                    images[i] = ims[j]
                    masks[i] = ms[j]
            return SliceSet(
                images=images,
                masks=masks,
                patients=[str(p) for p in z["patients"]],
                slice_index=[int(i) for i in z["slice_index"]],
                spacing=[(float(a), float(b)) for a, b in z["spacing"]],
                sources=[str(s) for s in z["sources"]],
                kind=str(z["kind"]),
                root=str(z["root"]),
                skipped=[(str(a), str(b)) for a, b in z["skipped"]],
                from_cache=True,
            )
    except Exception as exc:  # a truncated or foreign file: rebuild rather than fail
        warnings.warn(f"ignoring unreadable dataset cache {path}: {exc}", stacklevel=3)
        return None


def clear_cache(cache_dir: Path | None = None) -> int:
    """Delete every cache file in ``cache_dir``; return how many."""
    folder = Path(cache_dir if cache_dir is not None else default_cache_dir())
    if not folder.is_dir():
        return 0
    n = 0
    for f in folder.glob("*.npz"):
        f.unlink()
        n += 1
    return n
