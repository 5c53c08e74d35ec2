import pytest
import torch

from napari_pixeldrl.core.errors import InputError
from napari_pixeldrl.model.config import ModelConfig, preset_config
from napari_pixeldrl.model.network import prototype_similarity, PixelDRLNet, build_model, count_parameters


def test_paper_preset_parameters_within_one_percent_of_714m():
    n = count_parameters(build_model(preset_config("paper", in_channels=1)))
    assert abs(n - 7.14e6) / 7.14e6 < 0.01, n


def test_unet_baseline_is_the_classic_31m():
    n = count_parameters(build_model(preset_config("unet", in_channels=1)))
    assert abs(n - 31.03e6) / 31.03e6 < 0.01, n


def test_lite_is_smaller_than_paper():
    assert count_parameters(build_model(preset_config("lite"))) < count_parameters(build_model(preset_config("paper")))


@pytest.mark.parametrize("preset", ["paper", "lite"])
@pytest.mark.parametrize("channels", [1, 3])
def test_outputs_at_input_resolution(tiny_config, preset, channels):
    net = build_model(tiny_config(preset, in_channels=channels))
    logits, value = net(torch.rand(2, channels, 64, 48), torch.ones(2, 1, 64, 48))
    assert logits.shape == (2, 2, 64, 48)
    assert value.shape == (2, 1, 64, 48)


def test_ablation_switches_change_the_network(tiny_config):
    full = build_model(tiny_config("paper"))
    no_sam = build_model(tiny_config("paper", sam=False))
    no_dc = build_model(tiny_config("paper", dilation=False))
    assert count_parameters(full) - count_parameters(no_sam) == 8 * 8 + 8  # the 1x1 W of SAM
    dil = [m.dilation for m in no_dc.modules() if isinstance(m, torch.nn.Conv2d)]
    assert all(d == (1, 1) for d in dil)
    assert any(m.dilation != (1, 1) for m in full.modules() if isinstance(m, torch.nn.Conv2d))


def test_lite_step_depends_on_mask(tiny_config):
    torch.manual_seed(0)
    net = PixelDRLNet(tiny_config("lite"))
    x = torch.rand(1, 1, 32, 32)
    ctx = net.encode(x)
    a, _ = net.step(ctx, torch.ones(1, 1, 32, 32))
    m = torch.ones(1, 1, 32, 32)
    m[..., :16, :] = 0
    b, _ = net.step(ctx, m)
    assert not torch.allclose(a, b)


def test_reward_conv_starts_as_delta(tiny_config):
    net = PixelDRLNet(tiny_config("lite"))
    r = torch.randn(1, 1, 40, 40)
    assert torch.allclose(net.reward_conv(r), r)
    assert net.reward_conv.weight.shape == (1, 1, 33, 33)


def test_config_roundtrip_and_unknown_keys():
    cfg = preset_config("lite", in_channels=3)
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(InputError, match="unknown model config keys"):
        ModelConfig.from_dict({**cfg.to_dict(), "bogus": 1})
    with pytest.raises(InputError, match="unknown preset"):
        preset_config("huge")


@pytest.mark.parametrize("preset", ["paper", "lite"])
def test_shared_head_gives_both_outputs_from_one_body(tiny_config, preset):
    net = build_model(tiny_config(preset, shared_head=True))
    assert net.value is None
    separate = build_model(tiny_config(preset, shared_head=False))
    assert count_parameters(net) < count_parameters(separate)
    x, m = torch.rand(2, 1, 64, 48), torch.ones(2, 1, 64, 48)
    logits, value = net(x, m)
    assert logits.shape == (2, 2, 64, 48) and value.shape == (2, 1, 64, 48)
    # The value is the body's third output, the policy its first two.
    full = net.policy(net._prepared(net.encode(x), "policy"), torch.nn.functional.avg_pool2d(m, 4), m) if preset == "lite" else None
    if full is not None:
        assert torch.equal(full[:, :2], logits) and torch.equal(full[:, 2:], value)
    logits_only, none = net.step(net.encode(x), m, with_value=False)
    assert none is None and torch.equal(logits_only, logits)


