"""Architecture settings and the named presets (``paper``, ``lite``, ``unet``).

One frozen dataclass holds everything needed to rebuild a network; it is what a
checkpoint stores as JSON, so a model file never needs code to be unpickled.
"""

from __future__ import annotations

import dataclasses
import numbers
from dataclasses import dataclass

from napari_pixeldrl.core.errors import InputError

from .threshold import ARGMAX, check_keep_threshold

# The choices of the text-valued options (the CLI offers the same).
NORMS = ("none", "instance")  # extractor_norm, head_norm
SAM_AXES = ("spatial", "channel")  # sam_axis (model/attention.py)

# Per-image normalisation every preset uses (see model/preprocess.py); stored in checkpoints
# so that a later change of the default cannot silently change a trained model's input.
NORMALISATION = "per-channel percentile 0.5/99.5 clip, min-max to [0, 1], per slice"


WINDOW_MULTIPLE = 16  # a window must suit both the extractor (8) and the U-Nets' four poolings (16)


def check_window(window, what: str = "window") -> int:
    """0 (whole slices) or a window side: a multiple of 16 from 16 to 4096."""
    ok = (not isinstance(window, bool) and isinstance(window, numbers.Integral)
          and (window == 0 or (WINDOW_MULTIPLE <= window <= 4096 and window % WINDOW_MULTIPLE == 0)))
    if not ok:
        raise InputError(f"{what} must be 0 (whole slices) or a multiple of {WINDOW_MULTIPLE} from "
                         f"{WINDOW_MULTIPLE} to 4096 (the training crop, e.g. 128), got {window!r}")
    return int(window)


T_MAX_RANGE = (1, 100)  # steps per episode that a config, a run or a segmentation may ask for


def check_t_max(t_max, what: str = "t_max") -> int:
    """The episode length as an int, or one clear InputError naming ``what`` was given."""
    low, high = T_MAX_RANGE
    if isinstance(t_max, bool) or not isinstance(t_max, numbers.Integral) or not low <= t_max <= high:
        raise InputError(f"{what} must be a whole number of steps from {low} to {high}, got {t_max!r}")
    return int(t_max)


