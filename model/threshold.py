"""The keep threshold: a pixel's agent keeps it when pi(keep) > threshold.

0.5 is the argmax of the two actions, what every model trained with. A model that adds
pixels round the object (a low PPV with a high sensitivity) may do better with a higher
one, a model that misses object pixels with a lower one; like the post-processing, the
threshold is chosen on validation after training (``benchmarks/keep_thresholds.py``),
never on test, and travels in the checkpoint's model config, so that every consumer
applies the same one; ``--keep-threshold`` overrides it. For a U-Net it thresholds its
sigmoid. In an episode it applies at every step, so it changes the states the later
steps see as well as the mask.
"""

from __future__ import annotations

import math
import numbers

from napari_pixeldrl.core.errors import InputError

ARGMAX = 0.5


def check_keep_threshold(value, what: str = "keep threshold") -> float:
    """A probability strictly between 0 and 1 (0 would keep everything, 1 nothing)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0.0 < float(value) < 1.0:
        raise InputError(f"{what} must be a number between 0 and 1 (0.5: the argmax), got {value!r}")
    return float(value)


def keep_margin(threshold: float) -> float:
    """The log-odds of ``threshold``: pi(keep) > threshold exactly when the keep logit exceeds
    the other action's (or a U-Net's logit exceeds 0) by more than this; 0 at the argmax."""
    return math.log(threshold / (1.0 - threshold))


def with_keep_threshold(config, choice):
    """``config`` with its keep threshold replaced by ``choice`` (None or "auto": keep the model's)."""
    if choice is None or choice == "auto":
        return config
    if isinstance(choice, str):
        try:
            choice = float(choice)
        except ValueError:
            raise InputError(f"--keep-threshold takes auto or a number between 0 and 1, got {choice!r}") from None
    return config.replace(keep_threshold=check_keep_threshold(choice, "--keep-threshold"))
