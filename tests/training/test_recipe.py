"""Training recipe options: each preset's training defaults (the paper preset trains the
paper's loss), the CPU-time budget, the coarse-to-fine targets and the BasicUNet peer."""

import json
import math

import numpy as np

import pytest
import torch

from napari_pixeldrl.core.errors import InputError
from napari_pixeldrl.model.checkpoint import load_checkpoint
from napari_pixeldrl.model.network import KEEP, build_model
from napari_pixeldrl.training.cli import main
from napari_pixeldrl.training.pa3c import dilate, pa3c_loss, step_radius
from napari_pixeldrl.training.train_config import TrainConfig
from napari_pixeldrl.training.trainer import Trainer

from _synthetic import TINY, discs


def tiny(**kw) -> TrainConfig:
    base = dict(preset="lite", model_overrides=dict(TINY), epochs=1, crop=None, t_max=3, progress=False, threads=2)
    base.update(kw)
    return TrainConfig(**base)


def test_paper_preset_trains_the_papers_loss():
    paper, lite = TrainConfig(preset="paper"), TrainConfig(preset="lite")
    assert paper.pa3c_options() == {"value_weight": 1.0, "entropy_beta": 0.01, "supervised_weight": 0.0,
                                    "reward_balance": False, "balance_power": 1.0, "live_pixels_only": False,
                                    "live_mean": "live", "supervised_dice": False, "coarse_to_fine": 0, "coarse_first": 0, "first_step_recall": 1.0,
                                    "start_boxes": 0.0,
                                    "supervised_steps": "every"}
    assert (lite.resolved("reward_balance"), lite.resolved("live_pixels_only"), lite.resolved_supervised_weight()) == (True, True, 5.0)
    assert paper.resolved("keep_init") == "random" and paper.resolved("reward_conv_lr_scale") == 1.0
    # An explicit option is a deviation that wins over the preset's default.
    assert TrainConfig(preset="paper", reward_balance=True).pa3c_options()["reward_balance"] is True


def test_paper_preset_keeps_the_initialisation_and_one_learning_rate(tmp_path, tiny_config):
    torch.manual_seed(0)
    fresh = build_model(tiny_config("paper"))
    trainer = Trainer(tiny(preset="paper", epochs=0), discs(2, 0), discs(1, 1), tmp_path)
    trainer.fit()
    assert torch.equal(trainer.net.policy.out.bias, fresh.policy.out.bias)  # no keep-bias, no x0.1
    assert {g["lr"] for g in trainer.optimizer.param_groups} == {1e-3}
    lite = Trainer(tiny(epochs=0), discs(2, 0), discs(1, 1), tmp_path / "lite")
    lite.fit()
    assert lite.config.resolved("keep_init") == "random"
    assert sorted(g["lr"] for g in lite.optimizer.param_groups) == pytest.approx([1e-3 / 33**2, 1e-3])
    biased = Trainer(tiny(epochs=0, keep_init=0.9), discs(2, 0), discs(1, 1), tmp_path / "biased")
    biased.fit()
    keep = torch.softmax(biased.net.policy.out.bias.detach()[:2], 0)[KEEP]  # the policy's two outputs
    assert float(keep) == pytest.approx(0.9, abs=1e-6)
    # With the fine decoder its last layer makes the output: the bias goes there.
    decoded = Trainer(tiny(epochs=0, keep_init=0.9, model_overrides={**TINY, "fine_decoder": 4}), discs(2, 0),
                      discs(1, 1), tmp_path / "decoded")
    decoded.fit()
    keep = torch.softmax(decoded.net.policy.decode[-1].bias.detach()[:2], 0)[KEEP]
    assert float(keep) == pytest.approx(0.9, abs=1e-6)


def test_info_shows_each_presets_training_defaults(capsys):
    for preset, expected in (("paper", (0.0, False, False)), ("lite", (5.0, True, True))):
        assert main(["info", "--preset", preset, "--json"]) == 0
        d = json.loads(capsys.readouterr().out)["train_defaults"]
        assert (d["supervised_weight"], d["reward_balance"], d["live_pixels_only"]) == expected
        assert isinstance(d["reward_conv_lr_scale"], float)


def test_keep_init_option_is_checked():
    with pytest.raises(InputError, match="keep_init"):
        Trainer(tiny(keep_init=1.5), discs(2, 0), discs(1, 1), "unused")
    with pytest.raises(InputError, match="coarse-to-fine"):
        Trainer(tiny(coarse_to_fine=-2), discs(2, 0), discs(1, 1), "unused")
    with pytest.raises(InputError, match="give one"):
        Trainer(tiny(coarse_to_fine=2, coarse_first=3), discs(2, 0), discs(1, 1), "unused")
    with pytest.raises(InputError, match="budget"):
        Trainer(tiny(cpu_budget_min=0), discs(2, 0), discs(1, 1), "unused")