def test_instance_norm_extractor(tiny_config):
    net = build_model(tiny_config("lite", extractor_norm="instance"))
    norms = [m for m in net.extractor.modules() if isinstance(m, torch.nn.InstanceNorm2d)]
    assert len(norms) == 10  # one per VGG16-half convolution
    # A contrast change of the image does not change the first block's output.
    x = torch.rand(1, 1, 64, 64)
    first = net.extractor.blocks[0][:3]  # conv, norm, ReLU
    assert torch.allclose(first(x), first(3 * x), atol=2e-3)  # up to the eps of the variance
    with pytest.raises(InputError, match="extractor_norm"):
        tiny_config("lite", extractor_norm="batch")


def test_new_fields_left_out_of_json_at_their_first_values():
    d = preset_config("lite", shared_head=False, extractor_norm="none").to_dict()
    assert not {"shared_head", "extractor_norm", "state_prototypes", "fine_decoder", "sam_axis", "head_norm"} & set(d)
    changed = preset_config("lite", shared_head=True, extractor_norm="instance", state_prototypes=True, fine_decoder=8,
                            sam_axis="channel", head_norm="instance")
    assert ModelConfig.from_dict(changed.to_dict()) == changed


def test_state_prototypes_need_the_lite_heads_and_see_the_state(tiny_config):
    with pytest.raises(InputError, match="state_prototypes"):
        tiny_config("paper", state_prototypes=True)
    features = torch.zeros(1, 3, 4, 4)
    features[0, 0, :, :2] = 2.0  # the left half looks like e1, the right half like e2
    features[0, 1, :, 2:] = 2.0
    left = torch.zeros(1, 1, 4, 4)
    left[..., :2] = 1
    sim = prototype_similarity({"context": features}, left)
    assert torch.allclose(sim[0, 0], left[0, 0]) and torch.allclose(sim[0, 1], 1 - left[0, 0])
    # m(0) = 1: nothing is outside, so that channel is 0; inside is the mean of both kinds.
    start = prototype_similarity({"context": features}, torch.ones_like(left))
    assert torch.all(start[0, 1] == 0) and torch.allclose(start[0, 0], torch.full((4, 4), 2 ** -0.5))


def test_state_prototypes_added_at_zero_weight_change_nothing(tiny_config):
    from napari_pixeldrl.model.network import with_state_prototypes

    torch.manual_seed(0)
    for shared in (True, False):
        net = build_model(tiny_config("lite", shared_head=shared)).eval()
        wide = with_state_prototypes(net).eval()
        assert wide.config.state_prototypes and count_parameters(wide) > count_parameters(net)
        x, mask = torch.rand(2, 1, 64, 64), (torch.rand(2, 1, 64, 64) > 0.5).float()
        with torch.no_grad():
            (a, va), (b, vb) = net(x, mask), wide(x, mask)
        assert torch.allclose(a, b, atol=1e-5) and torch.allclose(va, vb, atol=1e-5)
    with pytest.raises(ValueError, match="already"):
        with_state_prototypes(wide)


def test_fine_decoder_needs_the_lite_heads_and_widens_them(tiny_config):
    with pytest.raises(InputError, match="fine_decoder"):
        tiny_config("paper", fine_decoder=8)
    with pytest.raises(InputError, match="fine_decoder"):
        tiny_config("lite", fine_decoder=-1)
    plain, decoded = build_model(tiny_config("lite")), build_model(tiny_config("lite", fine_decoder=8))
    assert plain.policy.decode is None and decoded.policy.decode is not None
    assert count_parameters(decoded) > count_parameters(plain)
    # The decoder is non-linear at full resolution: the policy is not the plain head's.
    torch.manual_seed(0)
    x, mask = torch.rand(1, 1, 64, 64), torch.ones(1, 1, 64, 64)
    policy, value = decoded(x, mask)
    assert policy.shape == (1, 2, 64, 64) and value.shape == (1, 1, 64, 64)


