import pytest
import torch

from napari_pixeldrl.model.episode import reward, run_episode
from napari_pixeldrl.model.network import PixelDRLNet


class FixedPolicy(torch.nn.Module):
    """A stand-in network whose action map is scripted per step, to test the episode itself."""

    def __init__(self, keep_maps):
        super().__init__()
        self.keep_maps = keep_maps  # list of (B, H, W) 0/1 tensors
        self.calls = 0

    def encode(self, image, start=None):
        return {"image": image}

    def step(self, context, mask, with_value=True, first=False):
        keep = self.keep_maps[min(self.calls, len(self.keep_maps) - 1)].float()
        self.calls += 1
        logits = torch.stack([1 - keep, keep], dim=1) * 10.0
        return logits, torch.zeros_like(mask)


def test_reward_values():
    prev = torch.tensor([1.0, 1.0, 1.0, 1.0])
    new = torch.tensor([0.0, 0.0, 1.0, 1.0])
    truth = torch.tensor([0.0, 1.0, 0.0, 1.0])
    assert reward(prev, new, truth).tolist() == [1.0, -1.0, 0.0, 0.0]


def test_zeroing_is_absorbing_and_early_stop_is_exact():
    a1 = torch.ones(1, 4, 4, dtype=torch.uint8)
    a1[0, 0] = 0
    a2 = torch.ones(1, 4, 4, dtype=torch.uint8)  # keeps everything: m(2) == m(1), fixed point
    a_revive = torch.zeros(1, 4, 4, dtype=torch.uint8)
    net = FixedPolicy([a1, a2, a_revive])
    steps = list(run_episode(net, torch.rand(1, 1, 4, 4), 10))
    assert [s.t for s in steps] == [1, 2]  # stopped at the fixed point
    assert steps[0].mask[0, 0].sum() == 0 and steps[0].mask.sum() == 12
    assert torch.equal(steps[1].mask, steps[0].mask)
    assert steps[0].changed.item() and not steps[1].changed.item()

    net = FixedPolicy([a1, a2, a_revive])
    steps = list(run_episode(net, torch.rand(1, 1, 4, 4), 5, early_stop=False))
    assert len(steps) == 5
    assert steps[-1].mask.sum() == 0  # zeroed pixels stay zero, the rest went at step 3
    for before, after in zip(steps, steps[1:]):
        assert (after.mask <= before.mask).all()


@pytest.mark.parametrize("shared_head", [True, False])
def test_sampled_episode_keeps_graph(tiny_config, shared_head):
    torch.manual_seed(0)
    net = PixelDRLNet(tiny_config("lite", shared_head=shared_head))
    steps = list(run_episode(net, torch.rand(2, 1, 32, 32), 3, sample=True, generator=torch.Generator().manual_seed(1)))
    assert len(steps) == 3  # no early stop while sampling
    loss = sum((-s.log_prob).mean() + s.value.mean() - 0.01 * s.entropy.mean() for s in steps)
    loss.backward()
    if shared_head:  # one output layer: the policy's two rows and the value's third all get gradients
        grad = net.policy.out.weight.grad
        assert grad is not None and all(bool(grad[i].abs().sum() > 0) for i in range(3))
    else:
        assert net.policy.out.weight.grad is not None and net.value.out.weight.grad is not None
    assert all(((s.action == 0) | (s.action == 1)).all() for s in steps)
