"""Synthetic 64x64 slices for the training tests: bright discs on a darker noisy background."""

from napari_pixeldrl.training.synthetic import discs  # noqa: F401  (re-exported for the tests)

TINY = dict(widths=(4, 8, 8, 8), head_widths=(8, 8), head_dilations=(1, 2), context_channels=8, fine_channels=4)


