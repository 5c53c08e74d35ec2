import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from napari_pixeldrl.model.checkpoint import load_checkpoint
from napari_pixeldrl.training import state as state_mod
from napari_pixeldrl.training.state import load_training_state
from napari_pixeldrl.training.events import EpisodeEvent
from napari_pixeldrl.training.run_folder import BEST, CURVE, LAST, METRICS, STATE, option_changes, write_curve
from napari_pixeldrl.training.train_config import TrainConfig
from napari_pixeldrl.training.trainer import Trainer

from _synthetic import TINY, discs

HERE = Path(__file__).resolve().parents[1]  # tests/, where the helper modules are


def tiny(**kw) -> TrainConfig:
    base = dict(preset="lite", model_overrides=dict(TINY), epochs=2, crop=None, t_max=3, progress=False, threads=2, seed=0)
    base.update(kw)
    return TrainConfig(**base)


def test_run_folder_and_resume_continue_epochs_and_best(tmp_path):
    data = discs(4, 0)
    r1 = Trainer(tiny(epochs=2), data, discs(2, 1), tmp_path).fit()
    assert r1.reason == "done" and r1.epochs_done == 2
    for name in (BEST, LAST, STATE, METRICS, CURVE, "config.json"):
        assert (tmp_path / name).exists(), name
    assert len((tmp_path / METRICS).read_text().splitlines()) == 2
    load_checkpoint(tmp_path / BEST)
    _, body = load_training_state(tmp_path / STATE)
    assert body["meta"]["epoch"] == 2 and body["optimizer"]["state"]
    with pytest.raises(Exception, match="--resume"):
        Trainer(tiny(epochs=3), data, discs(2, 1), tmp_path).fit()
    t2 = Trainer(tiny(epochs=3), data, discs(2, 1), tmp_path)
    r2 = t2.fit(resume=True)
    assert r2.epochs_done == 3
    assert [row["epoch"] for row in r2.history] == [1, 2, 3]
    assert r2.best_dice >= r1.best_dice
    assert t2.scheduler.last_epoch == 3


def test_resume_takes_a_new_learning_rate_and_keeps_the_saved_one_otherwise(tmp_path, capsys):
    """--lr on --resume (a lower rate for the last epochs) must reach the optimizer; the saved
    optimizer state would otherwise silently keep the old one. The reward filter's group keeps
    its ratio to the rest and the step schedule its decay."""
    data = discs(4, 0)
    first = Trainer(tiny(epochs=1, lr=1e-3, lr_step_epochs=1, lr_decay=0.5), data, discs(2, 1), tmp_path)
    first.fit()
    before = [g["lr"] for g in first.optimizer.param_groups]
    assert len(before) == 2  # the reward filter's own group
    t = Trainer(tiny(epochs=2, lr=1e-4, lr_step_epochs=1, lr_decay=0.5), data, discs(2, 1), tmp_path)
    r = t.fit(resume=True)
    assert [round(row["lr"], 12) for row in r.history] == [1e-3, 0.5e-4]  # epoch 2: 1e-4 decayed once
    after = [g["lr"] for g in t.optimizer.param_groups]
    assert after[1] / after[0] == pytest.approx(before[1] / before[0])
    assert "base learning rate 0.001 -> 0.0001; now 5e-05" in capsys.readouterr().err
    assert option_changes(r.history) == [1.5]  # the learning curve marks where the rate was set
    assert option_changes([{**row, "base_lr": None} for row in r.history]) == []  # older rows cannot say
    # Resumed without a new rate: the decayed saved rate goes on.
    t3 = Trainer(tiny(epochs=3, lr=1e-4, lr_step_epochs=1, lr_decay=0.5), data, discs(2, 1), tmp_path)
    assert t3.fit(resume=True).history[-1]["lr"] == pytest.approx(0.25e-4)


def test_resume_takes_a_new_reward_filter_rate_and_leaves_the_rest(tmp_path, capsys):
    """--reward-conv-lr-scale on --resume must reach the reward filter's group (the saved
    optimizer would otherwise keep the old ratio) and leave the other group's rate as it was."""
    data = discs(4, 0)
    first = Trainer(tiny(epochs=1, lr=1e-3, reward_conv_lr_scale=0.5), data, discs(2, 1), tmp_path)
    first.fit()
    assert [g["lr"] for g in first.optimizer.param_groups] == pytest.approx([1e-3, 0.5e-3])
    t = Trainer(tiny(epochs=2, lr=1e-3, reward_conv_lr_scale=0.1), data, discs(2, 1), tmp_path)
    t.fit(resume=True)
    assert [g["lr"] for g in t.optimizer.param_groups] == pytest.approx([1e-3, 1e-4])
    assert "reward filter's learning rate 0.0005 -> 0.0001" in capsys.readouterr().err


