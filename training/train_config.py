"""Every training option in one JSON-serialisable TrainConfig, and each preset's training
defaults (what a field left at None means)."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

from napari_pixeldrl.core.errors import InputError
from napari_pixeldrl.model.config import dataclass_from_json

from .pa3c import ENTROPY_BETA

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
LOSS_OPTIONS = ("reward_balance", "balance_power", "live_pixels_only", "live_mean", "supervised_dice",
                "coarse_to_fine", "coarse_first", "first_step_recall", "supervised_steps", "start_boxes")
# Every TrainConfig field the PA3C loss reads: what pa3c_options() passes on and what a
# fine-tune takes over from its starting checkpoint.
PA3C_FIELDS = ("value_weight", "entropy_beta", "supervised_weight", *LOSS_OPTIONS)

# The augmentation beyond flips and rotations, off unless asked for; a fine-tune keeps its checkpoint's.
AUGMENTATION = ("scale_jitter", "gamma_jitter")

# Options added after runs were first saved: the value a saved config without them ran with.
_ADDED = {"reward_balance": False, "live_pixels_only": False, "balance_power": 1.0, "supervised_dice": False,
          "ema_decay": None, "coarse_to_fine": 0, "cpu_budget_min": None, "supervised_steps": "every",
          "coarse_first": 0, "start_boxes": 0.0, "first_step_recall": 1.0, "live_mean": "live",
          "scale_jitter": 0.0, "gamma_jitter": 0.0}


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
    # With live_pixels_only, what those terms are averaged over: "live", the pixels alive before
    # the step; "all", every pixel (a dead one counting 0), so that a later step's few live
    # pixels weigh as much each as a pixel of step 1 (pa3c_loss).
    live_mean: str = "live"
    # Coarse to fine (not in the paper): step t's target is the truth dilated by
    # R (T - t) / (T - 1) pixels, R this radius, in its reward and its supervised term, so
    # the first steps remove far background and the last ones settle the boundary. 0: off.
    coarse_to_fine: int = 0
    # Step 1's target only is the truth dilated by this many pixels (0: off): the first
    # step keeps a margin round the object, which the later steps, seeing m(1), trim.
    coarse_first: int = 0
    # Step 1's object pixels weigh this many times more in its reward and supervised term
    # (1: off): step 1 keeps what it is unsure of, the later steps decide it (pa3c_loss).
    first_step_recall: float = 1.0
    # The fraction of episodes that start from the truth's box grown by 0..20 pixels instead
    # of all ones, so that the agents learn to refine a user's box (0: off).
    start_boxes: float = 0.0
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
    # Zoom and intensity-gamma augmentation (training.loader; 0: off, the default).
    scale_jitter: float = 0.0
    gamma_jitter: float = 0.0
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
    # Validate from the truth's bounding box grown by this many pixels (a simulated user's box)
    # instead of all ones, so that a model trained to refine boxes keeps its best checkpoint
    # from boxes. None: all ones, the paper's start.
    val_start_grow: int | None = None
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
        number("val_start_grow", 0, whole=True, optional=True, label="validation box margin (pixels)")
        number("foreground_p", 0.0, 1.0)
        number("scale_jitter", 0.0, 0.5, label="--scale-jitter")
        number("gamma_jitter", 0.0, 2.0, label="--gamma-jitter")
        if not self.augment and (self.scale_jitter or self.gamma_jitter):
            raise InputError("--scale-jitter and --gamma-jitter are augmentation, which --no-augment turns off; give one or the other")
        number("balance_power", 0.0, 1.0, optional=True)
        number("val_every", 1, whole=True, label="validation interval (epochs)")
        number("coarse_to_fine", 0, 64, whole=True, label="coarse-to-fine radius (pixels)")
        number("coarse_first", 0, 64, whole=True, label="first step's margin (pixels)")
        number("start_boxes", 0.0, 1.0, label="fraction of episodes started from a box")
        number("first_step_recall", 1.0, 100.0, label="first step's object weight")
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
        if self.live_mean not in ("live", "all"):
            raise InputError(f"live mean must be 'live' or 'all', got {self.live_mean!r}")
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


def trained_options(header: dict) -> dict:
    """The loss options, the training crop and the zoom and gamma augmentation a checkpoint
    was trained with (its header's training config, ``header`` as
    :func:`~napari_pixeldrl.model.checkpoint.header_of` gives it): a fine-tune continues
    with them unless told otherwise (the crop sets how much context the heads learned to
    use; the augmentation is part of the recipe the model was chosen with). Empty for a
    checkpoint that does not say (e.g. one saved outside a training run)."""
    trained = (header.get("info") or {}).get("train") or {}
    if not trained:
        return {}
    read = TrainConfig.from_dict(trained)  # an old header's None keeps the meaning it had then
    # An option the header does not hold, added since, was off when it trained (_ADDED).
    kept = (*PA3C_FIELDS, "crop", "reward_conv_lr_scale", *AUGMENTATION)
    return {k: getattr(read, k) for k in kept if k in trained or k in _ADDED}


def finetune_config(base: TrainConfig, header: dict) -> TrainConfig:
    """The options of a fine-tune from the model whose header is ``header``: ``base`` with
    the model's preset and network (no overrides: the checkpoint holds its architecture)
    and the loss options, crop and augmentation it was trained with. The one rule ``pixeldrl finetune``
    and the Train widget share; options the user gives afterwards win."""
    cfg = dataclasses.replace(base, model_overrides={})
    cfg.preset = (header.get("model") or {}).get("preset") or cfg.preset
    for name, value in trained_options(header).items():
        setattr(cfg, name, value)
    if (header.get("model") or {}).get("box_zoom"):
        cfg.start_boxes = 0.0  # a box model's every episode starts from its box (a widened model's old option)
        cfg.scale_jitter = 0.0  # its crops are the box resized to one size, whatever the zoom
    if not cfg.augment:  # ``base`` turns augmentation off: the inherited kinds go with it
        augmentation_off(cfg)
    return cfg


def augmentation_off(cfg: TrainConfig, given: set[str] | frozenset[str] = frozenset()) -> None:
    """Turn ``cfg``'s augmentation off, its zoom and gamma jitter with it, except those the
    user gave (``given``: which :meth:`TrainConfig.check` then refuses as contradictory)."""
    cfg.augment = False
    for name in AUGMENTATION:
        if name not in given:
            setattr(cfg, name, 0.0)
