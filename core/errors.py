"""Errors that name the problem, raised before any tensor reaches torch."""


class PixelDRLError(Exception):
    """Base class of every error this package raises on purpose."""


class InputError(PixelDRLError, ValueError):
    """An image, mask or file that cannot be used as given (shape, dtype, NaN, labels, ...)."""


class CheckpointError(PixelDRLError, ValueError):
    """A checkpoint that is unreadable, foreign, or of another format version."""
