"""The trainer: PixelDRL-MG by PA3C (METHOD.md §2) or the U-Net baseline, one loop.

A run lives in a folder::

    config.json                   the TrainConfig and the model config
    checkpoint_last.safetensors   the model after the last finished epoch (atomic, every epoch)
    checkpoint_best.safetensors   the model with the best validation DICE so far
    training_state.safetensors    weights + optimizer + scheduler + RNG + history (no pickle)
    metrics.jsonl                 one JSON object per epoch
    curve.png                     learning curves (loss, mean reward, validation DICE)

With ``ema_decay`` set, "the model" in both checkpoints is the moving average of the
weights, which the training state holds beside the raw weights.

``Trainer.fit(resume=True)`` continues a killed run from its last finished epoch.
Hooks (``on_start``, ``on_episode``, ``on_epoch``, ``on_end``) call every callback with a typed event;
``trainer.cancel`` (a threading.Event) is checked before every episode (batch).
Under ``torchrun`` the objective is wrapped in DistributedDataParallel (gloo on CPU, NCCL
on GPUs); process 0 validates and writes the files.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
import torch

from napari_pixeldrl.core.errors import CheckpointError, InputError, PixelDRLError
from napari_pixeldrl.core.atomic import atomic_write
from napari_pixeldrl.core.device import choose_device
from napari_pixeldrl.model.checkpoint import load_checkpoint, read_header, save_checkpoint
from napari_pixeldrl.model.config import dataclass_from_json, ModelConfig, preset_config
from napari_pixeldrl.model.network import KEEP, build_model, count_parameters

from .loader import CropSettings, batches_per_epoch, epoch_batches
from .metrics import overlap_metrics
from .pa3c import ENTROPY_BETA, LossStats, PA3CObjective
from .predict import predict_slices
from .run_lock import RunFolderLock, remove_stale_temporaries
from .state import load_training_state, restore_rng, save_training_state
from .supervised import SupervisedObjective

LAST, BEST, STATE = "checkpoint_last.safetensors", "checkpoint_best.safetensors", "training_state.safetensors"
CONFIG, METRICS, CURVE = "config.json", "metrics.jsonl", "curve.png"

# The training defaults of each preset: what a TrainConfig field left at None means.
# ``paper`` trains the paper's loss (Eqs. 12-16): the plain reward over all pixels, no
# supervised term, PyTorch's initialisation and one learning rate for every weight; each
# deviation is an explicit option. ``lite`` carries this project's gap-filling choices
# (pa3c.py docstring, benchmarks/results/pa3c_collapse.md). keep_init "random": no change
# to the initialisation.
TRAIN_DEFAULTS = {
    "paper": {"supervised_weight": 0.0, "reward_balance": False, "balance_power": 1.0, "live_pixels_only": False,
              "supervised_dice": False, "keep_init": "random", "reward_conv_lr_scale": 1.0},
    # keep_init "random": with the supervised term on, a fresh run does not fall into the
    # all-zero policy, and pi(keep) started at 0.9 (which scales the output layers by 0.1)
    # learned several times slower from scratch (README, "the lite recipe").
    "lite": {"supervised_weight": 5.0, "reward_balance": True, "balance_power": 0.5, "live_pixels_only": True,
             "supervised_dice": True, "keep_init": "random", "reward_conv_lr_scale": "1/k^2"},
}
PRESET_DEFAULTED = tuple(TRAIN_DEFAULTS["paper"])


def train_defaults(preset: str) -> dict:
    """The training defaults of ``preset`` (a preset without its own, e.g. a U-Net: lite's)."""
    return dict(TRAIN_DEFAULTS.get(preset, TRAIN_DEFAULTS["lite"]))


# The PA3C loss's switches: passed to the loss and logged per epoch (a staged run may change them).
LOSS_OPTIONS = ("reward_balance", "balance_power", "live_pixels_only", "supervised_dice", "coarse_to_fine",
                "coarse_first", "supervised_steps")
# Every TrainConfig field the PA3C loss reads: what pa3c_options() passes on and what a
# fine-tune takes over from its starting checkpoint.
PA3C_FIELDS = ("value_weight", "entropy_beta", "supervised_weight", *LOSS_OPTIONS)

# Options added after runs were first saved: the value a saved config without them ran with.
_ADDED = {"reward_balance": False, "live_pixels_only": False, "balance_power": 1.0, "supervised_dice": False,
          "ema_decay": None, "coarse_to_fine": 0, "cpu_budget_min": None, "supervised_steps": "every",
          "coarse_first": 0}


@dataclass
class TrainConfig:
    """Every training option; JSON-serialisable (``to_dict`` / ``from_dict``)."""

    preset: str = "lite"
    model_overrides: dict = field(default_factory=dict)  # ModelConfig fields, e.g. narrower widths
    epochs: int = 200
    batch_size: int = 2
    lr: float = 1e-3
    lr_decay: float = 0.9  # x0.9 ...
    lr_step_epochs: int = 25  # ... every 25 epochs
    t_max: int | None = None  # None: the model config's (10)
    gamma: float | None = None  # None: the model config's (0.95)
    entropy_beta: float = ENTROPY_BETA
    value_weight: float = 1.0  # c_v; Eq. 16 implies 1, PixelRL's code 0.25
    supervised_weight: float | None = None  # None: the preset's (TRAIN_DEFAULTS)
    # Adam moves each of the 33x33 = 1089 weights of the reward-map filter by up to lr per
    # step; at the shared lr the filter's mass grows by ~1 per step and the returns blow up.
    # Its lr is lr * this factor (lite: 1/1089, the filter's sum moves like one weight;
    # paper: 1, one learning rate). None: the preset's.
    reward_conv_lr_scale: float | None = None
    # pi(keep) at the start of a fresh run (bias of the policy output). Zeroing is absorbing,
    # so a sampled episode keeps an object pixel only if every step keeps it; starting near
    # 0.5 nearly every object pixel is zeroed while exploring and the run falls into the
    # all-zero policy. "random" leaves PyTorch's initialisation; None: the preset's (both "random").
    keep_init: float | str | None = None
    # Gap-filling choices against the collapse to the all-zero policy (pa3c.py docstring,
    # benchmarks/results/pa3c_collapse.md): class-balanced reward, loss over live pixels.
    reward_balance: bool | None = None  # weigh each pixel's reward by its class's fraction^-power (None: preset's)
    balance_power: float | None = None  # 1: balanced accuracy (over-segments small objects), 0.5: softer (None: preset's)
    supervised_dice: bool | None = None  # add soft Dice on pi(keep) to the supervised BCE (None: preset's)
    live_pixels_only: bool | None = None  # policy/entropy/value terms over pixels not yet zeroed (None: preset's)
    # Coarse to fine (not in the paper): step t's target is the truth dilated by
    # R (T - t) / (T - 1) pixels, R this radius, in its reward and its supervised term, so
    # the first steps remove far background and the last ones settle the boundary. 0: off.
    coarse_to_fine: int = 0
    # Step 1's target only is the truth dilated by this many pixels (0: off): the first
    # step keeps a margin round the object, which the later steps, seeing m(1), trim.
    coarse_first: int = 0
    # "every": the supervised term on every step's pi(keep); "last": on the last step only,
    # the earlier steps learn from the reward alone (pa3c_loss).
    supervised_steps: str = "every"
    # Exponential moving average of the weights (decay per episode; None: off). When on, the
    # average is what is validated and saved (checkpoint_best, checkpoint_last); the raw
    # weights are validated too and logged as val_dice_raw, so a run shows what it gave.
    ema_decay: float | None = None
    crop: int | None = 128  # training crop side (None: whole slices); validation uses whole slices
    augment: bool = True
    rotate: float = 15.0  # degrees
    foreground_p: float = 0.5
    threads: int | None = None  # torch CPU threads (None: torch's default)
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    amp: bool = True  # autocast on CUDA (bf16 where supported, else fp16 with a grad scaler)
    seed: int = 0
    time_budget_min: float | None = None  # wall clock
    # Process CPU time (all threads): a budget that other load on the machine does not
    # change, for comparisons under "the same budget".
    cpu_budget_min: float | None = None
    val_every: int = 1
    val_max_slices: int | None = None
    progress: bool = True  # progress bar with ETA on stderr
    data: dict = field(default_factory=dict)  # provenance: dataset, path, split, fold, n-shot

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "TrainConfig":
        # A run saved before these options existed was trained without them: resume it so.
        if "supervised_steps" not in data:
            # Saved before the presets had training defaults: None meant what it said then.
            data = dict(data)
            if data.get("reward_conv_lr_scale", None) is None:
                data["reward_conv_lr_scale"] = "1/k^2"
            if "keep_init" in data and data["keep_init"] is None:
                data["keep_init"] = "random"
            if data.get("threads") == 0:
                data["threads"] = None
        return dataclass_from_json(cls, {**_ADDED, **data}, "training config")

    def check(self) -> None:
        """Refuse options and combinations that cannot mean what they say."""
        def number(name, low, high=math.inf, *, whole=False, optional=False, low_open=False, label=None):
            v = getattr(self, name)
            if v is None and optional:
                return
            ok = isinstance(v, int) if whole else isinstance(v, (int, float))
            ok = ok and not isinstance(v, bool) and math.isfinite(v) and (v > low if low_open else v >= low) and v <= high
            if not ok:
                kind = "a whole number" if whole else "a number"
                bound = f"above {low}" if low_open else f"at least {low}"
                raise InputError(f"{label or name.replace('_', ' ')} must be {kind} {bound}"
                                 + (f" and at most {high}" if high != math.inf else "") + f", got {v!r}")

        number("epochs", 0, whole=True)
        number("batch_size", 1, whole=True)
        number("lr", 0.0, low_open=True)
        number("lr_decay", 0.0, 1.0, low_open=True)
        number("lr_step_epochs", 1, whole=True)
        number("t_max", 1, whole=True, optional=True)
        number("gamma", 0.0, 1.0, optional=True)
        number("value_weight", 0.0)
        number("entropy_beta", 0.0)
        number("supervised_weight", 0.0, optional=True)
        number("crop", 8, whole=True, optional=True)
        number("threads", 1, whole=True, optional=True)
        number("val_max_slices", 1, whole=True, optional=True)
        number("foreground_p", 0.0, 1.0)
        number("balance_power", 0.0, 1.0, optional=True)
        number("val_every", 1, whole=True, label="validation interval (epochs)")
        number("coarse_to_fine", 0, 64, whole=True, label="coarse-to-fine radius (pixels)")
        number("coarse_first", 0, 64, whole=True, label="first step's margin (pixels)")
        if self.coarse_to_fine and self.coarse_first:
            raise InputError("--coarse-to-fine and --coarse-first are two schedules of the same targets; give one")
        number("time_budget_min", 0.0, low_open=True, optional=True, label="time budget (minutes)")
        number("cpu_budget_min", 0.0, low_open=True, optional=True, label="CPU budget (minutes)")
        if self.reward_conv_lr_scale not in (None, "1/k^2"):
            number("reward_conv_lr_scale", 0.0)
        d = self.ema_decay
        if d is not None and not (isinstance(d, (int, float)) and 0.0 < d < 1.0):
            raise InputError(f"EMA decay must be a number between 0 and 1 (exclusive), got {d!r}")
        if self.supervised_steps not in ("every", "last"):
            raise InputError(f"supervised steps must be 'every' or 'last', got {self.supervised_steps!r}")
        k = self.resolved("keep_init")
        if k != "random" and not (isinstance(k, (int, float)) and 0.0 < k < 1.0):
            raise InputError(f"keep_init must be a number in (0, 1) or 'random', got {k!r}")
        if self.supervised_dice is True and self.resolved_supervised_weight() == 0.0:  # asked for, not a preset's default
            raise InputError(
                "--supervised-dice adds to the supervised term, whose weight is 0 here "
                f"(preset {self.preset!r}); give --supervised-weight too"
            )

    def pa3c_options(self) -> dict:
        """The keyword options of :func:`pa3c_loss` this config sets (t_max and gamma come
        from the model config)."""
        return {k: self.resolved(k) for k in PA3C_FIELDS}

    def resolved(self, name: str):
        """The value of option ``name``, the preset's default where it is None."""
        value = getattr(self, name)
        if value is None and name in PRESET_DEFAULTED:
            value = train_defaults(self.preset)[name]
        if name == "supervised_weight":
            return float(value)
        return value

    def resolved_supervised_weight(self) -> float:
        return self.resolved("supervised_weight")


def trained_options(checkpoint) -> dict:
    """The loss options and the training crop ``checkpoint`` was trained with (its header's
    training config): a fine-tune continues with them unless told otherwise (the crop sets
    how much context the heads learned to use). Empty for a checkpoint that does not say
    (e.g. one saved outside a training run)."""
    from napari_pixeldrl.model.checkpoint import read_header

    trained = (read_header(checkpoint).get("info") or {}).get("train") or {}
    if not trained:
        return {}
    read = TrainConfig.from_dict(trained)  # an old header's None keeps the meaning it had then
    return {k: getattr(read, k) for k in (*PA3C_FIELDS, "crop", "reward_conv_lr_scale") if k in trained}


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


class _Slices:
    """images/masks lists from a SliceSet, a (images, masks) pair, or None."""

    def __init__(self, data):
        if data is None:
            self.images, self.masks = [], []
        elif hasattr(data, "images"):
            self.images, self.masks = list(data.images), list(data.masks)
        else:
            self.images, self.masks = list(data[0]), list(data[1])
        if len(self.images) != len(self.masks):
            raise InputError(f"{len(self.images)} images but {len(self.masks)} masks")

    def __len__(self):
        return len(self.images)


# ------------------------------------------------------------------------- trainer


class Trainer:
    """``Trainer(config, train, val, out_dir).fit()``; subclass and override the hooks if needed."""

    def __init__(
        self,
        config: TrainConfig,
        train,
        val,
        out_dir,
        *,
        callbacks: Iterable[Callback] = (),
        init_checkpoint=None,
    ):
        self.config = config
        self.train_data = _Slices(train)
        self.val_data = _Slices(val)
        if len(self.train_data) == 0:
            raise InputError("no training slices")
        config.check()
        self.out_dir = Path(out_dir)
        self.callbacks: list[Callback] = list(callbacks)
        self.init_checkpoint = init_checkpoint
        self.cancel = threading.Event()
        self.rank, self.world_size = 0, 1
        self.history: list[dict] = []
        self.best_dice, self.best_epoch = -1.0, 0
        self._val_seconds = self._val_cpu_seconds = 0.0  # the last validation's, reserved for the one at a stop
        self._cpu_started = time.process_time()
        self._unvalidated_episodes = 0  # trained since the last validation (for the stop below)
        self._stop_val_dice: float | None = None

    # ---------------------------------------------------------------- hooks
    def emit(self, event) -> None:
        if self.rank != 0:
            return
        for cb in self.callbacks:
            cb(event)

    def on_start(self, event: StartEvent) -> None:
        self.emit(event)

    def on_episode(self, event: EpisodeEvent) -> None:
        self.emit(event)

    def on_epoch(self, event: EpochEvent) -> None:
        self.emit(event)

    def on_end(self, event: EndEvent) -> None:
        self.emit(event)

    # ---------------------------------------------------------------- setup
    def _setup_distributed(self) -> None:
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:
            import torch.distributed as dist

            if not dist.is_initialized():
                backend = "nccl" if self.device.type == "cuda" else "gloo"
                dist.init_process_group(backend)
            self.rank, self.world_size = dist.get_rank(), dist.get_world_size()

    def _pick_device(self) -> torch.device:
        device = torch.device(choose_device(self.config.device))
        if device.type == "cuda":
            torch.cuda.set_device(device)
        return device

    def _build(self) -> None:
        c = self.config
        in_ch = int(self.train_data.images[0].shape[0])
        if self.init_checkpoint is not None:
            loaded = load_checkpoint(self.init_checkpoint)
            if loaded.config.in_channels != in_ch:
                raise InputError(
                    f"the checkpoint's model takes {loaded.config.in_channels} channel(s), the data has {in_ch}"
                )
            # The base model's post-processing was chosen for its own data: the new model
            # validates (and picks its best epoch) on raw masks and gets its own choice later.
            self.model_config, self.net = loaded.config.replace(postprocess="none"), loaded.model
        else:
            self.model_config = preset_config(c.preset, in_channels=in_ch, **c.model_overrides)
            self.net = build_model(self.model_config)
            keep = c.resolved("keep_init")
            if keep != "random" and self.model_config.arch == "pixeldrl":
                init_keep_bias(self.net, keep)
        self.net.to(self.device).train()
        self.ema = None
        if c.ema_decay is not None:
            from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

            # use_buffers: the U-Net's batch-norm statistics are averaged with the weights
            # (its integer num_batches_tracked lags; unused with the default momentum).
            self.ema = AveragedModel(self.net, multi_avg_fn=get_ema_multi_avg_fn(c.ema_decay), use_buffers=True)
        mc = self.model_config
        self.t_max = int(mc.t_max if c.t_max is None else c.t_max)
        self.gamma = float(mc.gamma if c.gamma is None else c.gamma)
        if mc.arch == "unet":
            self.objective = SupervisedObjective(self.net)
        else:
            self.objective = PA3CObjective(self.net, t_max=self.t_max, gamma=self.gamma, **c.pa3c_options())
        self.optimizer = torch.optim.Adam(param_groups(self.net, c.lr, c.resolved("reward_conv_lr_scale")), lr=c.lr)
        self.scheduler = torch.optim.lr_scheduler.StepLR(self.optimizer, step_size=c.lr_step_epochs, gamma=c.lr_decay)
        self.amp_dtype, self.scaler = self._mixed_precision()
        self.step_module = self.objective
        if self.world_size > 1:
            from torch.nn.parallel import DistributedDataParallel as DDP

            ids = [self.device.index] if self.device.type == "cuda" else None
            self.step_module = DDP(self.objective, device_ids=ids)

    def _mixed_precision(self):
        """(autocast dtype or None, grad scaler or None): bf16 on CUDA where supported, else
        fp16 with a scaler (fp16 gradients underflow without one); full precision on CPU."""
        if self.device.type != "cuda" or not self.config.amp:
            return None, None
        if torch.cuda.is_bf16_supported():
            return torch.bfloat16, None
        return torch.float16, torch.amp.GradScaler("cuda")

    # ---------------------------------------------------------------- files
    def _checkpoint_info(self, epoch: int, val_dice) -> dict:
        return {"train": self.config.to_dict(), "epoch": epoch, "val_dice": val_dice, "data": self.config.data}

    def _write_config(self) -> None:
        body = {"train": self.config.to_dict(), "model": self.model_config.to_dict(), "parameters": count_parameters(self.net)}
        text = json.dumps(body, indent=2)
        atomic_write(self.out_dir / CONFIG, lambda tmp: Path(tmp).write_text(text))

    def _write_metrics(self) -> None:
        text = "".join(json.dumps(row) + "\n" for row in self.history)
        atomic_write(self.out_dir / METRICS, lambda tmp: Path(tmp).write_text(text))

    def _write_curve(self) -> None:
        try:
            write_curve(self.history, self.out_dir / CURVE)
        except Exception as err:  # a plot must never stop training
            print(f"warning: could not draw the learning curve ({err})", file=sys.stderr)

    def _save_state(self, epoch: int) -> None:
        meta = {
            "epoch": epoch,
            "best_dice": self.best_dice,
            "best_epoch": self.best_epoch,
            "history": self.history,
            "train": self.config.to_dict(),
            "model": self.model_config.to_dict(),
        }
        save_training_state(
            self.out_dir / STATE, model=self.net, optimizer=self.optimizer, scheduler=self.scheduler, scaler=self.scaler,
            meta=meta, averaged=self.ema,
        )

    def _resume(self) -> int:
        path = self.out_dir / STATE
        if not path.exists():
            return 0
        model_state, body = load_training_state(path)
        meta = body["meta"]
        saved = ModelConfig.from_dict(meta["model"])
        if saved != self.model_config:
            raise CheckpointError(f"{path} was written for another model config; cannot resume with this one")
        self.net.load_state_dict(model_state)
        self.optimizer.load_state_dict(body["optimizer"])
        self.scheduler.load_state_dict(body["scheduler"])
        if self.scaler is not None and body.get("scaler"):
            self.scaler.load_state_dict(body["scaler"])
        restore_rng(body["rng"])
        # A run resumed with the average newly on starts it from the current weights (the
        # first update copies them); one resumed with it off drops the saved average.
        if self.ema is not None and body.get("averaged"):
            self.ema.load_state_dict(body["averaged"])
        self.history = list(meta["history"])
        self.best_dice, self.best_epoch = float(meta["best_dice"]), int(meta["best_epoch"])
        # checkpoint_best may be newer than the state if the run died between the two writes.
        best = self.out_dir / BEST
        if best.exists():
            try:
                info = read_header(best).get("info", {})
                if info.get("val_dice") is not None and float(info["val_dice"]) > self.best_dice:
                    self.best_dice, self.best_epoch = float(info["val_dice"]), int(info["epoch"])
            except CheckpointError:
                pass
        return int(meta["epoch"])

    # ---------------------------------------------------------------- validation
    @property
    def validated_net(self) -> torch.nn.Module:
        """The weights that are validated and saved: the moving average when it is on and
        has started (before its first update it is a copy of the weights it was built from,
        which a resume has since replaced)."""
        if self.ema is None or int(self.ema.n_averaged) == 0:
            return self.net
        return self.ema.module

    def validate(self, net: torch.nn.Module | None = None) -> float:
        """Mean DICE over the validation slices (whole slices, argmax episodes) of ``net``
        (default :attr:`validated_net`)."""
        data = self.val_data if len(self.val_data) else self.train_data
        n = len(data) if self.config.val_max_slices is None else min(len(data), self.config.val_max_slices)
        net = self.validated_net if net is None else net
        preds = predict_slices(net, self.model_config, data.images[:n], t_max=self.t_max, device=self.device)
        dice = [overlap_metrics(p.mask != 0, m != 0)["dice"] for p, m in zip(preds, data.masks[:n])]
        return float(np.mean(dice))

    # ---------------------------------------------------------------- the loop
    def _stop_requested(self, started: float) -> str | None:
        reason = None
        if self.cancel.is_set():
            reason = "cancelled"
        elif self.config.time_budget_min is not None and (
                time.monotonic() - started + self._val_seconds >= self.config.time_budget_min * 60):
            reason = "time_budget"
        elif self.config.cpu_budget_min is not None and (
                time.process_time() - self._cpu_started + self._val_cpu_seconds >= self.config.cpu_budget_min * 60):
            reason = "time_budget"
        if self.world_size > 1:
            import torch.distributed as dist

            # On the run's device: NCCL reduces CUDA tensors only.
            code = torch.tensor([{None: 0, "time_budget": 1, "cancelled": 2}[reason]], device=self.device)
            dist.all_reduce(code, op=dist.ReduceOp.MAX)
            reason = {0: None, 1: "time_budget", 2: "cancelled"}[int(code)]
        return reason

    def _barrier(self) -> None:
        if self.world_size > 1:
            import torch.distributed as dist

            dist.barrier()

    def fit(self, resume: bool = False) -> TrainResult:
        """Train; with ``resume`` continue the run in the folder. The folder is locked for
        the whole call (process 0): a second run on it is refused (run_lock.py)."""
        self._lock = None
        try:
            return self._fit(resume)
        finally:
            if self._lock is not None:
                self._lock.release()
                self._lock = None

    def _check_folder(self, resume: bool) -> None:
        """Refuse to mix two runs in one folder, or to resume what cannot be resumed."""
        remove_stale_temporaries(self.out_dir)  # safe: the folder is locked
        held = [n for n in (STATE, BEST, LAST) if (self.out_dir / n).exists()]
        if not resume and held:
            raise InputError(f"{self.out_dir} already holds a run ({held[0]}); use --resume to continue it, or another --out")
        if resume and held and STATE not in held:
            raise InputError(f"{self.out_dir} holds {held[0]} but not {STATE}, so the run cannot be resumed (its optimiser "
                             f"state and logged epochs are gone); fine-tune from {held[0]} into another --out instead")

    def _fit(self, resume: bool) -> TrainResult:
        c = self.config
        started = time.monotonic()
        self._cpu_started = time.process_time()
        if c.threads:
            torch.set_num_threads(int(c.threads))
        self.device = self._pick_device()
        self._setup_distributed()
        if self.rank == 0:  # the process that writes the folder holds it
            self._lock = RunFolderLock(self.out_dir).acquire()
        torch.manual_seed(c.seed)  # same initial weights on every process
        self._build()
        if self.rank == 0:
            self._check_folder(resume)
        start_epoch = self._resume() if resume else 0
        if self.rank == 0:
            self._write_config()
            self.on_start(StartEvent(self.out_dir, start_epoch))
        n_batches = batches_per_epoch(len(self.train_data), c.batch_size, self.world_size)
        settings = CropSettings(crop=c.crop, augment=c.augment, rotate=c.rotate, foreground_p=c.foreground_p)
        bar = None
        if c.progress and self.rank == 0:
            from tqdm import tqdm

            bar = tqdm(total=c.epochs * n_batches, initial=start_epoch * n_batches, unit="ep", dynamic_ncols=True, file=sys.stderr)
            bar.set_description("episodes")
        reason = "done"
        epochs_done = start_epoch  # stays there when no epoch is left to run
        try:
            for epoch in range(start_epoch, c.epochs):
                reason = self._train_epoch(epoch, n_batches, settings, started, bar)
                if reason != "done":
                    break
                epochs_done = epoch + 1
        finally:
            if bar is not None:
                bar.close()
        if self.rank == 0:
            self._validate_at_stop(reason, epochs_done)
        self._barrier()
        # Drop the DDP wrapper now: one that outlives the caller's destroy_process_group()
        # can abort the process at exit ("terminate called without an active exception").
        self.step_module = self.objective
        # Emitted while this run still holds its folder, so what a callback writes there is the run's.
        self.on_end(EndEvent(reason, epochs_done, self.best_dice, self.best_epoch, self.out_dir, self._stop_val_dice))
        return TrainResult(reason, epochs_done, self.best_dice, self.best_epoch, self.out_dir, list(self.history),
                           self._stop_val_dice)

    def _validate_at_stop(self, reason: str, epochs_done: int) -> None:
        """A run stopped before any validation still leaves a usable best checkpoint. At a
        time-budget stop the weights trained since the last validation (a partial epoch,
        epochs skipped by ``val_every``) are validated too: the budget reserved the time."""
        no_best = not (self.out_dir / BEST).exists()
        unvalidated = reason == "time_budget" and self._unvalidated_episodes > 0
        if reason == "done" or not (no_best or unvalidated):
            return
        dice = self._stop_val_dice = self.validate()
        self._unvalidated_episodes = 0
        if no_best or dice > self.best_dice:
            self.best_dice, self.best_epoch = dice, epochs_done
            info = {**self._checkpoint_info(epochs_done, dice), "validated_at_stop": True}
            save_checkpoint(self.out_dir / BEST, self.validated_net, self.model_config, info)

    def _train_epoch(self, epoch: int, n_batches: int, settings: CropSettings, started: float, bar) -> str:
        c = self.config
        t0, t0_cpu = time.monotonic(), time.process_time()
        self.net.train()
        gen = torch.Generator(device=self.device).manual_seed(int(c.seed) * 1_000_003 + epoch * 101 + self.rank)
        sums: dict[str, float] = {}
        count = 0
        batches = epoch_batches(
            self.train_data.images,
            self.train_data.masks,
            batch_size=c.batch_size,
            settings=settings,
            seed=c.seed,
            epoch=epoch,
            rank=self.rank,
            world_size=self.world_size,
        )
        for episode, (x, y) in enumerate(batches, start=1):
            reason = self._stop_requested(started)
            if reason:
                return reason
            x = torch.from_numpy(x).to(self.device)
            y = torch.from_numpy(y).to(self.device)
            self.optimizer.zero_grad(set_to_none=True)
            with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None):
                loss, stats = self.step_module(x, y, gen)
            if not math.isfinite(stats.loss):
                # Before the step: the weights stay those the last finished epoch saved.
                kept = f"; the last finished epoch's weights are in {self.out_dir / LAST}" if (self.out_dir / LAST).exists() else ""
                raise TrainingDiverged(
                    f"training diverged at epoch {epoch + 1}, episode {episode}: the loss is {stats.loss}{kept}. "
                    "Fine-tune from that checkpoint into another --out with a lower --lr, or check the loss weights "
                    "(--resume restores the saved learning rate)")
            if self.scaler is not None:
                self.scaler.scale(loss).backward()
                self.scaler.step(self.optimizer)
                self.scaler.update()
            else:
                loss.backward()
                self.optimizer.step()
            if self.ema is not None:
                self.ema.update_parameters(self.net)
            self._unvalidated_episodes += 1
            for k, v in stats.as_dict().items():
                sums[k] = sums.get(k, 0.0) + v
            count += 1
            lr = self.optimizer.param_groups[0]["lr"]
            self.on_episode(EpisodeEvent(epoch + 1, episode, n_batches, stats, lr, time.monotonic() - started))
            if bar is not None:
                bar.update(1)
                bar.set_postfix(epoch=epoch + 1, loss=f"{stats.loss:.3f}", R=f"{stats.mean_reward:.3f}", keep=f"{stats.keep_fraction:.2f}", best=f"{max(self.best_dice, 0):.3f}")
        lr = self.optimizer.param_groups[0]["lr"]
        self.scheduler.step()
        train = {k: v / max(count, 1) for k, v in sums.items()}
        val_dice, val_raw, is_best = None, None, False
        number = epoch + 1
        if self.rank == 0:
            if number % max(1, c.val_every) == 0 or number == c.epochs:
                v0, v0_cpu = time.monotonic(), time.process_time()
                val_dice = self.validate()
                if self.ema is not None:
                    val_raw = self.validate(self.net)
                self._val_seconds = time.monotonic() - v0
                self._val_cpu_seconds = time.process_time() - v0_cpu
                self._unvalidated_episodes = 0
                if val_dice > self.best_dice:
                    is_best = True
                    self.best_dice, self.best_epoch = val_dice, number
                    save_checkpoint(self.out_dir / BEST, self.validated_net, self.model_config, self._checkpoint_info(number, val_dice))
            seconds = time.monotonic() - t0
            row = {"epoch": number, **{f"train_{k}": v for k, v in train.items()}, "val_dice": val_dice, "best_dice": self.best_dice, "lr": lr, "seconds": seconds,
                   "cpu_seconds": time.process_time() - t0_cpu}
            if self.ema is not None:
                row["val_dice_raw"] = val_raw
                row["ema_decay"] = c.ema_decay
            if self.model_config.arch != "unet":
                # A run resumed with other loss options (a staged run) shows which epochs had which.
                row["objective"] = {k: c.resolved(k) for k in (*LOSS_OPTIONS, "supervised_weight")}
            self.history.append(row)
            save_checkpoint(self.out_dir / LAST, self.validated_net, self.model_config, self._checkpoint_info(number, val_dice))
            self._save_state(number)
            self._write_metrics()
            self._write_curve()
            self.on_epoch(
                EpochEvent(number, c.epochs, train, val_dice, self.best_dice, self.best_epoch, is_best, lr, seconds, time.monotonic() - started)
            )
        self._barrier()
        return "done"


