"""What a run folder holds: the names of its files, and its learning-curve figure.

    config.json                   the TrainConfig and the model config
    checkpoint_last.safetensors   the model after the last finished epoch (atomic, every epoch),
                                  or at a time-budget stop that came within an epoch
    checkpoint_best.safetensors   the model with the best validation DICE so far
    training_state.safetensors    weights + optimizer + scheduler + RNG + history (no pickle)
    metrics.jsonl                 one JSON object per epoch
    curve.png                     learning curves (loss, mean reward, validation DICE)

With ``ema_decay`` set, "the model" in both checkpoints is the moving average of the
weights, which the training state holds beside the raw weights.

The folder is locked by one run at a time (run_lock.py)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

from napari_pixeldrl.core.atomic import atomic_write
from napari_pixeldrl.core.errors import InputError
from napari_pixeldrl.core.io import check_output_folder

LAST, BEST, STATE = "checkpoint_last.safetensors", "checkpoint_best.safetensors", "training_state.safetensors"
CONFIG, METRICS, CURVE = "config.json", "metrics.jsonl", "curve.png"


def check_run_folder(out_dir, resume: bool = False) -> Path:
    """The one rule for a run folder, checked before the data is read and again under the
    run's lock: it can be written (created if needed); a new run never mixes its files
    with another's; a resume needs the training state."""
    out_dir = check_output_folder(Path(out_dir).expanduser())
    held = [n for n in (STATE, BEST, LAST) if (out_dir / n).exists()]
    if not resume and held:
        raise InputError(f"{out_dir} already holds a run ({held[0]}); continue it with --resume, "
                         "or choose another output folder")
    if resume and held and STATE not in held:
        raise InputError(f"{out_dir} holds {held[0]} but not {STATE}, so the run cannot be resumed (its optimiser "
                         f"state and logged epochs are gone); fine-tune from {held[0]} into another folder instead")
    return out_dir


def option_changes(history: Sequence[dict]) -> list[float]:
    """Where (between two epochs) a run was resumed with other training options: loss and
    reward change scale there, the weight average starts, or the learning rate was set anew
    with ``--lr`` (rows written before ``base_lr`` was recorded cannot say)."""
    def lr_set(a, b) -> bool:
        return a.get("base_lr") is not None and b.get("base_lr") is not None and a["base_lr"] != b["base_lr"]

    return [b["epoch"] - 0.5 for a, b in zip(history, history[1:])
            if (a.get("objective"), a.get("ema_decay")) != (b.get("objective"), b.get("ema_decay")) or lr_set(a, b)]


def write_curve(history: Sequence[dict], path) -> None:
    """Learning curves: training loss and mean reward, validation DICE, per epoch (a bare
    Figure, drawn by Agg when saved: the process's matplotlib backend is left as it is)."""
    from matplotlib.figure import Figure

    epochs = [r["epoch"] for r in history]
    fig = Figure(figsize=(10, 3.5))
    ax1, ax2, ax3 = fig.subplots(1, 3)
    ax1.plot(epochs, [r.get("train_loss", math.nan) for r in history], marker=".")
    ax1.set(title="training loss", xlabel="epoch")
    ax2.plot(epochs, [r.get("train_mean_reward", math.nan) for r in history], marker=".", color="tab:green")
    ax2.set(title="mean reward per pixel (episode)", xlabel="epoch")
    val = [(r["epoch"], r["val_dice"]) for r in history if r.get("val_dice") is not None]
    raw = [(r["epoch"], r["val_dice_raw"]) for r in history if r.get("val_dice_raw") is not None]
    if val:
        ax3.plot(*zip(*val), marker=".", color="tab:red", label="saved (the average where on)" if raw else None)
    if raw:  # --ema-decay: the raw weights' score beside the average's
        ax3.plot(*zip(*raw), marker=".", color="tab:red", alpha=0.35, ls=":", label="raw weights")
        ax3.legend(fontsize=7, loc="lower right")
    ax3.set(title="validation DICE", xlabel="epoch", ylim=(0, 1))
    changes = option_changes(history)
    for x in changes:
        for ax in (ax1, ax2, ax3):
            ax.axvline(x, color="gray", ls="--", lw=0.8)
    if changes:
        ax1.annotate("training options changed", (changes[0], 1), xycoords=("data", "axes fraction"),
                     fontsize=7, color="gray", ha="left", va="top", xytext=(3, -3), textcoords="offset points")
    fig.tight_layout()

    def write(tmp):
        fig.savefig(tmp, format="png", dpi=80)

    atomic_write(Path(path), write)