def test_cpu_budget_stops_on_process_cpu_time(tmp_path):
    # 0.02 CPU-minutes is far less than 100 epochs of episodes: the run stops on the budget,
    # validates what it trained and keeps it.
    result = Trainer(tiny(epochs=100, cpu_budget_min=0.02), discs(4, 0), discs(2, 1), tmp_path).fit()
    assert result.reason == "time_budget" and result.epochs_done < 100
    assert result.best_checkpoint.exists()


def test_coarse_to_fine_radius_shrinks_to_the_truth():
    assert [step_radius(t, 10, 6) for t in range(1, 11)] == [6, 5, 5, 4, 3, 3, 2, 1, 1, 0]
    assert [step_radius(t, 1, 6) for t in (1,)] == [0] and step_radius(3, 10, 0) == 0
    g = torch.zeros(1, 9, 9)
    g[0, 4, 4] = 1
    assert int(dilate(g, 2).sum()) == 25 and torch.equal(dilate(g, 0), g)
    assert [step_radius(t, 10, 0, first=4) for t in range(1, 11)] == [4] + [0] * 9


def test_coarse_to_fine_rewards_keeping_a_margin_at_step_one(tiny_config):
    """With a radius, zeroing background next to the object at step 1 is penalised like
    zeroing object; without it, it is rewarded."""
    torch.manual_seed(0)
    net = build_model(tiny_config("lite"))
    with torch.no_grad():  # a policy that zeroes everything at once: pi(keep) ~ 0
        net.policy.out.bias[:2].copy_(torch.tensor([20.0, -20.0]))
    images, masks = discs(1, 0)
    x, y = torch.from_numpy(images[0][None]), torch.from_numpy(masks[0][None]).float()
    common = dict(t_max=3, gamma=0.95, reward_balance=False, generator=torch.Generator().manual_seed(0))
    _, plain = pa3c_loss(net, x, y, **common)
    _, coarse = pa3c_loss(net, x, y, coarse_to_fine=4, **common)
    _, first = pa3c_loss(net, x, y, coarse_first=4, **common)
    ring = float((dilate(y, 4) - y).mean())  # the margin's share of the pixels
    assert plain.mean_reward == pytest.approx(float(1 - 2 * y.mean()), abs=1e-5)
    assert coarse.mean_reward == pytest.approx(plain.mean_reward - 2 * ring, abs=1e-5)
    assert first.mean_reward == pytest.approx(coarse.mean_reward, abs=1e-5)


def test_first_step_recall_weighs_step_one_object_pixels(tiny_config):
    """Zeroing everything at step 1 costs K per object pixel instead of 1 (and the target
    stays the truth: background still earns +1); the later steps keep the plain weights."""
    torch.manual_seed(0)
    net = build_model(tiny_config("lite"))
    with torch.no_grad():
        net.policy.out.bias[:2].copy_(torch.tensor([20.0, -20.0]))
    images, masks = discs(1, 0)
    x, y = torch.from_numpy(images[0][None]), torch.from_numpy(masks[0][None]).float()
    common = dict(t_max=3, gamma=0.95, reward_balance=False, supervised_weight=1.0)
    _, plain = pa3c_loss(net, x, y, generator=torch.Generator().manual_seed(0), **common)
    _, recall = pa3c_loss(net, x, y, first_step_recall=4.0, generator=torch.Generator().manual_seed(0), **common)
    f = float(y.mean())
    assert recall.mean_reward == pytest.approx(plain.mean_reward - 3 * f, abs=1e-5)
    # BCE of a policy sure to zero: ~40 per object pixel; step 1's object pixels weigh 4x,
    # steps 2 and 3 see an all-zero mask and keep weight 1.
    assert recall.supervised_loss > plain.supervised_loss + 2.5 * 40 * f
    with pytest.raises(InputError, match="first step's object weight"):
        Trainer(tiny(first_step_recall=0.5), discs(2, 0), discs(1, 1), "unused")


def test_supervised_term_on_the_last_step_only(tiny_config):
    torch.manual_seed(0)
    net = build_model(tiny_config("lite"))
    images, masks = discs(2, 0)
    x, y = torch.from_numpy(np.stack(images)), torch.from_numpy(np.stack(masks)).float()
    common = dict(t_max=3, gamma=0.95, supervised_weight=1.0)
    losses = {}
    for steps in ("every", "last"):
        _, stats = pa3c_loss(net, x, y, supervised_steps=steps, generator=torch.Generator().manual_seed(0), **common)
        losses[steps] = stats.supervised_loss
    # Same sampled episode: every step's BCE against the last one's only (a fresh network
    # gives each step about the same BCE, so about a third).
    assert losses["last"] > 0 and losses["every"] == pytest.approx(3 * losses["last"], rel=0.2)
    with pytest.raises(InputError, match="supervised steps"):
        Trainer(tiny(supervised_steps="first"), discs(2, 0), discs(1, 1), "unused")