def test_checkpoints_carry_the_episode_length_they_were_trained_with(tmp_path):
    # The tiny preset's config says 10 steps; a run trained with 2 must infer with 2 by
    # default, and resuming (which checks the run's own config) still works.
    data = discs(4, 0)
    Trainer(tiny(epochs=1, t_max=2), data, discs(2, 1), tmp_path).fit()
    assert json.loads((tmp_path / "config.json").read_text())["model"]["t_max"] == 10
    assert load_checkpoint(tmp_path / BEST).config.t_max == 2
    assert load_checkpoint(tmp_path / LAST).config.t_max == 2
    assert Trainer(tiny(epochs=2, t_max=2), data, discs(2, 1), tmp_path).fit(resume=True).epochs_done == 2


def test_cancel_stops_within_one_episode(tmp_path):
    seen = []

    def cb(event):
        if isinstance(event, EpisodeEvent):
            seen.append(event)
            trainer.cancel.set()

    trainer = Trainer(tiny(epochs=5), discs(8), discs(2, 1), tmp_path, callbacks=[cb])
    result = trainer.fit()
    assert result.reason == "cancelled" and len(seen) == 1
    assert (tmp_path / BEST).exists()  # still a usable model


def test_run_yields_the_events_in_order_and_returns_the_result(tmp_path):
    from _helpers import drain
    from napari_pixeldrl.training.events import EndEvent, EpochEvent, StartEvent

    events, result = drain(Trainer(tiny(epochs=2, batch_size=2), discs(4), discs(2, 1), tmp_path).run())
    kinds = [type(e).__name__ for e in events]
    assert kinds == ["StartEvent", "EpisodeEvent", "EpisodeEvent", "EpochEvent",
                     "EpisodeEvent", "EpisodeEvent", "EpochEvent", "EndEvent"]
    assert isinstance(events[0], StartEvent) and isinstance(events[-1], EndEvent)
    assert [e.epoch for e in events if isinstance(e, EpochEvent)] == [1, 2]
    assert result.epochs_done == 2 and result.best_dice == events[-1].best_dice


def test_closing_the_run_releases_its_folder(tmp_path):
    events = Trainer(tiny(epochs=5), discs(4), discs(2, 1), tmp_path).run()
    next(events), next(events)  # started, one episode
    events.close()
    # The folder is free again: a resume of it runs (the first epoch never finished).
    result = Trainer(tiny(epochs=1), discs(4), discs(2, 1), tmp_path).fit(resume=True)
    assert result.epochs_done == 1


def test_a_starting_model_in_memory_is_trained_as_a_copy(tmp_path):
    import torch

    from napari_pixeldrl.model.checkpoint import LoadedModel
    from napari_pixeldrl.model.config import preset_config
    from napari_pixeldrl.model.network import build_model

    config = preset_config("lite", in_channels=1, **TINY)
    start = LoadedModel(build_model(config), config, {}, None)
    before = {k: v.clone() for k, v in start.model.state_dict().items()}
    result = Trainer(tiny(epochs=1), discs(4), discs(2, 1), tmp_path, init_checkpoint=start).fit()
    assert all(torch.equal(before[k], v) for k, v in start.model.state_dict().items())
    trained = load_checkpoint(result.best_checkpoint).model.state_dict()
    assert any(not torch.equal(before[k], trained[k]) for k in before)


def test_time_budget_stops_cleanly_with_a_best_checkpoint(tmp_path):
    result = Trainer(tiny(epochs=1000, time_budget_min=0.05), discs(4), discs(2, 1), tmp_path).fit()
    assert result.reason == "time_budget" and result.epochs_done < 1000
    load_checkpoint(tmp_path / BEST)


