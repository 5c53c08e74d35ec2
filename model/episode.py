"""The pixel-wise episode of METHOD.md §2.

Every pixel is an agent whose state is the mask value m(t). m(0) = 1 everywhere (or a
rough start mask, for a user's box or stroke: the agents can only remove); at
step t the policy picks a(t) per pixel (1 keep, 0 set to zero) and m(t) = m(t-1) * a(t),
so zeroing is absorbing and the segmentation after step t is f(t) = m(t). With the
ground truth G the reward is r(t) = (m(t-1) - G)^2 - (m(t) - G)^2, which is +1 for
zeroing background, -1 for zeroing object and 0 for keeping.

:func:`run_episode` is a generator that yields one :class:`Step` per step so that a
trainer can collect log-probabilities and values, and a GUI can draw each step.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch
import torch.nn.functional as F

from .network import KEEP
from .threshold import ARGMAX, keep_margin


@dataclass
class Step:
    """What happened at step t (1-based). Tensors are (B, H, W) unless noted."""

    t: int
    action: torch.Tensor  # a(t): 1 keep, 0 set to zero (uint8)
    mask: torch.Tensor  # m(t) = m(t-1) * a(t) (float, 0/1)
    value: torch.Tensor | None  # V(s(t-1)), (B, H, W); None when the episode skips values
    keep_prob: torch.Tensor  # pi(keep | s(t-1))
    log_prob: torch.Tensor | None  # log pi(a(t) | s(t-1)); sampled episodes only
    entropy: torch.Tensor | None  # policy entropy per pixel; sampled episodes only
    changed: torch.Tensor  # (B,) bool: m(t) differs from m(t-1)
    logits: torch.Tensor | None = None  # policy logits (B, 2, H, W); sampled episodes only

    @property
    def fixed_point(self) -> bool:
        """True when no slice changed: with argmax every later step repeats this one."""
        return not bool(self.changed.any())


def reward(prev_mask: torch.Tensor, mask: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """r(t) = (m(t-1) - G)^2 - (m(t) - G)^2 (paper Eq. 12), per pixel."""
    return (prev_mask - truth) ** 2 - (mask - truth) ** 2


def run_episode(
    net,
    image: torch.Tensor,
    t_max: int,
    *,
    sample: bool = False,
    early_stop: bool | None = None,
    generator: torch.Generator | None = None,
    with_value: bool = True,
    start_mask: torch.Tensor | None = None,
    keep_threshold: float = ARGMAX,
) -> Iterator[Step]:
    """Yield the steps t = 1..t_max of one episode on a batch ``image`` (B, C, H, W).

    ``sample=True`` draws actions from the policy and keeps the graph for training;
    ``sample=False`` takes the argmax. ``early_stop`` (default: on for argmax) stops
    after the first step at which no pixel of any slice changed, which is exact for
    argmax because the state, and so every later step, repeats. ``with_value=False``
    skips the value head (argmax inference does not need it). ``start_mask`` (B, 1, H, W)
    0/1 is m(0), a rough mask to refine (a box, a stroke); default all ones. An argmax
    episode keeps a pixel when pi(keep) > ``keep_threshold`` (0.5: the argmax; model/threshold.py). ``net`` is
    called as ``net.encode(image, start=m(0))`` once, then ``net.step`` once per step.
    """
    if early_stop is None:
        early_stop = not sample
    b, _, h, w = image.shape
    if start_mask is None:
        mask = torch.ones(b, 1, h, w, dtype=image.dtype, device=image.device)
    else:
        mask = (start_mask.reshape(b, 1, h, w) > 0).to(image.dtype)
    context = net.encode(image, start=mask)
    for t in range(1, t_max + 1):
        logits, value = net.step(context, mask, with_value=with_value or sample, first=t == 1)
        if sample:
            log_p = F.log_softmax(logits, dim=1)
            probs = log_p.exp()
            keep_prob = probs[:, KEEP]
            u = torch.rand(keep_prob.shape, generator=generator, device=keep_prob.device)
            action = (u < keep_prob.detach()).to(torch.uint8)
            log_prob = torch.where(action.bool(), log_p[:, KEEP], log_p[:, 1 - KEEP])
            entropy = -(probs * log_p).sum(dim=1)
        else:
            keep_prob = torch.softmax(logits, dim=1)[:, KEEP]
            action = (logits[:, KEEP] - logits[:, 1 - KEEP] > keep_margin(keep_threshold)).to(torch.uint8)
            log_prob = entropy = None
        new_mask = mask * action.unsqueeze(1).to(mask.dtype)
        changed = (new_mask != mask).flatten(1).any(dim=1)
        step = Step(
            t=t,
            action=action,
            mask=new_mask[:, 0],
            value=value[:, 0] if value is not None else None,
            keep_prob=keep_prob,
            log_prob=log_prob,
            entropy=entropy,
            changed=changed,
            logits=logits if sample else None,
        )
        yield step
        mask = new_mask.detach()
        if early_stop and step.fixed_point:
            return


# What each pixel's agent did at a step (paper Fig. 4), as label values. A pixel zeroed at an
# earlier step does nothing any more (0): zeroing is absorbing. A live pixel was kept at
# every earlier step, so its action changes exactly when it is zeroed.
KEPT, ZEROED = 2, 3


def action_map(step_masks: np.ndarray, start=None) -> np.ndarray:
    """(T, ...) uint8 from the masks m(1)..m(T): KEPT, ZEROED (at this step) or 0 (zeroed
    before). ``start`` is m(0), the episode's start mask (default all ones)."""
    masks = np.asarray(step_masks).astype(bool)
    first = np.ones_like(masks[:1]) if start is None else np.asarray(start, bool)[None]
    before = np.concatenate([first, masks[:-1]])  # m(t-1)
    out = np.zeros(masks.shape, np.uint8)
    out[before & masks] = KEPT
    out[before & ~masks] = ZEROED
    return out