def init_keep_bias(net: torch.nn.Module, keep: float) -> None:
    """Set the policy output's bias so that pi(keep) starts near ``keep`` everywhere."""
    if not 0.0 < keep < 1.0:
        raise InputError(f"keep_init must be in (0, 1), got {keep}")
    head = net.policy
    with torch.no_grad():
        for layer in (getattr(head, "to_full", None), head.out):  # the layers that sum to the output
            if layer is not None:
                layer.weight.mul_(0.1)
                layer.bias.zero_()
        head.out.bias[KEEP] = math.log(keep / (1.0 - keep))


def reward_filter_lr_scale(scale: float | str | None, weights: int) -> float:
    """The reward-map filter's learning-rate factor: ``scale``, or ("1/k^2", None) one over
    its number of weights."""
    return 1.0 / weights if scale in (None, "1/k^2") else float(scale)


def param_groups(net: torch.nn.Module, lr: float, reward_conv_scale: float | str | None) -> list[dict]:
    """Adam parameter groups: the reward-map filter on its own learning rate, lr times
    ``reward_conv_scale`` ("1/k^2" or None: one over its number of weights)."""
    rc = getattr(net, "reward_conv", None)
    if rc is None:
        return [{"params": list(net.parameters())}]
    reward_conv_scale = reward_filter_lr_scale(reward_conv_scale, rc.weight.numel())
    ids = {id(p) for p in rc.parameters()}
    rest = [p for p in net.parameters() if id(p) not in ids]
    return [{"params": rest}, {"params": list(rc.parameters()), "lr": lr * reward_conv_scale}]


# ------------------------------------------------------------------------- curve


def write_curve(history: Sequence[dict], path) -> None:
    """Learning curves: training loss and mean reward, validation DICE, per epoch (Agg backend)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
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
    # A run resumed with other options: loss and reward change scale there, or the average starts.
    changes = [b["epoch"] - 0.5 for a, b in zip(history, history[1:])
               if (a.get("objective"), a.get("ema_decay")) != (b.get("objective"), b.get("ema_decay"))]
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