def test_time_budget_stop_validates_what_was_trained_since_the_last_validation(tmp_path):
    """A run resumed with validation every 1000 epochs trains unvalidated until its budget
    ends; the stop validates those weights and keeps them when they are better."""
    from napari_pixeldrl.model.checkpoint import read_header

    Trainer(tiny(epochs=1), discs(4), discs(2, 1), tmp_path).fit()
    assert read_header(tmp_path / BEST)["info"]["epoch"] == 1
    trainer = Trainer(tiny(epochs=1000, val_every=1000, time_budget_min=0.05), discs(4), discs(2, 1), tmp_path)
    trainer.validate = lambda: 2.0  # better than any DICE, so the stop's weights must become the best
    result = trainer.fit(resume=True)
    assert result.reason == "time_budget"
    info = read_header(tmp_path / BEST)["info"]
    assert info["val_dice"] == 2.0 and info["validated_at_stop"] is True and info["epoch"] == result.epochs_done
    assert (result.best_dice, result.best_epoch, result.stop_val_dice) == (2.0, result.epochs_done, 2.0)


def test_the_weights_at_a_budget_stop_are_kept_as_the_last_checkpoint_even_when_not_the_best(tmp_path):
    from napari_pixeldrl.model.checkpoint import read_header

    Trainer(tiny(epochs=1), discs(4), discs(2, 1), tmp_path).fit()
    best_before = (tmp_path / BEST).read_bytes()
    trainer = Trainer(tiny(epochs=1000, val_every=1000, time_budget_min=0.05), discs(4), discs(2, 1), tmp_path)
    trainer.validate = lambda: -1.0  # worse than any DICE: the best checkpoint must stay as it was
    result = trainer.fit(resume=True)
    assert result.reason == "time_budget" and (tmp_path / BEST).read_bytes() == best_before
    info = read_header(tmp_path / LAST)["info"]
    assert info["validated_at_stop"] is True and info["val_dice"] == -1.0 and info["epoch"] == result.epochs_done


def test_full_disk_while_saving_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    Trainer(tiny(epochs=1), discs(4), discs(2, 1), tmp_path).fit()
    before = {n: (tmp_path / n).read_bytes() for n in (LAST, STATE)}

    def full(tensors, filename, metadata=None):
        with open(filename, "wb") as fh:
            fh.write(b"\0" * 100)
        raise OSError(errno.ENOSPC, "No space left on device")

    import napari_pixeldrl.model.checkpoint as ck

    monkeypatch.setattr(ck, "save_file", full)
    monkeypatch.setattr(state_mod, "save_file", full)
    with pytest.raises(OSError):
        Trainer(tiny(epochs=2), discs(4), discs(2, 1), tmp_path).fit(resume=True)
    for name, data in before.items():
        assert (tmp_path / name).read_bytes() == data
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    load_checkpoint(tmp_path / LAST)


def test_unet_trains_through_the_same_trainer(tmp_path):
    cfg = tiny(preset="unet", model_overrides={"unet_base": 4}, epochs=1)
    result = Trainer(cfg, discs(4), discs(2, 1), tmp_path).fit()
    assert result.reason == "done" and 0 <= result.best_dice <= 1
    assert load_checkpoint(tmp_path / BEST).config.arch == "unet"


@pytest.mark.parametrize("preset", ["lite", "unet"])
def test_an_epoch_trains_under_autocast(tmp_path, monkeypatch, preset):
    # CUDA runs train under autocast (bf16, or fp16 with a scaler). No GPU here, so the same
    # code path runs under CPU bf16 autocast: it catches an op in the episode, the reward map
    # or the losses that breaks on low-precision inputs, though CPU and CUDA autocast keep
    # different op lists in fp32, and the fp16 + grad scaler path is not run.
    import torch

    monkeypatch.setattr(Trainer, "_mixed_precision", lambda self: (torch.bfloat16, None))
    overrides = {"unet_base": 4} if preset == "unet" else dict(TINY)
    trainer = Trainer(tiny(preset=preset, model_overrides=overrides, epochs=1), discs(4), discs(2, 1), tmp_path)
    conv_outputs = set()

    def record(module, inputs, output):
        if isinstance(module, torch.nn.Conv2d) and torch.is_grad_enabled():
            conv_outputs.add(output.dtype)

    hook = torch.nn.modules.module.register_module_forward_hook(record)
    try:
        result = trainer.fit()
    finally:
        hook.remove()
    assert trainer.amp_dtype is torch.bfloat16 and torch.bfloat16 in conv_outputs  # autocast was on
    assert result.reason == "done"
    row = result.history[0]
    assert np.isfinite(row["train_loss"]) and 0 <= row["val_dice"] <= 1


SMALL = dict(widths=(8, 16, 16, 32), head_widths=(16, 16), head_dilations=(1, 2), context_channels=16, fine_channels=8)


