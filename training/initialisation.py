"""How a PixelDRL-MG run starts: the policy's keep bias and the optimizer's learning-rate
groups (the reward-map filter on its own rate, METHOD.md §2). Used by the trainer and by
the training-cost benchmark, which must build the same optimizer."""

from __future__ import annotations

import math

import torch

from napari_pixeldrl.core.errors import InputError
from napari_pixeldrl.model.network import KEEP


def init_keep_bias(net: torch.nn.Module, keep: float) -> None:
    """Set the policy output's bias so that pi(keep) starts near ``keep`` everywhere."""
    if not 0.0 < keep < 1.0:
        raise InputError(f"keep_init must be in (0, 1), got {keep}")
    head = net.policy
    decode = getattr(head, "decode", None)
    # The layers that sum to the output: the decoder's last, or the coarse and full-resolution ones.
    outputs = (decode[-1],) if decode is not None else (getattr(head, "to_full", None), head.out)
    with torch.no_grad():
        for layer in outputs:
            if layer is not None:
                layer.weight.mul_(0.1)
                layer.bias.zero_()
        outputs[-1].bias[KEEP] = math.log(keep / (1.0 - keep))


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
