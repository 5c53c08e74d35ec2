"""The training-speed rewrites against the plain formulas they replace: the FFT reward-map
convolution against ``F.conv2d`` (the module's forward), and the lite heads' per-episode
image part against one convolution over the concatenated features and mask. Values and
gradients, down to the whole PA3C loss."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import napari_pixeldrl.training.pa3c as pa3c
from napari_pixeldrl.model.network import LowResHead, build_model
from napari_pixeldrl.model.reward_map import reward_map_conv

from _synthetic import discs


@pytest.mark.parametrize("k, shape", [(33, (2, 1, 64, 48)), (3, (1, 1, 9, 13)), (5, (3, 1, 4, 4))])
def test_fft_reward_map_matches_conv2d_in_values_and_gradients(k, shape):
    g = torch.Generator().manual_seed(k)
    x = torch.randn(shape, generator=g, requires_grad=True)
    w = torch.randn(1, 1, k, k, generator=g, requires_grad=True)
    up = torch.randn(shape, generator=g)  # an arbitrary upstream gradient
    ref = F.conv2d(x, w, padding=k // 2)
    fast = reward_map_conv(x, w)
    assert fast.shape == ref.shape
    assert torch.allclose(fast, ref, atol=1e-4, rtol=1e-4)
    gx_ref, gw_ref = torch.autograd.grad((ref * up).sum(), (x, w))
    gx, gw = torch.autograd.grad((fast * up).sum(), (x, w))
    assert torch.allclose(gx, gx_ref, atol=1e-4, rtol=1e-4)
    assert torch.allclose(gw, gw_ref, atol=1e-3, rtol=1e-4)


def _state_reference(features, low_mask):
    """Prototype similarities by F.cosine_similarity against weighted means, image by image."""
    out = []
    for f, m in zip(features, low_mask):
        maps = []
        for w in (m, 1 - m):
            mean = (f * w).sum(dim=(1, 2)) / w.sum() if w.sum() > 0 else torch.zeros(f.shape[0])
            maps.append(F.cosine_similarity(f, mean[:, None, None].expand_as(f), dim=0))
        out.append(torch.stack(maps))
    return torch.stack(out)


def _concat_head(head: LowResHead, low, fine, mask, low_mask):
    """The lite head as one convolution per layer over the concatenated inputs."""
    if head.state_in:
        low = torch.cat([low, _state_reference(low, low_mask)], dim=1)
    x = torch.cat([low, low_mask], dim=1) if head.mask_in else low
    coarse = F.pixel_shuffle(head.to_full(head.body(x)), head.scale)
    full = coarse + head.out(torch.cat([fine, mask], dim=1))
    if head.decode is None:
        return full
    first, last = head.decode[1], head.decode[3]
    return last(F.relu(first(F.relu(full))))


def _concat_step(self, context, mask, with_value=True, first=False):
    low_mask = F.avg_pool2d(mask, self.config.head_scale)
    args = (context["context"], context["fine"], mask, low_mask)
    if self.value is None:  # one shared body: the policy's two outputs, then the value
        out = _concat_head(self.policy, *args)
        return out[:, :2], (out[:, 2:] if with_value else None)
    return _concat_head(self.policy, *args), (_concat_head(self.value, *args) if with_value else None)


@pytest.mark.parametrize("shared_head, state_prototypes, fine_decoder, head_norm",
                         [(True, False, 0, "none"), (False, False, 0, "none"), (True, True, 0, "none"),
                          (True, False, 8, "none"), (False, True, 8, "instance"), (True, False, 0, "instance")])
@pytest.mark.parametrize("mask_channel", [True, False])
def test_lite_step_equals_one_convolution_over_the_concatenation(tiny_config, mask_channel, shared_head, state_prototypes,
                                                                 fine_decoder, head_norm):
    torch.manual_seed(0)
    config = tiny_config("lite", mask_channel=mask_channel, shared_head=shared_head, state_prototypes=state_prototypes,
                         fine_decoder=fine_decoder, head_norm=head_norm)
    net = build_model(config)
    x = torch.rand(2, 1, 64, 64)
    mask = (torch.rand(2, 1, 64, 64) > 0.3).float()
    ctx = net.encode(x)
    policy, value = net.step(ctx, mask)
    ref_policy, ref_value = _concat_step(net, net.encode(x), mask)
    assert torch.allclose(policy, ref_policy, atol=1e-5)
    assert torch.allclose(value, ref_value, atol=1e-5)
    again, _ = net.step(ctx, torch.ones_like(mask))  # the cached image part serves every step
    assert torch.allclose(again, _concat_step(net, net.encode(x), torch.ones_like(mask))[0], atol=1e-5)


@pytest.mark.parametrize("supervised_weight", [0.0, 5.0])
def test_pa3c_loss_and_gradients_unchanged_by_the_rewrites(tiny_config, monkeypatch, supervised_weight):
    """The whole loss of a sampled episode, fast path against the plain formulas."""
    images, masks = discs(2)
    x = torch.from_numpy(np.stack(images))
    y = torch.from_numpy(np.stack(masks)).float()
    options = dict(t_max=4, gamma=0.95, supervised_weight=supervised_weight, reward_balance=True, live_pixels_only=True)

    def loss_and_grads():
        torch.manual_seed(0)
        net = build_model(tiny_config("lite"))
        with torch.no_grad():  # a filter that is not a delta, so the reward map really mixes
            net.reward_conv.weight.add_(0.01 * torch.randn_like(net.reward_conv.weight))
        loss, stats = pa3c.pa3c_loss(net, x, y, generator=torch.Generator().manual_seed(3), **options)
        loss.backward()
        return loss.detach(), {n: p.grad.clone() for n, p in net.named_parameters() if p.grad is not None}

    fast_loss, fast_grads = loss_and_grads()
    monkeypatch.setattr(pa3c, "reward_map_conv", lambda r, w, spectrum=None: F.conv2d(r, w, padding=w.shape[-1] // 2))
    monkeypatch.setattr(type(build_model(tiny_config("lite"))), "step", _concat_step)
    ref_loss, ref_grads = loss_and_grads()
    assert torch.allclose(fast_loss, ref_loss, atol=1e-5, rtol=1e-5)
    assert fast_grads.keys() == ref_grads.keys()
    for name in ref_grads:
        assert torch.allclose(fast_grads[name], ref_grads[name], atol=1e-5, rtol=1e-4), name
