"""Dataset loaders (LGG, MSD, HECKTOR, a plain folder), the slice cache and the splits.

Every loader returns a :class:`SliceSet` of 2D slices: images (C, H, W) float32 in [0, 1]
(``normalize_slice``), masks (H, W) uint8 {0, 1} (``binarize_mask``). Volumes are cut into
axial slices in the package's (Z, Y, X) order (see :mod:`napari_pixeldrl.core.io`).
"""

from .cache import CACHE_FORMAT_VERSION, clear_cache, default_cache_dir
from .loading import LOADERS, load_dataset, summarize
from .records import SliceRecord, SliceSet
from .splits import kfold_by_patient, kfold_by_slice, n_shot, split_by_patient, split_by_slice

__all__ = [
    "CACHE_FORMAT_VERSION",
    "LOADERS",
    "SliceRecord",
    "SliceSet",
    "clear_cache",
    "default_cache_dir",
    "kfold_by_patient",
    "kfold_by_slice",
    "load_dataset",
    "n_shot",
    "split_by_patient",
    "split_by_slice",
    "summarize",
]
