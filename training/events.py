"""What a training run reports: typed events for its hooks, its result, and its one
error of its own (a diverging loss)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from napari_pixeldrl.core.errors import PixelDRLError

from .pa3c import LossStats
from .run_folder import BEST


class TrainingDiverged(PixelDRLError):
    """The loss became NaN or infinite; raised before the optimiser step, so nothing is saved from it."""


# ------------------------------------------------------------------------- events


@dataclass
class StartEvent:
    out_dir: Path  # the run folder, now locked by this run
    start_epoch: int  # epochs already done (a resume)


@dataclass
class EpisodeEvent:
    epoch: int  # 1-based epoch this episode belongs to
    episode: int  # 1-based within the epoch
    episodes_per_epoch: int
    stats: LossStats
    lr: float
    elapsed: float  # seconds since fit() started


@dataclass
class EpochEvent:
    epoch: int  # 1-based, the epoch just finished
    epochs: int
    train: dict  # mean loss, policy_loss, value_loss, supervised_loss, entropy, mean_reward, keep_fraction
    val_dice: float | None
    best_dice: float
    best_epoch: int
    is_best: bool
    lr: float
    seconds: float
    elapsed: float


@dataclass
class EndEvent:
    reason: str  # "done" | "time_budget" | "cancelled"
    epochs_done: int
    best_dice: float
    best_epoch: int
    out_dir: Path
    stop_val_dice: float | None = None  # the weights validated at a budget stop, if any


Callback = Callable[[object], None]


def drive(events, handle: Callback | None = None):
    """Run an event generator to its end, handing each event to ``handle``; its return value."""
    while True:
        try:
            event = next(events)
        except StopIteration as done:
            return done.value
        if handle is not None:
            handle(event)


@dataclass
class TrainResult:
    reason: str
    epochs_done: int
    best_dice: float
    best_epoch: int
    out_dir: Path
    history: list = field(default_factory=list)
    stop_val_dice: float | None = None  # validation DICE of the weights at a stop, when they were validated

    @property
    def best_checkpoint(self) -> Path:
        return self.out_dir / BEST
