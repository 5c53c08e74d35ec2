"""The PixelDRL-MG network: feature extractor, SAM, per-pixel policy and value heads,
and the reward-map convolution.

The network is used in two calls so that an episode can reuse work across steps:
``encode(image)`` once per image, then ``step(context, mask)`` once per step t, which
returns the policy logits (B, 2, H, W; action 0 = set to zero, 1 = keep) and the value
map (B, 1, H, W). With ``features_from="state"`` (paper) ``encode`` only stores the
image and every step re-runs the extractor on X(t) = I * m(t); with
``features_from="image"`` (lite) the extractor runs once and the heads see m(t).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .attention import SelfAttention
from .config import ModelConfig
from .extractor import VGG16Half, conv3x3, norm_layer
from .unet import UNet

ZERO, KEEP = 0, 1  # the two actions, as channels of the policy output


def dilated_stack(in_ch: int, widths, dilations, norm: str = "none") -> nn.Sequential:
    """The body of a head: one dilated 3x3 convolution (+ normalisation) + ReLU per width."""
    layers = []
    for width, dil in zip(widths, dilations):
        layers += [conv3x3(in_ch, width, dil), *([norm_layer(norm, width)] if norm != "none" else []), nn.ReLU(inplace=True)]
        in_ch = width
    return nn.Sequential(*layers)


class FullResHead(nn.Module):
    """Paper head: dilated 3x3 convolutions at the input's resolution, then a 1x1 output."""

    def __init__(self, in_ch: int, widths, dilations, out_ch: int):
        super().__init__()
        self.body = dilated_stack(in_ch, widths, dilations)
        self.out = nn.Conv2d(widths[-1], out_ch, 1)

    def forward(self, x: torch.Tensor, fine: torch.Tensor | None = None, mask: torch.Tensor | None = None):
        return self.out(self.body(x))