def test_training_on_discs_raises_validation_dice(tmp_path):
    # lite defaults (supervised weight 5); the run first dips towards all-zero, then learns.
    cfg = tiny(model_overrides=SMALL, epochs=24, t_max=3)
    result = Trainer(cfg, discs(16, 0), discs(6, 1), tmp_path).fit()
    dice = [row["val_dice"] for row in result.history]
    assert result.best_dice > 0.8 and dice[-1] > dice[0] + 0.3, dice
    keep = [row["train_keep_fraction"] for row in result.history]
    assert 0.05 < keep[-1] < 0.6  # neither the all-zero nor the all-keep policy


SCRIPT = """
import sys, time
sys.path.insert(0, {tests!r})
from _synthetic import TINY, discs
from napari_pixeldrl.training.events import EpisodeEvent
from napari_pixeldrl.training.train_config import TrainConfig
from napari_pixeldrl.training.trainer import Trainer
out, resume = sys.argv[1], sys.argv[2] == "1"
cfg = TrainConfig(preset="lite", model_overrides=dict(TINY), epochs=4, crop=None, t_max=2, progress=False, threads=1)
def cb(e):
    if isinstance(e, EpisodeEvent) and e.epoch == 3 and e.episode == 2 and not resume:
        open(out + "/MARK", "w").close()
        time.sleep(60)  # killed here, in the middle of epoch 3
r = Trainer(cfg, discs(8), discs(2, 1), out, callbacks=[cb]).fit(resume=resume)
print("RESULT", r.reason, r.epochs_done, [h["epoch"] for h in r.history])
"""