def test_live_terms_averaged_over_all_pixels(tiny_config):
    from napari_pixeldrl.training.pa3c import _mean

    x = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    live = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    assert float(_mean(x, live)) == pytest.approx((1 + 3) / 2)  # over the live pixels
    assert float(_mean(x, live, "all")) == pytest.approx((1 + 3) / 4)  # a dead pixel counts 0
    torch.manual_seed(0)
    net = build_model(tiny_config("lite"))
    images, masks = discs(2, 0)
    x, y = torch.from_numpy(np.stack(images)), torch.from_numpy(np.stack(masks)).float()
    stats = {}
    for t_max in (1, 3):
        for over in ("live", "all"):
            _, stats[t_max, over] = pa3c_loss(net, x, y, t_max=t_max, gamma=0.95, live_pixels_only=True, live_mean=over,
                                              generator=torch.Generator().manual_seed(0))
    # Step 1 starts from all ones: every pixel is live, so a one-step loss is the same either way.
    assert stats[1, "all"].loss == pytest.approx(stats[1, "live"].loss, rel=1e-6)
    # Later steps' live pixels are fewer than all: their terms shrink, the supervised term does not.
    assert stats[3, "all"].value_loss < stats[3, "live"].value_loss
    assert stats[3, "all"].supervised_loss == pytest.approx(stats[3, "live"].supervised_loss, rel=1e-6)
    with pytest.raises(InputError, match="live mean"):
        Trainer(tiny(live_mean="pixels"), discs(2, 0), discs(1, 1), "unused")


def test_basicunet_peer_trains_and_reloads(tmp_path):
    cfg = TrainConfig(preset="basicunet", epochs=1, crop=None, progress=False, threads=2)
    result = Trainer(cfg, discs(2, 0), discs(1, 1), tmp_path).fit()
    loaded = load_checkpoint(result.best_checkpoint)
    assert loaded.config.unet_family == "monai-basic" and type(loaded.model).__name__ == "BasicUNet"
    assert math.isfinite(result.best_dice)


def test_bench_train_reports_the_ratio_to_the_peer(capsys):
    code = main(["bench", "--train", "--size", "32", "--repeats", "1", "--warmup", "0", "--json"])
    r = json.loads(capsys.readouterr().out)
    assert code == 0 and {"pa3c_s", "peer_s", "ratio", "size", "batch", "threads"} <= set(r)
    assert (r["size"], r["batch"], r["threads"]) == (32, 2, 2)
    assert r["ratio"] == pytest.approx(r["pa3c_s"] / r["peer_s"], rel=0.01)
    assert main(["bench", "--train", "--size", "30"]) == 2
    assert "multiple of 8" in capsys.readouterr().err


def test_a_diverging_run_stops_before_saving_its_nan_weights(tmp_path, monkeypatch):
    import dataclasses

    import napari_pixeldrl.training.pa3c as pa3c
    from napari_pixeldrl.training.events import TrainingDiverged
    from napari_pixeldrl.training.run_folder import LAST

    Trainer(tiny(epochs=1), discs(2, 0), discs(1, 1), tmp_path).fit()
    good = load_checkpoint(tmp_path / LAST).model.state_dict()
    real = pa3c.pa3c_loss

    def diverging(*args, **kw):
        loss, stats = real(*args, **kw)
        return loss * float("nan"), dataclasses.replace(stats, loss=float("nan"))

    monkeypatch.setattr(pa3c, "pa3c_loss", diverging)
    with pytest.raises(TrainingDiverged, match=r"loss is not finite \(here nan\)"):
        Trainer(tiny(epochs=2), discs(2, 0), discs(1, 1), tmp_path).fit(resume=True)
    kept = load_checkpoint(tmp_path / LAST).model.state_dict()
    assert all(torch.equal(good[k], kept[k]) for k in good)


@pytest.mark.parametrize("option, value", [("batch_size", 0), ("lr", float("nan")), ("lr", -1.0), ("crop", -5),
                                           ("threads", -1), ("t_max", 0), ("t_max", 2.7), ("epochs", -1),
                                           ("value_weight", float("nan"))])
def test_options_that_cannot_mean_what_they_say_are_refused(option, value):
    with pytest.raises(InputError, match=option.replace("_", " ")):
        Trainer(tiny(**{option: value}), discs(2, 0), discs(1, 1), "unused")