class LowResHead(nn.Module):
    """Lite head: dilated 3x3 convolutions at 1/scale resolution, brought to full
    resolution by a sub-pixel (pixel-shuffle) 1x1 layer, plus a full-resolution 3x3
    layer on the conv1_2 projection and the mask that keeps the output per pixel and
    the boundaries sharp. (Bilinear upsampling of the head features cost 2.5x more in
    training on a CPU: its backward pass is slow.)

    Two of its convolutions see image features and the mask side by side; both are
    linear, so their image part is computed once per episode (:meth:`prepare`) and each
    step adds only the mask's one-channel part. Same function and weights as one
    convolution over the concatenation, at a fraction of the cost over ten steps."""

    def __init__(self, in_ch: int, widths, dilations, out_ch: int, fine_ch: int, scale: int, mask_in: bool,
                 state_in: int = 0, decoder: int = 0, norm: str = "none"):
        super().__init__()
        self.body = dilated_stack(in_ch, widths, dilations, norm)
        # The first layer's modules, conv (, norm), ReLU: forward applies them by hand.
        self.first_end = next(i for i, m in enumerate(self.body) if isinstance(m, nn.ReLU)) + 1
        self.scale = scale
        self.mask_in = mask_in  # the body's last input channel is the pooled mask
        self.state_in = state_in  # channels before the mask's that change every step (state prototypes)
        full = decoder or out_ch  # channels of the full-resolution sum
        self.to_full = nn.Conv2d(widths[-1], full * scale * scale, 1)
        self.out = nn.Conv2d(fine_ch + 1, full, 3, padding=1)  # full resolution; last channel: the mask
        # ModelConfig.fine_decoder: ReLU, 3x3, ReLU, 1x1 on the sum; none: the sum is the output.
        self.decode = None
        if decoder:
            self.decode = nn.Sequential(nn.ReLU(inplace=True), conv3x3(decoder, decoder, 1), nn.ReLU(inplace=True),
                                        nn.Conv2d(decoder, out_ch, 1))

    def prepare(self, low: torch.Tensor, fine: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The image's part of the first body layer and of the full-resolution layer."""
        first = self.body[0]
        n = low.shape[1]
        body_in = F.conv2d(low, first.weight[:, :n], first.bias, padding=first.padding, dilation=first.dilation)
        out_in = F.conv2d(fine, self.out.weight[:, :-1], self.out.bias, padding=1)
        return body_in, out_in

    def forward(self, prepared: tuple[torch.Tensor, torch.Tensor], low_mask: torch.Tensor | None, mask: torch.Tensor,
                state: torch.Tensor | None = None):
        body_in, out_in = prepared
        first = self.body[0]
        end = first.weight.shape[1] - (1 if self.mask_in else 0)
        if self.state_in:
            w = first.weight[:, end - self.state_in:end]
            body_in = body_in + F.conv2d(state, w, None, padding=first.padding, dilation=first.dilation)
        if self.mask_in:
            body_in = body_in + F.conv2d(low_mask, first.weight[:, -1:], None, padding=first.padding, dilation=first.dilation)
        # The first layer's conv is applied above; then its norm (if any) and a ReLU that is not
        # in place, since without mask or state inputs body_in is prepare()'s tensor, reused every step.
        first_norm = self.body[1:self.first_end - 1]  # empty without head_norm
        h = self.body[self.first_end:](F.relu(first_norm(body_in)))
        coarse = F.pixel_shuffle(self.to_full(h), self.scale)
        full = coarse + out_in + F.conv2d(mask, self.out.weight[:, -1:], None, padding=1)
        return full if self.decode is None else self.decode(full)


STATE_CHANNELS = 2  # prototype similarities: inside m(t), outside m(t)


def prototype_similarity(context: dict, pooled_mask: torch.Tensor) -> torch.Tensor:
    """(B, 2, h, w): each pixel's cosine similarity to the mean context feature inside
    the mask and to the mean outside it (ModelConfig.state_prototypes). A region with no
    pixels (outside an all-ones m(0)) has no mean: its similarity is 0 everywhere."""
    features = context["context"]
    if "context_unit" not in context:  # the per-pixel unit vectors, once per episode
        context["context_unit"] = F.normalize(features, dim=1)
    unit = context["context_unit"]
    maps = []
    for weight in (pooled_mask, 1.0 - pooled_mask):
        area = weight.sum(dim=(2, 3))
        mean = (features * weight).sum(dim=(2, 3)) / area.clamp(min=1e-6)
        maps.append((unit * F.normalize(mean, dim=1)[:, :, None, None]).sum(dim=1, keepdim=True))
    return torch.cat(maps, dim=1)


class PixelDRLNet(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        if config.arch != "pixeldrl":
            raise ValueError(f"PixelDRLNet cannot build arch {config.arch!r}")
        self.config = config
        c = config
        dc = c.dilation
        extractor_in = c.in_channels + (1 if c.mask_channel and c.features_from == "state" else 0) + (1 if c.prompt_channel else 0)
        self.extractor = VGG16Half(
            extractor_in, c.widths, c.extractor_dilations if dc else (1,) * len(c.widths), c.extractor_norm
        )
        self.sam = SelfAttention(c.widths[3], c.sam_axis) if c.sam else nn.Identity()
        concat = c.widths[0] + c.widths[1] + c.widths[2] + c.widths[3]  # 480 for VGG16-half
        head_dil = c.head_dilations if dc else (1,) * len(c.head_widths)
        # With ``shared_head`` one body gives both outputs: ``self.policy`` then has three
        # output channels (the policy's two, then the value) and ``self.value`` is None.
        policy_out = 3 if c.shared_head else 2
        if c.head_scale == 1:
            self.context = nn.Identity()
            self.fine = nn.Identity()
            self.policy = FullResHead(concat, c.head_widths, head_dil, policy_out)
            self.value = None if c.shared_head else FullResHead(concat, c.head_widths, head_dil, 1)
        else:
            # Context at 1/scale: SAM output, conv3_3 and conv2_2 (conv1_2 goes to the fine path).
            self.context = nn.Sequential(nn.Conv2d(concat - c.widths[0], c.context_channels, 1), nn.ReLU(inplace=True))
            self.fine = nn.Sequential(nn.Conv2d(c.widths[0], c.fine_channels, 1), nn.ReLU(inplace=True))
            state_in = STATE_CHANNELS if c.state_prototypes else 0
            head_in = c.context_channels + state_in + (1 if c.mask_channel else 0)
            args = (c.head_widths, head_dil)
            extra = (c.fine_channels, c.head_scale, c.mask_channel, state_in, c.fine_decoder, c.head_norm)
            self.policy = LowResHead(head_in, *args, policy_out, *extra)
            self.value = None if c.shared_head else LowResHead(head_in, *args, 1, *extra)
            if c.first_step_head:
                self.policy_first = LowResHead(head_in, *args, policy_out, *extra)
        # Reward-map convolution w of R(t) = r(t) + gamma * w * R(t+1): a centred delta at
        # the start, so training begins from the plain per-pixel return.
        k = c.reward_kernel
        self.reward_conv = nn.Conv2d(1, 1, k, padding=k // 2, bias=False)
        with torch.no_grad():
            self.reward_conv.weight.zero_()
            self.reward_conv.weight[0, 0, k // 2, k // 2] = 1.0

    # -- the two calls of an episode -------------------------------------------------
    def encode(self, image: torch.Tensor, start: torch.Tensor | None = None) -> dict:
        """Work that depends on the image (and m(0)) only. ``image``: (B, C, H, W), H and W
        divisible by 8; ``start``: m(0) (B, 1, H, W), which a ``prompt_channel`` network's
        extractor sees (default all ones) and any other network ignores."""
        if self.config.features_from == "state":
            return {"image": image}
        if self.config.prompt_channel:
            start = torch.ones_like(image[:, :1]) if start is None else start.to(image.dtype)
            image = torch.cat([image, start], dim=1)
        return self._features(image)

    def step(self, context: dict, mask: torch.Tensor, with_value: bool = True, first: bool = False):
        """Policy logits (B, 2, H, W) and value (B, 1, H, W) for the state (image, m(t)).

        ``first``: this is step 1 of the episode (the step a ``first_step_head`` serves).

        Argmax inference needs only the policy: ``with_value=False`` skips the value head
        (half of the per-step cost in ``lite``) and returns None in its place."""
        c = self.config
        if c.features_from == "state":
            image = context["image"]
            x = image * mask
            if c.mask_channel:
                x = torch.cat([x, mask], dim=1)
            context = self._features(x)
        pooled = F.avg_pool2d(mask, c.head_scale) if c.head_scale > 1 and (c.mask_channel or c.state_prototypes) else None
        low_mask = pooled if c.mask_channel else None
        state = prototype_similarity(context, pooled) if c.state_prototypes else None

        def run(head: str) -> torch.Tensor:
            if c.head_scale == 1:
                return getattr(self, head)(context["concat"])
            return getattr(self, head)(self._prepared(context, head), low_mask, mask, state)

        policy = run("policy_first" if first and c.first_step_head else "policy")
        if c.shared_head:
            return policy[:, :2], (policy[:, 2:] if with_value else None)
        return policy, (run("value") if with_value else None)

    def _prepared(self, context: dict, head: str):
        """The image's part of a lite head, computed at its first use in an episode."""
        key = f"{head}_prepared"
        if key not in context:
            context[key] = getattr(self, head).prepare(context["context"], context["fine"])
        return context[key]

    def _features(self, x: torch.Tensor) -> dict:
        c12, c22, c33, c43 = self.extractor(x)
        s = self.sam(c43)
        if self.config.head_scale == 1:
            size = c12.shape[-2:]
            up = [F.interpolate(f, size=size, mode="bilinear", align_corners=False) for f in (s, c22, c33)]
            return {"concat": torch.cat([up[0], c12, up[1], up[2]], dim=1)}
        size = c33.shape[-2:]  # 1/4 resolution
        ctx = torch.cat(
            [
                F.interpolate(s, size=size, mode="bilinear", align_corners=False),
                c33,
                F.avg_pool2d(c22, 2),
            ],
            dim=1,
        )
        return {"context": self.context(ctx), "fine": self.fine(c12)}

    def forward(self, image: torch.Tensor, mask: torch.Tensor):
        return self.step(self.encode(image), mask)


def build_model(config: ModelConfig) -> nn.Module:
    """The network a config describes (PixelDRL-MG or the U-Net baseline)."""
    if config.arch == "unet":
        if config.unet_family == "monai-basic":
            import contextlib
            import io

            from monai.networks.nets import BasicUNet

            with contextlib.redirect_stdout(io.StringIO()):  # some MONAI versions print the features
                return BasicUNet(spatial_dims=2, in_channels=config.in_channels, out_channels=1)
        if config.unet_family != "classic":
            raise ValueError(f"unknown U-Net family {config.unet_family!r}")
        return UNet(config.in_channels, config.unet_base)
    return PixelDRLNet(config)


def with_state_prototypes(net: PixelDRLNet) -> PixelDRLNet:
    """A copy of a lite network with the state-prototype inputs added at zero weight: it
    computes what ``net`` computes until training moves those weights, so a fine-tune can
    teach a network that already segments to use the state."""
    c = net.config
    if c.state_prototypes or c.head_scale == 1:
        raise ValueError("the network already has state prototypes, or has no lite heads")
    wide = PixelDRLNet(c.replace(state_prototypes=True))
    old = net.state_dict()
    state = {}
    for name, tensor in wide.state_dict().items():
        if tensor.shape != old[name].shape:  # a head's first layer: [context | prototypes | mask]
            n = c.context_channels
            w = torch.zeros_like(tensor)
            w[:, :n], w[:, n + STATE_CHANNELS:] = old[name][:, :n], old[name][:, n:]
            state[name] = w
        else:
            state[name] = old[name]
    wide.load_state_dict(state)
    return wide


def with_first_step_head(net: PixelDRLNet) -> PixelDRLNet:
    """A copy of a lite network whose step 1 runs a head of its own, starting as a copy of
    the shared head: it computes what ``net`` computes until training moves the two apart."""
    c = net.config
    if c.first_step_head or c.head_scale == 1 or not c.shared_head:
        raise ValueError("the network already has a first-step head, or has no lite shared head")
    split = PixelDRLNet(c.replace(first_step_head=True).validate())
    state = dict(net.state_dict())
    state.update({f"policy_first.{k}": v for k, v in net.policy.state_dict().items()})
    split.load_state_dict(state)
    return split


def with_prompt_channel(net: PixelDRLNet) -> PixelDRLNet:
    """A copy of a lite network whose extractor also sees m(0), at zero weight: it computes
    what ``net`` computes, from any start, until training moves those weights, so a
    fine-tune with episodes from boxes (``--start-boxes``) can teach a network that already
    segments to use a user's box."""
    c = net.config
    if c.prompt_channel or c.features_from != "image":
        raise ValueError("the network already has a prompt channel, or re-runs its extractor on every step's state")
    wide = PixelDRLNet(c.replace(prompt_channel=True).validate())
    state = dict(net.state_dict())
    name = "extractor.blocks.0.0.weight"  # conv1_1, the only layer that sees the input
    state[name] = torch.cat([state[name], torch.zeros_like(state[name][:, :1])], dim=1)
    wide.load_state_dict(state)
    return wide


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
