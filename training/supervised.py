"""The U-Net baseline's loss: soft Dice + binary cross-entropy on the logit map.

Wrapped as a module (:class:`SupervisedObjective`) with the same ``forward(image, truth)``
-> (loss, stats) shape as the PA3C objective, so one trainer runs both and comparisons
share data, splits, augmentation and budget.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .pa3c import LossStats, soft_dice_loss

SMOOTH = 1.0


def dice_bce_loss(logits: torch.Tensor, truth: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(loss, dice_loss, bce) for logits (B, 1, H, W) and truth (B, H, W) 0/1."""
    logits = logits[:, 0].float()
    truth = truth.float()
    bce = F.binary_cross_entropy_with_logits(logits, truth)
    dice_loss = soft_dice_loss(torch.sigmoid(logits), truth, SMOOTH)
    return dice_loss + bce, dice_loss, bce


class SupervisedObjective(nn.Module):
    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, image: torch.Tensor, truth: torch.Tensor, generator=None):
        logits = self.net(image)
        loss, dice_loss, bce = dice_bce_loss(logits, truth)
        keep = float((logits.detach() > 0).float().mean())
        stats = LossStats(
            loss=float(loss.detach()),
            policy_loss=0.0,
            value_loss=0.0,
            supervised_loss=float(loss.detach()),
            entropy=0.0,
            mean_reward=float("nan"),
            keep_fraction=keep,
        )
        return loss, stats