def test_channel_sam_is_local_and_spatial_sam_sees_the_whole_image(tiny_config):
    from napari_pixeldrl.model.attention import SelfAttention

    torch.manual_seed(0)
    f = torch.rand(1, 8, 6, 6) + 0.1
    padded = torch.nn.functional.pad(f, (3, 3, 3, 3), value=0.5)  # more image, the same pixels inside
    for axis, local in (("channel", True), ("spatial", False)):
        sam = SelfAttention(8, axis)
        with torch.no_grad():
            same = torch.allclose(sam(f), sam(padded)[..., 3:9, 3:9], atol=1e-6)
        assert same == local
    # Uniform logits (W = 0, f constant per pixel across channels) give 2f on either axis.
    g = torch.full((1, 8, 4, 4), 0.3)
    for axis in ("channel", "spatial"):
        sam = SelfAttention(8, axis)
        torch.nn.init.zeros_(sam.w.weight), torch.nn.init.zeros_(sam.w.bias)
        with torch.no_grad():
            assert torch.allclose(sam(g), 2 * g)
    with pytest.raises(InputError, match="sam_axis"):
        tiny_config("lite", sam_axis="time")
    with pytest.raises(InputError, match="head_norm"):
        tiny_config("paper", head_norm="instance")


@pytest.mark.parametrize("head_norm", ["none", "instance"])
def test_lite_head_leaves_its_prepared_image_part_alone(tiny_config, head_norm):
    """Without mask or state inputs the head's first-layer input is prepare()'s tensor itself,
    reused at every step of an episode: the head must not change it in place."""
    torch.manual_seed(0)
    head = build_model(tiny_config("lite", mask_channel=False, head_norm=head_norm)).policy
    assert not head.mask_in and not head.state_in
    low = torch.rand(1, head.body[0].weight.shape[1], 8, 8, requires_grad=True)
    fine = torch.rand(1, head.out.weight.shape[1] - 1, 32, 32)
    prepared = head.prepare(low, fine)
    before = prepared[0].detach().clone()
    steps = [head(prepared, None, torch.ones(1, 1, 32, 32)) for _ in range(2)]
    assert torch.equal(prepared[0].detach(), before)
    assert torch.equal(steps[0], steps[1])
    sum(s.sum() for s in steps).backward()  # a tensor saved for backward must not have changed
    assert low.grad is not None


def test_first_step_head_serves_step_one_only(tiny_config, tmp_path):
    """A copy of the shared head changes nothing; once the two differ, step 1 follows its
    own head and the later steps the shared one; the switch survives a checkpoint."""
    from napari_pixeldrl.model.checkpoint import load_checkpoint, save_checkpoint
    from napari_pixeldrl.model.episode import run_episode
    from napari_pixeldrl.model.network import with_first_step_head

    torch.manual_seed(0)
    shared = PixelDRLNet(tiny_config("lite", shared_head=True)).eval()
    split = with_first_step_head(shared).eval()
    x = torch.rand(1, 1, 32, 32)
    with torch.no_grad():
        same = [(s.mask, s.keep_prob) for s in run_episode(shared, x, 3, early_stop=False)]
        again = [(s.mask, s.keep_prob) for s in run_episode(split, x, 3, early_stop=False)]
        assert all(torch.equal(a[1], b[1]) for a, b in zip(same, again))
        split.policy_first.out.bias.add_(0.5)  # the first head's outputs move, the shared head's do not
        ctx, m = split.encode(x), torch.ones(1, 1, 32, 32)
        assert not torch.allclose(split.step(ctx, m, first=True)[0], shared.step(shared.encode(x), m)[0])
        assert torch.equal(split.step(ctx, m, first=False)[0], shared.step(shared.encode(x), m)[0])
    path = tmp_path / "split.safetensors"
    save_checkpoint(path, split, split.config, {})
    loaded = load_checkpoint(path)
    assert loaded.config.first_step_head
    assert torch.equal(loaded.model.policy_first.out.bias.float(), split.policy_first.out.bias)
    assert "first_step_head" not in shared.config.to_dict()  # older readers still read models without it
    with pytest.raises(InputError, match="first_step_head needs"):
        tiny_config("paper", first_step_head=True).validate()
    with pytest.raises(ValueError, match="already has"):
        with_first_step_head(split)
    with pytest.raises(ValueError, match="no lite shared head"):
        with_first_step_head(PixelDRLNet(tiny_config("lite", shared_head=False)))