@dataclass(frozen=True)
class ModelConfig:
    """How to build one network. Field names follow the paper's terms."""

    preset: str = "lite"
    arch: str = "pixeldrl"  # "pixeldrl" or "unet" (any supervised one-forward network)
    in_channels: int = 1
    # VGG16-half feature extractor: conv1_1..conv4_3, one width per block.
    widths: tuple[int, ...] = (32, 64, 128, 256)
    # Dilation of the 3x3 convolutions of each VGG block when ``dilation`` is on.
    extractor_dilations: tuple[int, ...] = (1, 1, 2, 2)
    # Normalisation after each extractor convolution: "none" (VGG16, the paper) or "instance".
    extractor_norm: str = "none"
    sam: bool = True  # self-attention module on conv4_3 (paper Eq. 1); Table 3 switch
    # The SAM's softmax axis (model/attention.py): "spatial" (per channel, over the image:
    # every output depends on the whole image) or "channel" (per pixel: local).
    sam_axis: str = "spatial"
    dilation: bool = True  # dilated convolutions (DC); Table 3 switch
    # Policy and value heads: one 3x3 convolution per width, dilated as listed.
    head_widths: tuple[int, ...] = (256, 256, 256, 128)
    head_dilations: tuple[int, ...] = (1, 2, 3, 4)
    # 1: heads run at the input's resolution on the 480-channel concat (paper).
    # 4: heads run at 1/4 resolution on a projected context; a sub-pixel layer brings
    #    them to full resolution, where a 3x3 layer on the conv1_2 features and the
    #    mask is added, so the output stays per pixel (lite).
    head_scale: int = 1
    # One head body for policy and value, with three outputs (the policy's two and the
    # value), instead of two bodies: half the per-step cost of the heads.
    shared_head: bool = False
    # Lite heads only: two more input channels per step that see the state, each pixel's
    # cosine similarity to the mean context feature inside m(t) and outside it. A cheap
    # stand-in for the paper's X(t) = I * m(t): once a step has found the object, the
    # next one can compare every pixel with what the object and the background look
    # like in this image.
    state_prototypes: bool = False
    # Lite shared heads only: step 1 runs a head of its own, the later steps the shared
    # one. A finite episode's best policy may depend on t; here step 1 can learn to keep
    # what it is unsure of while the later head learns to decide it, without the two
    # decisions sharing one head's weights (not in the paper: its policy is one network).
    first_step_head: bool = False
    # The extractor also sees m(0), the episode's start mask, as one more input channel
    # (all ones without a prompt): a user's box or stroke then tells the features where
    # the object is, not only the agents which pixels are already zero. m(0) is fixed for
    # the episode, so the extractor still runs once per image (``features_from="image"``).
    prompt_channel: bool = False
    context_channels: int = 64  # lite: 1x1 projection of the multi-scale concat
    fine_channels: int = 16  # lite: 1x1 projection of conv1_2 for the full-res layer
    # Lite heads: 0 ends them in one linear 3x3 layer at full resolution. N > 0 makes that
    # layer N channels wide and adds a ReLU, a 3x3 layer of N and a 1x1 output: a small
    # decoder, so that a boundary at full resolution is more than a linear mix of the
    # conv1_2 projection and 4x4 blocks of the coarse output (small objects, the heart).
    fine_decoder: int = 0
    # Lite heads: normalisation after each body convolution ("none" or "instance", as
    # MONAI's BasicUNet has in its decoder), so that the heads see features on one scale
    # whatever the image's extent and contrast.
    head_norm: str = "none"
    # "state": the extractor runs on X(t) = I * m(t) (and m(t)) at every step (paper).
    # "image": it runs once on I; the heads see m(t) (same information, 1 extractor pass).
    features_from: str = "state"
    mask_channel: bool = True  # feed m(t) as an extra input channel
    reward_kernel: int = 33  # reward-map convolution w (PixelRL): one k x k filter
    t_max: int = 10
    gamma: float = 0.95
    normalisation: str = NORMALISATION
    # Applied to the final mask only ("none" | "largest-component"); chosen on validation
    # after training (model/postprocess.py), "none" while training.
    postprocess: str = "none"
    # A pixel is kept when pi(keep) > this (a U-Net's sigmoid, likewise); 0.5 is the argmax
    # every model trains with. Chosen on validation after training (model/threshold.py).
    keep_threshold: float = ARGMAX
    # Inference on slices larger than this side: 0 runs each slice whole; N runs it as
    # half-overlapping N x N windows blended (model/window.py), N the size the network
    # trained on. Chosen on validation after training, as ``postprocess`` is.
    window: int = 0
    # 0: episodes on the whole slice. S: the model segments inside a user's box: the start
    # mask's bounding box is resized to S x S, the episode runs there and its masks are
    # resized back (model/box_zoom.py); it needs a start mask. Set when training, as the
    # crops it trained on were cut so.
    box_zoom: int = 0
    # U-Net baselines only. "classic": the 31 M U-Net of Ronneberger et al. (model/unet.py);
    # "monai-basic": MONAI's BasicUNet (1.98 M), the standard peer of the comparisons.
    unet_family: str = "classic"
    unet_base: int = 64

    def replace(self, **changes) -> "ModelConfig":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        # Fields left at their first values are left out, so that versions before them can still read the file.
        if d["postprocess"] == "none":
            del d["postprocess"]
        if d["keep_threshold"] == ARGMAX:
            del d["keep_threshold"]
        if d["unet_family"] == "classic":
            del d["unet_family"]
        if not d["shared_head"]:
            del d["shared_head"]
        if d["extractor_norm"] == "none":
            del d["extractor_norm"]
        if not d["state_prototypes"]:
            del d["state_prototypes"]
        if not d["fine_decoder"]:
            del d["fine_decoder"]
        if d["sam_axis"] == "spatial":
            del d["sam_axis"]
        if d["head_norm"] == "none":
            del d["head_norm"]
        if not d["window"]:
            del d["window"]
        if not d["first_step_head"]:
            del d["first_step_head"]
        if not d["prompt_channel"]:
            del d["prompt_channel"]
        if not d["box_zoom"]:
            del d["box_zoom"]
        return d

    @classmethod
    def from_dict(cls, data: dict) -> "ModelConfig":
        if not isinstance(data, dict):
            raise InputError(f"model config must be a JSON object, got {type(data).__name__}")
        return dataclass_from_json(cls, data, "model config").validate()

    def validate(self) -> "ModelConfig":
        """Refuse a config whose types or sizes no network of this package has, before
        anything is built from it (a checkpoint's JSON is input like any other)."""
        from .postprocess import check_postprocess

        def whole(name, low, high, value=None):
            v = getattr(self, name) if value is None else value
            if isinstance(v, bool) or not isinstance(v, int) or not low <= v <= high:
                raise InputError(f"model config: {name} must be a whole number from {low} to {high}, got {v!r}")

        def widths(name, count, low, high):
            v = getattr(self, name)
            if not isinstance(v, tuple) or not (len(v) == count if isinstance(count, int) else count[0] <= len(v) <= count[1]):
                raise InputError(f"model config: {name} must be a list of {count} whole numbers, got {v!r}")
            for x in v:
                whole(name, low, high, x)

        def choice(name, options):
            if getattr(self, name) not in options:
                raise InputError(f"model config: {name} must be one of {list(options)}, got {getattr(self, name)!r}")

        choice("arch", ("pixeldrl", "unet"))
        choice("unet_family", ("classic", "monai-basic"))
        choice("features_from", ("state", "image"))
        choice("extractor_norm", NORMS)
        choice("head_scale", (1, 4))
        choice("sam_axis", SAM_AXES)
        choice("head_norm", NORMS)
        if self.head_norm != "none" and self.head_scale == 1:
            raise InputError("model config: head_norm needs the lite heads (head_scale 4)")
        for name in ("sam", "dilation", "mask_channel", "shared_head", "state_prototypes", "first_step_head",
                     "prompt_channel"):
            choice(name, (True, False))
        for name in ("preset", "normalisation"):
            if not isinstance(getattr(self, name), str):
                raise InputError(f"model config: {name} must be text, got {getattr(self, name)!r}")
        if self.state_prototypes and (self.head_scale == 1 or self.arch != "pixeldrl"):
            raise InputError("model config: state_prototypes needs the lite heads (head_scale 4)")
        if self.first_step_head and (self.head_scale == 1 or not self.shared_head or self.arch != "pixeldrl"):
            raise InputError("model config: first_step_head needs the lite shared head (head_scale 4, shared_head)")
        if self.prompt_channel and (self.features_from != "image" or self.arch != "pixeldrl"):
            raise InputError("model config: prompt_channel needs the extractor run once on the image "
                             "(features_from 'image', as in the lite preset)")
        whole("in_channels", 1, 16)
        widths("widths", 4, 1, 1024)
        widths("extractor_dilations", 4, 1, 16)
        widths("head_widths", (1, 8), 1, 1024)
        widths("head_dilations", len(self.head_widths), 1, 16)  # head_widths is a tuple by now
        whole("context_channels", 1, 1024)
        whole("fine_channels", 1, 1024)
        whole("fine_decoder", 0, 1024)
        if self.fine_decoder and self.head_scale == 1:
            raise InputError("model config: fine_decoder needs the lite heads (head_scale 4)")
        whole("reward_kernel", 1, 65)
        if self.reward_kernel % 2 == 0:
            raise InputError(f"model config: reward_kernel must be odd, got {self.reward_kernel}")
        whole("t_max", *T_MAX_RANGE)
        whole("unet_base", 1, 256)
        g = self.gamma
        if isinstance(g, bool) or not isinstance(g, (int, float)) or not 0.0 <= g <= 1.0:
            raise InputError(f"model config: gamma must be a number from 0 to 1, got {g!r}")
        check_postprocess(self.postprocess)
        check_keep_threshold(self.keep_threshold, "model config: keep_threshold")
        check_window(self.window, "model config: window")
        z = self.box_zoom
        if isinstance(z, bool) or not isinstance(z, int) or not (z == 0 or (16 <= z <= 1024 and z % 16 == 0)):
            raise InputError(f"model config: box_zoom must be 0 (whole slices) or a multiple of 16 from 16 to 1024, got {z!r}")
        return self