def test_weights_that_are_not_finite_are_refused_on_load(tmp_path, tiny_config):
    from napari_pixeldrl.core.errors import CheckpointError
    from napari_pixeldrl.model.checkpoint import save_checkpoint

    cfg = tiny_config("lite")
    net = build_model(cfg)
    with torch.no_grad():
        net.policy.out.weight[0, 0, 0, 0] = float("nan")
    path = save_checkpoint(tmp_path / "nan.safetensors", net, cfg)
    with pytest.raises(CheckpointError, match="NaN or infinite"):
        load_checkpoint(path)


def test_a_run_folder_in_use_is_refused_naming_the_holder(tmp_path):
    from napari_pixeldrl.training.run_lock import RunFolderLock

    holder = RunFolderLock(tmp_path).acquire()
    try:
        with pytest.raises(InputError, match="in use by another run .*pid"):
            Trainer(tiny(), discs(2, 0), discs(1, 1), tmp_path).fit()
    finally:
        holder.release()
    assert Trainer(tiny(), discs(2, 0), discs(1, 1), tmp_path).fit().reason == "done"  # free again


def test_the_end_event_comes_while_the_run_still_holds_its_folder(tmp_path):
    """What a caller writes into the folder at the end (the CLI's "ended" record) is the run's:
    a second run cannot have taken the folder in between."""
    from napari_pixeldrl.training.run_lock import RunFolderLock
    from napari_pixeldrl.training.events import EndEvent

    seen = []

    def at_end(event):
        if isinstance(event, EndEvent):
            with pytest.raises(InputError, match="in use by another run"):
                RunFolderLock(tmp_path).acquire()
            seen.append(event.reason)

    Trainer(tiny(), discs(2, 0), discs(1, 1), tmp_path, callbacks=[at_end]).fit()
    assert seen == ["done"]
    RunFolderLock(tmp_path).acquire().release()  # released after it


def test_resume_without_training_state_is_refused_and_keeps_the_best(tmp_path):
    from napari_pixeldrl.training.run_folder import BEST, STATE

    Trainer(tiny(), discs(2, 0), discs(1, 1), tmp_path).fit()
    (tmp_path / STATE).unlink()
    before = (tmp_path / BEST).read_bytes()
    with pytest.raises(InputError, match="cannot be resumed"):
        Trainer(tiny(epochs=2), discs(2, 0), discs(1, 1), tmp_path).fit(resume=True)
    with pytest.raises(InputError, match="already holds a run"):
        Trainer(tiny(epochs=2), discs(2, 0), discs(1, 1), tmp_path).fit()
    assert (tmp_path / BEST).read_bytes() == before


def test_temporaries_of_a_killed_write_are_removed_on_start(tmp_path):
    from napari_pixeldrl.training.run_folder import STATE

    Trainer(tiny(), discs(2, 0), discs(1, 1), tmp_path).fit()
    stale = tmp_path / f".{STATE}.abc123.tmp"
    stale.write_bytes(b"x" * 100)
    Trainer(tiny(epochs=2), discs(2, 0), discs(1, 1), tmp_path).fit(resume=True)
    assert not stale.exists()


def test_the_stop_signal_is_reduced_on_the_runs_device(monkeypatch):
    """NCCL reduces CUDA tensors only: the stop signal must live on the run's device (here a
    stand-in device, since the tests have no GPU)."""
    import torch.distributed as dist

    trainer = Trainer(tiny(), discs(2, 0), discs(1, 1), "unused")
    trainer.world_size, trainer.device = 2, torch.device("meta")
    seen = []

    class Reduced(Exception):
        pass

    def fake_all_reduce(tensor, op=None):
        seen.append(tensor.device)
        raise Reduced

    monkeypatch.setattr(dist, "all_reduce", fake_all_reduce)
    with pytest.raises(Reduced):
        trainer._stop_requested(0.0)
    assert seen == [torch.device("meta")]


def test_review_fixes_bench_unet_out_file_list_overrides_and_old_configs(capsys, tmp_path):
    from napari_pixeldrl.model.config import preset_config

    assert main(["bench", "--train", "--preset", "unet", "--size", "32"]) == 2
    assert "is a U-Net" in capsys.readouterr().err
    a_file = tmp_path / "f"
    a_file.write_text("x")
    assert main(["train", "--dataset", "folder", "--data", str(tmp_path), "--out", str(a_file)]) == 2
    assert "it is a file" in capsys.readouterr().err
    assert preset_config("lite", widths=[8, 16, 16, 16]).widths == (8, 16, 16, 16)  # as JSON gives them
    old = {k: v for k, v in tiny(preset="paper").to_dict().items() if k not in ("supervised_steps", "coarse_to_fine")}
    old.update(reward_conv_lr_scale=None, keep_init=None, threads=0)  # saved before the presets had defaults
    read = TrainConfig.from_dict(old)
    assert (read.resolved("reward_conv_lr_scale"), read.resolved("keep_init"), read.threads) == ("1/k^2", "random", None)