def test_kill_9_mid_epoch_then_resume(tmp_path):
    script = tmp_path / "run.py"
    script.write_text(SCRIPT.format(tests=str(HERE)))
    out = tmp_path / "run"
    out.mkdir()
    proc = subprocess.Popen([sys.executable, str(script), str(out), "0"])
    deadline = time.monotonic() + 120
    while not (out / "MARK").exists():
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.1)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    _, body = load_training_state(out / STATE)
    assert body["meta"]["epoch"] == 2
    done = subprocess.run([sys.executable, str(script), str(out), "1"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "RESULT done 4 [1, 2, 3, 4]" in done.stdout


def test_pure_pa3c_on_imbalanced_discs_learns_without_collapsing(tmp_path):
    # Supervised weight 0 (the paper preset's rule), discs of 3-9 % of the pixels. Before
    # reward_balance this fell to the all-zero policy (val DICE 0) within a few epochs.
    cfg = tiny(epochs=20, t_max=3, supervised_weight=0.0, lr_step_epochs=1000, threads=1)
    assert cfg.resolved("reward_balance") and cfg.resolved("live_pixels_only")  # the lite defaults
    train, val = discs(16, 0, radius=(6, 12)), discs(6, 1000, radius=(6, 12))
    trainer = Trainer(cfg, train, val, tmp_path)
    result = trainer.fit()
    dice = [row["val_dice"] for row in result.history]
    assert dice[-1] > 0.6 and dice[-1] > dice[0] + 0.3, dice
    from napari_pixeldrl.training.predict import predict_slices

    preds = predict_slices(trainer.net, trainer.model_config, val[0], t_max=3)
    obj = np.mean([p.mask[m != 0].mean() for p, m in zip(preds, val[1])])
    bg = np.mean([p.mask[m == 0].mean() for p, m in zip(preds, val[1])])
    assert obj > 0.5 > 0.2 > bg, (obj, bg)


def test_config_checks_and_old_configs_get_the_old_loss():
    from napari_pixeldrl.core.errors import InputError

    with pytest.raises(InputError, match="balance power"):
        Trainer(tiny(balance_power=-1.0), discs(2, 0), discs(1, 1), "unused")
    with pytest.raises(InputError, match="--supervised-weight"):
        Trainer(tiny(preset="paper", supervised_dice=True), discs(2, 0), discs(1, 1), "unused")
    saved = tiny().to_dict()
    for key in ("reward_balance", "live_pixels_only", "balance_power", "supervised_dice"):
        del saved[key]  # a run saved before these options existed
    old = TrainConfig.from_dict(saved)
    assert (old.reward_balance, old.live_pixels_only, old.balance_power, old.supervised_dice) == (False, False, 1.0, False)


def test_finetune_starts_without_the_base_models_postprocess_and_windows(tmp_path):
    from napari_pixeldrl.model.checkpoint import save_checkpoint
    from napari_pixeldrl.model.config import preset_config
    from napari_pixeldrl.model.network import build_model

    cfg = preset_config("lite", **TINY).replace(postprocess="largest-component", window=32)
    base = save_checkpoint(tmp_path / "base.safetensors", build_model(cfg), cfg)
    result = Trainer(tiny(epochs=1), discs(2, 0), discs(1, 1), tmp_path / "ft", init_checkpoint=base).fit()
    config = load_checkpoint(result.best_checkpoint).config
    assert (config.postprocess, config.window) == ("none", 0)


def _hand_average(steps: list[dict], decay: float) -> dict:
    """e_1 = w_1, e_k = d e_(k-1) + (1 - d) w_k over the floating-point tensors."""
    keys = [k for k, v in steps[0].items() if v.is_floating_point()]
    average = {k: steps[0][k].double() for k in keys}
    for step in steps[1:]:
        average = {k: decay * average[k] + (1 - decay) * step[k].double() for k in keys}
    return average


def _raw_weights_recorder(steps: list[dict], trainer_of):
    """A callback that keeps the raw weights after every episode of ``trainer_of()``."""

    def record(event):
        if isinstance(event, EpisodeEvent):
            steps.append({k: v.detach().clone() for k, v in trainer_of().net.state_dict().items()})

    return record


def _assert_weights(path, expected: dict) -> None:
    import torch
    from safetensors.torch import load_file

    saved = load_file(str(path))
    for k, v in expected.items():
        torch.testing.assert_close(saved[k].double(), v, rtol=1e-4, atol=1e-5, msg=k)


@pytest.mark.parametrize("preset", ["lite", "unet"])
def test_moving_average_is_what_is_validated_saved_and_resumed(tmp_path, preset):
    """With --ema-decay the saved weights are the moving average of the raw weights after
    each episode (computed here by hand), the raw weights are validated too, and a resumed
    run continues the same average."""
    import torch
    from safetensors.torch import load_file

    decay = 0.7
    raw_steps: list[dict] = []
    record = _raw_weights_recorder(raw_steps, lambda: trainer)
    kw = dict(ema_decay=decay, batch_size=1)
    if preset == "unet":
        kw.update(preset="unet", model_overrides={"unet_base": 4})
    trainer = Trainer(tiny(epochs=1, **kw), discs(3, 0), discs(2, 1), tmp_path, callbacks=[record])
    trainer.fit()
    trainer = Trainer(tiny(epochs=2, **kw), discs(3, 0), discs(2, 1), tmp_path, callbacks=[record])
    trainer.fit(resume=True)
    assert len(raw_steps) == 6
    by_epoch = [_hand_average(raw_steps[:3], decay), _hand_average(raw_steps, decay)]  # 3 episodes an epoch

    _assert_weights(tmp_path / LAST, by_epoch[1])
    best = load_checkpoint(tmp_path / BEST)
    _assert_weights(tmp_path / BEST, by_epoch[best.info["epoch"] - 1])
    saved = load_file(str(tmp_path / LAST))
    assert any(not torch.equal(saved[k], raw_steps[-1][k]) for k in by_epoch[1])  # not the raw weights
    _, body = load_training_state(tmp_path / STATE)
    assert int(body["averaged"]["n_averaged"]) == 6
    rows = [json.loads(line) for line in (tmp_path / METRICS).read_text().splitlines()]
    assert all(r["ema_decay"] == decay and 0.0 <= r["val_dice_raw"] <= 1.0 for r in rows)
    write_curve(rows, tmp_path / "again.png")  # the run's own drawing swallows errors; this one raises
    assert (tmp_path / "again.png").stat().st_size > 0


def test_moving_average_decay_is_checked():
    from napari_pixeldrl.core.errors import InputError

    for bad in (0.0, 1.0, 1.5, float("nan")):
        with pytest.raises(InputError, match="EMA decay"):
            Trainer(tiny(ema_decay=bad), discs(2, 0), discs(1, 1), "unused")


def test_moving_average_started_on_resume_and_saved_at_a_cancel(tmp_path):
    """Turned on when a run resumes, the average starts from the first episode after it; a
    run cancelled before any validation validates and saves the average as its best."""
    steps: list[dict] = []
    record = _raw_weights_recorder(steps, lambda: trainer)
    trainer = Trainer(tiny(epochs=1, batch_size=1), discs(3, 0), discs(2, 1), tmp_path, callbacks=[record])
    trainer.fit()
    trainer = Trainer(tiny(epochs=2, batch_size=1, ema_decay=0.6), discs(3, 0), discs(2, 1), tmp_path, callbacks=[record])
    trainer.fit(resume=True)
    _assert_weights(tmp_path / LAST, _hand_average(steps[3:], 0.6))

    steps.clear()

    def cancel_after_four(event):
        record(event)
        if len(steps) == 4:
            trainer.cancel.set()

    trainer = Trainer(tiny(epochs=5, batch_size=1, ema_decay=0.6), discs(6, 0), discs(2, 1), tmp_path / "c",
                      callbacks=[cancel_after_four])
    assert trainer.fit().reason == "cancelled"
    _assert_weights(tmp_path / "c" / BEST, _hand_average(steps, 0.6))


def test_moving_average_score_is_the_one_kept(tmp_path):
    """val_dice (which picks checkpoint_best) scores the average, val_dice_raw the raw weights."""

    class Scored(Trainer):
        def validate(self, net=None):
            net = self.validated_net if net is None else net
            return 0.9 if net is not self.net else 0.1

    Scored(tiny(epochs=2, batch_size=1, ema_decay=0.6), discs(3, 0), discs(2, 1), tmp_path).fit()
    rows = [json.loads(line) for line in (tmp_path / METRICS).read_text().splitlines()]
    assert [(r["val_dice"], r["val_dice_raw"]) for r in rows] == [(0.9, 0.1), (0.9, 0.1)]
    assert load_checkpoint(tmp_path / BEST).info["val_dice"] == 0.9


def test_validation_can_start_from_the_truths_boxes(tmp_path):
    # A model trained to refine a user's box keeps its best checkpoint from boxes: the episodes
    # start from each truth's bounding box grown by N pixels, as `evaluate --start-from box:N`.
    from napari_pixeldrl.training.metrics import overlap_metrics
    from napari_pixeldrl.training.predict import predict_slices
    from napari_pixeldrl.training.prompts import truth_box

    val = images, masks = discs(3, 1)
    Trainer(tiny(epochs=1, val_start_grow=2), discs(2, 0), val, tmp_path).fit()
    saved = load_checkpoint(tmp_path / LAST)

    def dice(starts):
        preds = predict_slices(saved.model, saved.config, images, t_max=3, start_masks=starts)
        return np.mean([overlap_metrics(p.mask != 0, m != 0)["dice"] for p, m in zip(preds, masks)])

    from_boxes, from_ones = dice([truth_box(m, 2) for m in masks]), dice(None)
    assert abs(from_boxes - from_ones) > 1e-3  # the two starts give different masks here
    assert saved.info["val_dice"] == pytest.approx(from_boxes)
    assert TrainConfig.from_dict(tiny(val_start_grow=2).to_dict()).val_start_grow == 2
    with pytest.raises(Exception, match="validation box margin"):
        Trainer(tiny(val_start_grow=-1), discs(2, 0), val, tmp_path / "c")
    # From boxes only the slices that hold the object count, as in `evaluate --start-from box:N`:
    # an empty box on an empty slice would score 1 for free.
    blank = [np.zeros_like(images[0])], [np.zeros_like(masks[0])]
    with_blank = Trainer(tiny(val_start_grow=2), discs(2, 0), (images + blank[0], masks + blank[1]), tmp_path / "d")
    with_blank.model_config, with_blank.t_max, with_blank.device = saved.config, 3, "cpu"  # as fit() sets them
    assert with_blank.validate(saved.model) == pytest.approx(from_boxes)
    with pytest.raises(Exception, match="none of the 1 does"):
        Trainer(tiny(val_start_grow=2), discs(2, 0), blank, tmp_path / "e")


def test_the_run_curve_leaves_the_processs_matplotlib_backend_alone(tmp_path):
    """write_curve draws on a bare Figure: a user who plots in napari's console after a
    training keeps the backend they had (matplotlib.use("Agg") would have switched it)."""
    import matplotlib
    from matplotlib import rcsetup

    before = matplotlib.rcParams._get_backend_or_none()
    matplotlib.rcParams["backend"] = "pdf"  # stands for whatever backend the user's session chose
    try:
        write_curve([{"epoch": 1, "train_loss": 1.0, "train_mean_reward": 0.5, "val_dice": 0.4}], tmp_path / "c.png")
        assert matplotlib.rcParams._get_backend_or_none() == "pdf"
    finally:
        matplotlib.rcParams["backend"] = before or rcsetup._auto_backend_sentinel
    assert (tmp_path / "c.png").read_bytes()[:4] == b"\x89PNG"