def dataclass_from_json(cls, data: dict, what: str):
    """Rebuild a config dataclass from its JSON dict; JSON lists become tuples again."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - names
    if unknown:
        raise InputError(f"unknown {what} keys: {sorted(unknown)}")
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})


PRESETS: dict[str, ModelConfig] = {
    # As close to the paper as METHOD.md allows: 7.14 M parameters, heads at full
    # resolution, the extractor re-run on every step's state.
    "paper": ModelConfig(preset="paper"),
    # Built for a 2-core CPU: the extractor runs once per image, the heads run at 1/4
    # resolution and share one body, so a whole 10-step inference costs less than one
    # U-Net forward. Instance normalisation in the extractor: from scratch it learned
    # several times faster than without (README, "the lite recipe").
    "lite": ModelConfig(
        preset="lite",
        head_widths=(64, 64, 64),
        head_dilations=(1, 2, 4),
        head_scale=4,
        features_from="image",
        shared_head=True,
        extractor_norm="instance",
    ),
    # The classic 31 M U-Net, trained supervised as the baseline.
    "unet": ModelConfig(preset="unet", arch="unet", t_max=1),
    # MONAI's BasicUNet with its default features (32, 32, 64, 128, 256, 32): the standard
    # peer users trust, trained supervised with BCE + soft Dice.
    "basicunet": ModelConfig(preset="basicunet", arch="unet", unet_family="monai-basic", t_max=1),
}


def preset_config(name: str, **overrides) -> ModelConfig:
    """The preset called ``name``, with any field overridden (e.g. in_channels=3)."""
    if name not in PRESETS:
        raise InputError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
    if not overrides:
        return PRESETS[name]
    # JSON gives lists where the config holds tuples (a TrainConfig's model_overrides).
    overrides = {k: tuple(v) if isinstance(v, list) else v for k, v in overrides.items()}
    return PRESETS[name].replace(**overrides).validate()
