import math

import numpy as np
import pytest
import torch

from napari_pixeldrl.model.network import build_model
from napari_pixeldrl.training.pa3c import discounted_returns, pa3c_loss
from napari_pixeldrl.training.supervised import dice_bce_loss

from _synthetic import discs


def delta_conv(k=3):
    conv = torch.nn.Conv2d(1, 1, k, padding=k // 2, bias=False)
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[0, 0, k // 2, k // 2] = 1.0
    return conv


def tiny_net_and_discs(tiny_config):
    """A tiny lite network (seeded) and a batch of two disc slices: (net, images, truth)."""
    torch.manual_seed(0)
    net = build_model(tiny_config("lite"))
    images, masks = discs(2)
    return net, torch.from_numpy(np.stack(images)), torch.from_numpy(np.stack(masks)).float()


def test_returns_with_delta_filter_are_discounted_sums():
    g = 0.95
    r = [torch.full((1, 2, 2), v) for v in (1.0, -1.0, 0.5)]
    R = discounted_returns(r, delta_conv(), g)
    assert torch.allclose(R[2], torch.full((1, 2, 2), 0.5))
    assert torch.allclose(R[1], torch.full((1, 2, 2), -1.0 + g * 0.5))
    assert torch.allclose(R[0], torch.full((1, 2, 2), 1.0 + g * (-1.0 + g * 0.5)))


def test_returns_spread_through_the_reward_filter():
    # R(T) = r(T) (an impulse); R(T-1) = r(T-1) + w * (gamma R(T)) with w a 3x3 box of 1/9.
    g = 0.5
    conv = torch.nn.Conv2d(1, 1, 3, padding=1, bias=False)
    with torch.no_grad():
        conv.weight.fill_(1.0 / 9.0)
    impulse = torch.zeros(1, 5, 5)
    impulse[0, 2, 2] = 9.0
    R = discounted_returns([torch.zeros(1, 5, 5), impulse], conv, g)
    expected = torch.zeros(1, 5, 5)
    expected[0, 1:4, 1:4] = g * 9.0 / 9.0
    assert torch.allclose(R[0], expected, atol=1e-6)  # the FFT leaves ~1e-8 where the exact value is 0


@pytest.mark.parametrize("value_weight", [0.0, 1.0])
def test_loss_gradients_reach_policy_value_and_reward_filter(value_weight, tiny_config):
    net, x, y = tiny_net_and_discs(tiny_config)
    loss, stats = pa3c_loss(net, x, y, t_max=3, gamma=0.95, value_weight=value_weight, generator=torch.Generator().manual_seed(0))
    loss.backward()
    assert net.policy.out.weight.grad.abs().sum() > 0
    assert net.extractor.blocks[0][0].weight.grad.abs().sum() > 0
    # The value's output weights: its own head's, or the third row of a shared head's.
    value_grad = net.value.out.weight.grad if net.value is not None else net.policy.out.weight.grad[2:]
    rc_grad = net.reward_conv.weight.grad
    if value_weight:
        assert value_grad.abs().sum() > 0 and rc_grad.abs().sum() > 0
    else:  # the filter and the value head learn through the value term only
        assert value_grad is None or value_grad.abs().sum() == 0
        assert rc_grad is None or rc_grad.abs().sum() == 0
    assert math.isfinite(stats.loss) and 0 <= stats.keep_fraction <= 1


def test_supervised_term_is_added_with_its_weight(tiny_config):
    net, x, y = tiny_net_and_discs(tiny_config)
    kw = dict(t_max=2, gamma=0.95)
    l0, s0 = pa3c_loss(net, x, y, supervised_weight=0.0, generator=torch.Generator().manual_seed(1), **kw)
    l1, s1 = pa3c_loss(net, x, y, supervised_weight=2.0, generator=torch.Generator().manual_seed(1), **kw)
    assert s0.supervised_loss == 0 and s1.supervised_loss > 0
    assert float((l1 - l0).detach()) == pytest.approx(2.0 * s1.supervised_loss, rel=1e-4)


def test_dice_bce_is_small_for_a_confident_correct_prediction():
    truth = torch.zeros(1, 8, 8)
    truth[0, 2:6, 2:6] = 1
    good = (truth * 20 - 10)[:, None]
    bad = -good
    assert dice_bce_loss(good, truth)[0] < 0.01 < 1.0 < dice_bce_loss(bad, truth)[0]


# ---------------------------------------------------------------- collapse checks


class PixelBandit(torch.nn.Module):
    """One free keep-logit and one free value per pixel: the PA3C loss with nothing shared."""

    def __init__(self, h, w, keep=0.5):
        super().__init__()
        self.logit = torch.nn.Parameter(torch.full((h, w), math.log(keep / (1 - keep))))
        self.v = torch.nn.Parameter(torch.zeros(h, w))
        self.reward_conv = delta_conv(1)

    def encode(self, image, start=None):
        return {"b": image.shape[0]}

    def step(self, context, mask, with_value=True, first=False):
        b = context["b"]
        logits = torch.stack([torch.zeros_like(self.logit), self.logit])[None].expand(b, -1, -1, -1)
        return logits, self.v[None, None].expand(b, 1, -1, -1)


@pytest.mark.parametrize("t_max", [1, 3])
@pytest.mark.parametrize("reward_balance, balance_power", [(False, 1.0), (True, 1.0), (True, 0.5)])
@pytest.mark.parametrize("live_pixels_only", [False, True])
def test_bandit_gradient_keeps_object_and_zeroes_background(t_max, reward_balance, balance_power, live_pixels_only):
    # Pixel 0 is object, pixels 1..3 background; a batch of 512 sampled episodes averages
    # the policy gradient. Descending it must raise pi(keep) on the object, lower it on
    # the background, from pi(keep) = 0.5 and from the keep_init of 0.9.
    truth = torch.tensor([[[1.0, 0.0, 0.0, 0.0]]]).expand(512, 1, 4)
    image = truth[:, None].clone()
    for keep in (0.5, 0.9):
        net = PixelBandit(1, 4, keep)
        loss, _ = pa3c_loss(
            net, image, truth, t_max=t_max, gamma=0.95, value_weight=0.0, entropy_beta=0.0,
            reward_balance=reward_balance, balance_power=balance_power, live_pixels_only=live_pixels_only,
            generator=torch.Generator().manual_seed(0),
        )
        loss.backward()
        g = net.logit.grad[0]
        assert g[0] < 0, g  # descent raises the object's keep logit
        assert (g[1:] > 0).all(), g  # and lowers the background's


@pytest.mark.parametrize("supervised_dice", [False, True])
def test_supervised_term_pulls_a_saturated_all_zero_policy_back(supervised_dice):
    # pi(keep) = 1e-9 everywhere: every sampled action zeroes, the policy and entropy terms
    # have no gradient left, and only the supervised term can raise the object's keep logit.
    # (A BCE on a clamped probability gave it none: a 100-shot LGG run stayed all-zero.)
    truth = torch.tensor([[[1.0, 0.0, 0.0, 0.0]]]).expand(8, 1, 4)
    net = PixelBandit(1, 4, keep=1e-9)
    loss, _ = pa3c_loss(
        net, truth[:, None].clone(), truth, t_max=2, gamma=0.95, supervised_weight=5.0, reward_balance=True,
        balance_power=0.5, live_pixels_only=True, supervised_dice=supervised_dice, generator=torch.Generator().manual_seed(0),
    )
    loss.backward()
    g = net.logit.grad[0]
    assert g[0] < -0.1, g  # a real pull on the object's keep logit, not a vanishing one


def test_balanced_rewards_on_a_hand_case():
    from napari_pixeldrl.training.pa3c import balance_weights
    from napari_pixeldrl.model.episode import reward

    truth = torch.tensor([[[1.0, 0.0, 0.0, 0.0]]])  # 1 object pixel of 4
    w = balance_weights(truth)
    assert torch.allclose(w, torch.tensor([[[2.0, 2 / 3, 2 / 3, 2 / 3]]]))
    assert float(w.mean()) == pytest.approx(1.0)
    ones = torch.ones_like(truth)
    total = lambda final: float((reward(ones, final, truth) * w).sum())  # one-step episode
    assert total(torch.zeros_like(truth)) == pytest.approx(0.0, abs=1e-6)  # all-zero earns nothing
    assert total(ones) == pytest.approx(0.0, abs=1e-6)  # all-keep earns nothing
    assert total(truth) == pytest.approx(2.0)  # the perfect mask earns the most
    assert total(torch.tensor([[[0.0, 0.0, 1.0, 1.0]]])) < 0  # worse than doing nothing
    # An image with one class only has nothing to balance: weight 1 everywhere, any power.
    for power in (1.0, 0.5):
        assert (balance_weights(torch.zeros(1, 4, 4), power) == 1).all()
        assert (balance_weights(torch.ones(1, 4, 4), power) == 1).all()


@pytest.mark.parametrize("power", [0.0, 0.5, 1.0])
def test_balance_power_keeps_the_mean_weight_and_sets_the_ratio(power):
    from napari_pixeldrl.training.pa3c import balance_weights

    truth = torch.zeros(2, 10, 10)
    truth[0, :2, :1] = 1  # f = 0.02
    truth[1, :5, :4] = 1  # f = 0.2
    w = balance_weights(truth, power)
    for i, f in enumerate((0.02, 0.2)):
        assert float(w[i].mean()) == pytest.approx(1.0, rel=1e-5)
        fg, bg = float(w[i][truth[i] > 0][0]), float(w[i][truth[i] == 0][0])
        assert fg / bg == pytest.approx(((1 - f) / f) ** power, rel=1e-4)


def test_soft_dice_loss_matches_monai():
    monai_losses = pytest.importorskip("monai.losses")
    from napari_pixeldrl.training.pa3c import soft_dice_loss

    g = torch.Generator().manual_seed(0)
    prob = torch.rand(3, 12, 12, generator=g)
    truth = (torch.rand(3, 12, 12, generator=g) > 0.7).float()
    truth[2] = 0  # an empty truth: the smoothing term keeps it finite
    reference = monai_losses.DiceLoss(smooth_nr=1.0, smooth_dr=1.0)(prob[:, None], truth[:, None])
    assert float(soft_dice_loss(prob, truth)) == pytest.approx(float(reference), rel=1e-5)


def test_supervised_dice_adds_to_the_supervised_term(tiny_config):
    net, x, y = tiny_net_and_discs(tiny_config)
    kw = dict(t_max=2, gamma=0.95, supervised_weight=2.0, reward_balance=True, balance_power=0.5)
    l0, s0 = pa3c_loss(net, x, y, supervised_dice=False, generator=torch.Generator().manual_seed(1), **kw)
    l1, s1 = pa3c_loss(net, x, y, supervised_dice=True, generator=torch.Generator().manual_seed(1), **kw)
    # Two steps, each adds a soft Dice loss in (0, 1]; the loss grows by the weight times it.
    assert 0 < s1.supervised_loss - s0.supervised_loss <= 2.0
    assert float((l1 - l0).detach()) == pytest.approx(2.0 * (s1.supervised_loss - s0.supervised_loss), rel=1e-4)