def test_prompt_channel_added_at_zero_weight_then_lets_the_features_see_the_start(tiny_config, tmp_path):
    """Widened at zero weight it computes what it did from any m(0); once the weight moves,
    a box start changes the features (not only which pixels are already zero), the start
    reaches the extractor through run_episode and segment(), and the switch survives a checkpoint."""
    import numpy as np

    from napari_pixeldrl.model.checkpoint import load_checkpoint, save_checkpoint
    from napari_pixeldrl.model.episode import run_episode
    from napari_pixeldrl.model.inference import segment
    from napari_pixeldrl.model.network import with_prompt_channel

    torch.manual_seed(0)
    net = PixelDRLNet(tiny_config("lite", shared_head=True)).eval()
    wide = with_prompt_channel(net).eval()
    assert wide.config.prompt_channel and count_parameters(wide) > count_parameters(net)
    x = torch.rand(1, 1, 32, 32)
    box = torch.zeros(1, 1, 32, 32)
    box[..., 8:24, 8:24] = 1
    with torch.no_grad():
        for start in (None, box):
            a = [s.keep_prob for s in run_episode(net, x, 3, early_stop=False, start_mask=start)]
            b = [s.keep_prob for s in run_episode(wide, x, 3, early_stop=False, start_mask=start)]
            assert all(torch.allclose(p, q, atol=1e-6) for p, q in zip(a, b))
        conv1 = wide.extractor.blocks[0][0]
        conv1.weight[:, -1].normal_(0, 0.5)
        inside = box.bool()[:, 0]
        from_box = wide.step(wide.encode(x, start=box), torch.ones_like(box))[0]
        from_ones = wide.step(wide.encode(x), torch.ones_like(box))[0]
        assert not torch.allclose(from_box[:, :, inside[0]], from_ones[:, :, inside[0]], atol=1e-4)
        episode = [s.keep_prob for s in run_episode(wide, x, 1, start_mask=box)]
        assert torch.allclose(episode[0], torch.softmax(wide.step(wide.encode(x, start=box), box)[0], dim=1)[:, 1])
    image = x[0, 0].numpy()
    seg_box = segment(wide, wide.config, image, t_max=2, return_steps=True, start_mask=box[0, 0].numpy())
    seg_ones = segment(wide, wide.config, image, t_max=2, return_steps=True)
    assert not np.allclose(seg_box.value, seg_ones.value)  # the value map is taken with the same m(0)
    path = tmp_path / "prompt.safetensors"
    save_checkpoint(path, wide, wide.config, {})
    loaded = load_checkpoint(path)
    assert loaded.config.prompt_channel
    assert torch.equal(loaded.model.extractor.blocks[0][0].weight.float(), conv1.weight)
    assert "prompt_channel" not in net.config.to_dict()  # older readers still read models without it
    with pytest.raises(InputError, match="prompt_channel needs"):
        tiny_config("paper", prompt_channel=True).validate()
    with pytest.raises(ValueError, match="already has a prompt channel"):
        with_prompt_channel(wide)
