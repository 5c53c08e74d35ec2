"""The typed messages the plugin's jobs yield and return.

A job yields progress (:class:`Stage`, :class:`SegmentProgress`, :class:`TrainStarted`,
and the trainer's own events of ``training.events``) and *returns* one outcome:
``...Done``, :class:`Failed` or :class:`Cancelled`. No napari or Qt here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


@dataclass
class Stage:
    """A named phase started (loading the model, segmenting, ...)."""

    text: str


@dataclass
class SegmentProgress:
    done: int  # slices finished
    total: int


@dataclass
class SegmentDone:
    mask: np.ndarray  # (H, W) or (Z, H, W) uint8
    steps: np.ndarray  # (t_max + 1, *spatial) uint8 masks m(0..t_max): index t is step t
    actions: np.ndarray  # (t_max + 1, *spatial) uint8 codes of _colors.ACTIONS, a(0) empty
    value: np.ndarray  # (*spatial) float32
    steps_taken: np.ndarray
    t_max: int
    model_name: str
    loaded: Any  # the LoadedModel, so the widget can cache it
    seconds: float
    constant_slices: list[int] = field(default_factory=list)


@dataclass
class Failed:
    message: str
    kind: str = "input"  # "input" | "checkpoint" | "other"


@dataclass
class Cancelled:
    message: str = "cancelled"


@dataclass
class EvaluateDone:
    rows: list[tuple[str, dict]]  # (row label, metrics dict) per slice, then overall rows
    ndim: int
    agreement: np.ndarray | None = None  # _colors AGREE / MISSED / EXTRA per pixel


@dataclass
class TrainStarted:
    n_train: int
    n_val: int
    note: str  # how validation is done, e.g. "validating on the training slice"
    epochs: int
    episodes_per_epoch: int
    out_dir: Path


@dataclass
class TrainDone:
    """The run ended: the trainer's result, the best model loaded, and what it trained on."""

    result: Any  # training.events.TrainResult
    loaded: Any  # LoadedModel of checkpoint_best
    n_train: int
    n_val: int
    note: str = ""
    seconds: float = 0.0

    def __getattr__(self, name):  # reason, epochs_done, best_dice, best_epoch, out_dir, best_checkpoint
        if name == "result":
            raise AttributeError(name)
        return getattr(self.result, name)


def checkpoint_hint(message: str) -> str:
    return (f"{message}. Choose a .safetensors checkpoint saved by napari-pixeldrl (pixeldrl train, or the Train widget), "
            "or a bioimage.io package (.zip) made by pixeldrl export.")
