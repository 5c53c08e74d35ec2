"""The PA3C loss of one batch: pixel-wise advantage actor-critic (METHOD.md §2).

One sampled episode of T = t_max steps is run on the batch. Per pixel and step,

    r(t)  = (m(t-1) - G)^2 - (m(t) - G)^2                  (paper Eq. 12)
    R(T+1) = 0,   R(t) = r(t) + w * (gamma * R(t+1))        (Eq. 8, PixelRL's reward map)
    A(t)  = R(t) - V(s(t-1))

with w the network's ``reward_conv`` (one 33x33 filter, delta at the start). The loss is

    policy     -log pi(a(t)) * A(t).detach() - beta * H(pi)     (beta = 0.01)
    value      c_v * (V - R)^2                                   (w learns through this term only)
    supervised lambda * BCE(pi(keep), G)                         (optional; 0 in ``paper``)

summed over t, averaged over pixels and the batch. This is the synchronous batched
update PixelRL itself runs (Furuta et al., official Chainer code).

Two gap-filling choices (METHOD.md §2: adopted unless measurement says otherwise), both
on by default in TrainConfig and switchable (``--[no-]reward-balance``,
``--[no-]live-pixels-only``):

* ``reward_balance``: r is weighed per image by 0.5 / (fraction of the pixel's class).
  The plain reward is accuracy-like: with objects on ~5 % of a slice the all-zero policy
  earns +1 on 95 % of the pixels and -1 on 5 %, close to the best return, and the
  background's gradient on the shared weights drives every pixel towards zeroing; once
  pi(keep) is small, keeping an object pixel is worth only ~(1 - gamma) more than
  zeroing it (zeroing is absorbing) and the softmax gradient vanishes too, so the run
  never comes back. Balanced, all-zero and all-keep both earn 0 and only a real mask
  earns more. Measured (benchmarks/pa3c_collapse.py, tiny lite network, 64x64 discs on
  3-9 % of the pixels, supervised weight 0, 30 epochs, seeds 0 and 1): without it every
  run fell to all-zero (val DICE 0) by epoch ~6, with or without live-pixels-only or a
  value baseline; 5 of 6 stayed there, one (plain, seed 1) escaped at epoch ~21. With it
  no run fell to all-zero and the best val DICE reached 0.73-0.88 (benchmarks/results/
  pa3c_collapse.md). The price: object pixels weigh ~10x, so a little background is kept
  (0.02-0.07 of it).
* ``live_pixels_only``: the terms of step t count only pixels alive before it
  (m(t-1) = 1), averaged over their number. A zeroed pixel is absorbed: its action has
  no effect and its return is 0, so its policy term is pure noise and its entropy term
  pulls shared weights for nothing. Alone it does not stop the collapse. With the
  balanced reward and no supervised term its effect was mixed (best val DICE 0.729/0.805
  against 0.767/0.797 without it, seeds 0/1; same table): weak evidence, two seeds; on
  by default because the terms it drops carry no signal.

A 1-pixel bandit check (tests/test_pa3c.py) confirms the signs: with or without the
options, descending the loss raises pi(keep) on object pixels and lowers it on
background pixels.

:class:`PA3CObjective` wraps a network so that one ``forward`` computes the whole loss;
that is what DistributedDataParallel wraps, so gradients are averaged across processes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from napari_pixeldrl.model.episode import reward, run_episode
from napari_pixeldrl.model.network import KEEP, ZERO
from napari_pixeldrl.model.reward_map import fft_size, kernel_spectrum, reward_map_conv

from .prompts import box_starts

ENTROPY_BETA = 0.01


@dataclass
class LossStats:
    """Scalars of one batch, for logs and the event interface (plain floats)."""

    loss: float
    policy_loss: float
    value_loss: float
    supervised_loss: float
    entropy: float
    mean_reward: float  # mean per-pixel reward summed over the episode
    keep_fraction: float  # fraction of pixels still object at the end of the episode

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def discounted_returns(rewards: list[torch.Tensor], reward_conv: nn.Module, gamma: float) -> list[torch.Tensor]:
    """R(t) for t = 1..T from r(t) (each (B, H, W)), walking back from R(T+1) = 0.

    ``R = w * (gamma * R) + r`` with w the weight of ``reward_conv``, applied by FFT
    (model/reward_map.py: the same cross-correlation as the module, at a fraction of
    its CPU cost); the graph through w is kept, so the value loss can train the filter.
    """
    returns: list[torch.Tensor] = [None] * len(rewards)  # type: ignore[list-item]
    big_r = torch.zeros_like(rewards[-1]).unsqueeze(1)
    weight = reward_conv.weight
    spectrum = kernel_spectrum(weight, fft_size(*big_r.shape[-2:], weight.shape[-1]))
    for t in reversed(range(len(rewards))):
        big_r = reward_map_conv(gamma * big_r, weight, spectrum) + rewards[t].unsqueeze(1)
        returns[t] = big_r[:, 0]
    return returns


def balance_weights(truth: torch.Tensor, power: float = 1.0) -> torch.Tensor:
    """Per-pixel reward weights (B, H, W): k / (fraction of the pixel's class)^power per image.

    k makes the mean weight over an image 1. With ``power`` 1 (k = 0.5) the all-zero and
    the all-keep policies both earn 0 per image on average and the perfect mask earns
    +0.5: balanced accuracy. Its optimum keeps a pixel once P(object) exceeds the
    object's fraction of the slice, so small objects come out over-segmented; ``power``
    0.5 weighs an object pixel sqrt((1 - f) / f) times a background one instead of
    (1 - f) / f (x7 rather than x49 at f = 2 %). ``power`` 0: unweighted. An image with
    one class only (an empty crop) has nothing to balance: all its weights are 1, so it
    counts as much as any other image whatever the power. (Until 2026-11-22 an empty
    crop weighed 0.5 at power 1 and about 0.99 at power 0.5: its absent class was
    clamped to one pixel. The bundled models' first epochs trained so.)
    """
    n = truth[0].numel()
    frac = truth.flatten(1).mean(dim=1).view(-1, 1, 1)
    fg = frac.clamp(1.0 / n, 1.0 - 1.0 / n)
    bg = 1.0 - fg
    k = 1.0 / (fg ** (1.0 - power) + bg ** (1.0 - power))
    weights = torch.where(truth > 0.5, k / fg**power, k / bg**power)
    one_class = (frac == 0) | (frac == 1)
    return torch.where(one_class, torch.ones_like(weights), weights)


def soft_dice_loss(prob: torch.Tensor, truth: torch.Tensor, smooth: float = 1.0) -> torch.Tensor:
    """1 - soft Dice of a probability map (B, H, W) against truth (B, H, W), mean over images."""
    inter = (prob * truth).flatten(1).sum(1)
    total = prob.flatten(1).sum(1) + truth.flatten(1).sum(1)
    return 1 - ((2 * inter + smooth) / (total + smooth)).mean()


def step_radius(t: int, t_max: int, radius: int, first: int = 0) -> int:
    """The dilation of step t's target: coarse to fine, ``radius`` at t = 1 down to 0 at
    t_max; or ``first`` at t = 1 and 0 after."""
    if first > 0:
        return first if t == 1 else 0
    if radius <= 0 or t_max <= 1:
        return 0
    return int(round(radius * (t_max - t) / (t_max - 1)))


def dilate(truth: torch.Tensor, radius: int) -> torch.Tensor:
    """``truth`` (B, H, W) 0/1 dilated by a (2 radius + 1)-pixel square."""
    if radius <= 0:
        return truth
    return F.max_pool2d(truth.unsqueeze(1), 2 * radius + 1, stride=1, padding=radius)[:, 0]


def _mean(x: torch.Tensor, live: torch.Tensor | None, over: str = "live") -> torch.Tensor:
    """Mean over pixels and batch, or over the live pixels only (``live`` 0/1, same shape):
    their sum divided by their number (``over="live"``) or by all pixels' (``"all"``)."""
    if live is None:
        return x.mean()
    if over == "all":
        return (x * live).sum() / live.numel()
    return (x * live).sum() / live.sum().clamp(min=1.0)


def pa3c_loss(
    net,
    image: torch.Tensor,
    truth: torch.Tensor,
    *,
    t_max: int,
    gamma: float,
    value_weight: float = 1.0,
    entropy_beta: float = ENTROPY_BETA,
    supervised_weight: float = 0.0,
    reward_balance: bool = False,
    balance_power: float = 1.0,
    live_pixels_only: bool = False,
    live_mean: str = "live",
    supervised_dice: bool = False,
    coarse_to_fine: int = 0,
    coarse_first: int = 0,
    first_step_recall: float = 1.0,
    supervised_steps: str = "every",
    start_boxes: float = 0.0,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, LossStats]:
    """Loss of one batch. ``image`` (B, C, H, W) in [0, 1], ``truth`` (B, H, W) 0/1 float.

    ``reward_balance`` weighs each pixel's reward, and its supervised term, by
    :func:`balance_weights` (an unbalanced BCE pulls pi(keep) down on every pixel of an
    imbalanced slice just as the unbalanced reward does).
    ``live_pixels_only`` restricts the policy, entropy and value terms of step t to the
    pixels still alive before it (m(t-1) = 1), averaged over their number: a zeroed pixel
    is absorbed, its action changes nothing and its return is 0 by construction.
    ``live_mean`` "all" divides those sums by all pixels instead: after step 1 the live
    pixels are a few % of a slice, and averaged over their number each weighs tens of times
    a pixel of step 1, against a supervised term averaged over all pixels
    (benchmarks/term_gradients.py measures the pull on the shared layers). Step 1 from all
    ones, so any t_max 1 run, is the same either way.
    ``supervised_dice`` adds a soft Dice term on pi(keep) to the supervised BCE, as the
    U-Net's loss has: it scores the overlap, so neither the all-zero nor an
    over-segmenting keep map scores well on a small object, whatever the weights.
    ``coarse_to_fine`` R > 0 replaces G at step t by G dilated by :func:`step_radius`
    pixels, in the reward, the balance weights and the supervised term alike;
    ``coarse_first`` R > 0 does so for step 1 only, by R pixels.
    ``first_step_recall`` K > 1 weighs step 1's object pixels K times more, in its reward
    and its supervised BCE: step 1 keeps the pixels it is unsure of (those with P(object)
    above about 1 / (1 + K)) and the later steps, trained on the plain weights, decide
    them. Unlike a margin it leaves the target the truth, so the features every step
    shares learn one task; only step 1's decision threshold moves.
    ``supervised_steps`` "last" puts the supervised term on the last step only: the earlier
    steps learn from the reward alone, which pays for zeroing background early but costs
    more for zeroing object than waiting does, so they can leave uncertain pixels to later
    steps instead of each being a finished segmenter ("every", the default).
    ``start_boxes`` P > 0 starts each image's episode, with probability P, from its truth's
    bounding box grown by 0..prompts.BOX_GROW_MAX pixels instead of all ones:
    the agents learn to refine a user's box.
    """
    if supervised_steps not in ("every", "last"):
        raise ValueError(f"supervised_steps must be 'every' or 'last', got {supervised_steps!r}")
    if live_mean not in ("live", "all"):
        raise ValueError(f"live_mean must be 'live' or 'all', got {live_mean!r}")
    truth = truth.float()
    rewards, values, log_probs, entropies, keep_probs, keep_logits, lives, targets, step_weights = ([] for _ in range(9))
    start = box_starts(truth, start_boxes, generator=generator) if start_boxes else None
    prev = torch.ones_like(truth) if start is None else start
    by_radius: dict[int, tuple] = {}  # (target, weights) per dilation: without a schedule, one for all steps
    episode = run_episode(net, image, t_max, sample=True, early_stop=False, generator=generator,
                          start_mask=None if start is None else start.unsqueeze(1))
    for step in episode:
        radius = step_radius(step.t, t_max, coarse_to_fine, coarse_first)
        if radius not in by_radius:
            target = dilate(truth, radius)
            by_radius[radius] = (target, balance_weights(target, balance_power) if reward_balance else None)
        target, weights = by_radius[radius]
        if step.t == 1 and first_step_recall != 1.0:
            base = weights if weights is not None else torch.ones_like(target)
            weights = torch.where(target > 0.5, first_step_recall * base, base)
        targets.append(target)
        step_weights.append(weights)
        mask = step.mask.float()
        r = reward(prev, mask, target).detach()
        rewards.append(r * weights if weights is not None else r)
        values.append(step.value.float())
        log_probs.append(step.log_prob.float())
        entropies.append(step.entropy.float())
        keep_probs.append(step.keep_prob.float())
        # pi(keep) = sigmoid(logit_keep - logit_zero): the BCE on this difference keeps its
        # gradient when the policy saturates. A BCE on a clamped probability has none there,
        # so a policy that had zeroed everything could never be pulled back (a 100-shot run
        # collapsed so for good).
        keep_logits.append((step.logits[:, KEEP] - step.logits[:, ZERO]).float())
        lives.append(prev.detach() if live_pixels_only else None)
        prev = mask
    returns = discounted_returns(rewards, _unwrap(net).reward_conv, gamma)

    policy = value = entropy_sum = supervised = image.new_zeros((), dtype=torch.float32)
    for t in range(len(rewards)):
        advantage = returns[t] - values[t]
        live = lives[t]
        policy = policy - _mean(log_probs[t] * advantage.detach(), live, live_mean)
        entropy_sum = entropy_sum + _mean(entropies[t], live, live_mean)
        value = value + _mean((values[t] - returns[t]) ** 2, live, live_mean)
        if supervised_weight and (supervised_steps == "every" or t == len(rewards) - 1):
            supervised = supervised + F.binary_cross_entropy_with_logits(keep_logits[t], targets[t], weight=step_weights[t])
            if supervised_dice:
                supervised = supervised + soft_dice_loss(keep_probs[t], targets[t])
    loss = policy - entropy_beta * entropy_sum + value_weight * value
    if supervised_weight:
        loss = loss + supervised_weight * supervised
    stats = LossStats(
        loss=float(loss.detach()),
        policy_loss=float(policy.detach()),
        value_loss=float(value.detach()),
        supervised_loss=float(supervised.detach()),
        entropy=float(entropy_sum.detach()) / len(rewards),
        mean_reward=float(torch.stack(rewards).sum(0).mean()),
        keep_fraction=float(prev.mean()),
    )
    return loss, stats


def _unwrap(net):
    return getattr(net, "module", net)


class PA3CObjective(nn.Module):
    """``forward(image, truth)`` -> (loss, stats): the module DDP wraps.

    ``options`` are :func:`pa3c_loss`'s keyword options (t_max, gamma, value_weight, ...),
    passed on unchanged, so a new loss option needs no change here.
    """

    def __init__(self, net: nn.Module, **options):
        super().__init__()
        self.net = net
        self.options = options

    def forward(self, image: torch.Tensor, truth: torch.Tensor, generator: torch.Generator | None = None):
        return pa3c_loss(self.net, image, truth, generator=generator, **self.options)
