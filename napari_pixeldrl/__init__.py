"""napari-pixeldrl: PixelDRL-MG segmentation as a library, a command line and a napari plugin.

Importing this package never imports napari or Qt, so the library and the
``pixeldrl`` command work on machines without a display.
"""

from napari_pixeldrl.core import __version__

__all__ = ["__version__"]
