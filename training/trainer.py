"""The trainer: PixelDRL-MG by PA3C (METHOD.md §2) or the U-Net baseline, one loop.

A run lives in a folder, its files named in run_folder.py.

``Trainer.run()`` is the run as a generator: it yields a typed event (events.py) at the
start, after every episode and every epoch, and at the end, and returns the
:class:`TrainResult`. The command line and the napari worker both drive it; ``fit()``
drains it for callers that only want the result. ``run(resume=True)`` continues a
killed run from its last finished epoch. Hooks (``on_start``, ``on_episode``,
``on_epoch``, ``on_end``) see each event before it is yielded and hand it to the
callbacks; ``trainer.cancel`` (a threading.Event) is checked before every episode.
Closing the generator stops the run there and releases its folder.
Under ``torchrun`` the objective is wrapped in DistributedDataParallel (gloo on CPU, NCCL
on GPUs); process 0 validates and writes the files.
"""

from __future__ import annotations

import copy
import json
import math
import os
import sys
import threading
import time
from pathlib import Path
from typing import Generator, Iterable

import numpy as np
import torch

from napari_pixeldrl.core.errors import CheckpointError, InputError
from napari_pixeldrl.core.atomic import atomic_write
from napari_pixeldrl.core.device import choose_device
from napari_pixeldrl.model.checkpoint import LoadedModel, load_checkpoint, read_header, save_checkpoint
from napari_pixeldrl.model.config import ModelConfig, preset_config
from napari_pixeldrl.model.network import build_model, count_parameters

from .initialisation import init_keep_bias, param_groups
from .loader import CropSettings, batches_per_epoch, epoch_batches
from .metrics import overlap_metrics
from .pa3c import PA3CObjective
from .predict import predict_slices
from .prompts import BOX_ZOOM_VAL_GROW, box_start_masks, object_slices
from .run_lock import RunFolderLock, remove_stale_temporaries
from .state import load_training_state, restore_rng, save_training_state
from .supervised import SupervisedObjective

from .events import Callback, EndEvent, EpisodeEvent, EpochEvent, StartEvent, TrainingDiverged, TrainResult, drive
from .run_folder import BEST, CONFIG, CURVE, LAST, METRICS, STATE, check_run_folder, write_curve
from .train_config import LOSS_OPTIONS, TrainConfig

class _Slices:
    """images/masks lists from a SliceSet, a (images, masks) pair, or None."""

    def __init__(self, data):
        if data is None:
            self.images, self.masks = [], []
        elif hasattr(data, "images"):
            self.images, self.masks = list(data.images), list(data.masks)
        else:
            self.images, self.masks = list(data[0]), list(data[1])
        if len(self.images) != len(self.masks):
            raise InputError(f"{len(self.images)} images but {len(self.masks)} masks")

    def __len__(self):
        return len(self.images)


# ------------------------------------------------------------------------- trainer


def leave_process_group() -> None:
    """Under torchrun, once the caller has dropped its Trainer: collect its objects, meet
    the other processes, and end the process group, so that no C++ object of the group
    outlives it at exit (which can abort the process)."""
    import gc

    import torch.distributed as dist

    gc.collect()
    dist.barrier()
    dist.destroy_process_group()


class Trainer:
    """``Trainer(config, train, val, out_dir).fit()``; subclass and override the hooks if needed."""

    def __init__(
        self,
        config: TrainConfig,
        train,
        val,
        out_dir,
        *,
        callbacks: Iterable[Callback] = (),
        init_checkpoint=None,
    ):
        self.config = config
        self.train_data = _Slices(train)
        self.val_data = _Slices(val)
        if len(self.train_data) == 0:
            raise InputError("no training slices")
        config.check()
        self._validation = self._validation_slices()
        self.out_dir = Path(out_dir)
        self.callbacks: list[Callback] = list(callbacks)
        self.init_checkpoint = init_checkpoint
        self.cancel = threading.Event()
        self.rank, self.world_size = 0, 1
        self.history: list[dict] = []
        self.best_dice, self.best_epoch = -1.0, 0
        self._val_seconds = self._val_cpu_seconds = 0.0  # the last validation's, reserved for the one at a stop
        self._cpu_started = time.process_time()
        self._unvalidated_episodes = 0  # trained since the last validation (for the stop below)
        self._stop_val_dice: float | None = None

    # ---------------------------------------------------------------- hooks
    @staticmethod
    def _hook(hook, event):
        """Call ``hook`` with ``event`` and hand the event on (to be yielded)."""
        hook(event)
        return event

    def emit(self, event) -> None:
        if self.rank != 0:
            return
        for cb in self.callbacks:
            cb(event)

    def on_start(self, event: StartEvent) -> None:
        self.emit(event)

    def on_episode(self, event: EpisodeEvent) -> None:
        self.emit(event)

    def on_epoch(self, event: EpochEvent) -> None:
        self.emit(event)

    def on_end(self, event: EndEvent) -> None:
        self.emit(event)

    # ---------------------------------------------------------------- setup
    def _setup_distributed(self) -> None:
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:
            import torch.distributed as dist

            if not dist.is_initialized():
                backend = "nccl" if self.device.type == "cuda" else "gloo"
                dist.init_process_group(backend)
            self.rank, self.world_size = dist.get_rank(), dist.get_world_size()

    def _pick_device(self) -> torch.device:
        device = torch.device(choose_device(self.config.device))
        if device.type == "cuda":
            torch.cuda.set_device(device)
        return device

    def _build(self) -> None:
        c = self.config
        in_ch = int(self.train_data.images[0].shape[0])
        if self.init_checkpoint is not None:
            # A model handed over in memory (the plugin's) is copied: training must not
            # change the model the caller still holds.
            init = self.init_checkpoint
            loaded = (LoadedModel(copy.deepcopy(init.model), init.config, init.info, init.path)
                      if isinstance(init, LoadedModel) else load_checkpoint(init))
            if loaded.config.in_channels != in_ch:
                raise InputError(
                    f"the checkpoint's model takes {loaded.config.in_channels} channel(s), the data has {in_ch}"
                )
            # The base model's post-processing and windows were chosen for its own data: the new
            # model validates (and picks its best epoch) on raw whole-slice masks and gets its own
            # choices later.
            self.model_config, self.net = loaded.config.replace(postprocess="none", window=0), loaded.model
        else:
            self.model_config = preset_config(c.preset, in_channels=in_ch, **c.model_overrides)
            self.net = build_model(self.model_config)
            keep = c.resolved("keep_init")
            if keep != "random" and self.model_config.arch == "pixeldrl":
                init_keep_bias(self.net, keep)
        self.net.to(self.device).train()
        self.ema = None
        if c.ema_decay is not None:
            from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

            # use_buffers: the U-Net's batch-norm statistics are averaged with the weights
            # (its integer num_batches_tracked lags; unused with the default momentum).
            self.ema = AveragedModel(self.net, multi_avg_fn=get_ema_multi_avg_fn(c.ema_decay), use_buffers=True)
        mc = self.model_config
        if mc.box_zoom:
            self._keep_boxed_slices()
        self.t_max = int(mc.t_max if c.t_max is None else c.t_max)
        self.gamma = float(mc.gamma if c.gamma is None else c.gamma)
        if mc.arch == "unet":
            self.objective = SupervisedObjective(self.net)
        else:
            self.objective = PA3CObjective(self.net, t_max=self.t_max, gamma=self.gamma, **c.pa3c_options())
        self.optimizer = torch.optim.Adam(param_groups(self.net, c.lr, c.resolved("reward_conv_lr_scale")), lr=c.lr)
        self.scheduler = torch.optim.lr_scheduler.StepLR(self.optimizer, step_size=c.lr_step_epochs, gamma=c.lr_decay)
        self.amp_dtype, self.scaler = self._mixed_precision()
        self.step_module = self.objective
        if self.world_size > 1:
            from torch.nn.parallel import DistributedDataParallel as DDP

            ids = [self.device.index] if self.device.type == "cuda" else None
            self.step_module = DDP(self.objective, device_ids=ids)

    def _mixed_precision(self):
        """(autocast dtype or None, grad scaler or None): bf16 on CUDA where supported, else
        fp16 with a scaler (fp16 gradients underflow without one); full precision on CPU."""
        if self.device.type != "cuda" or not self.config.amp:
            return None, None
        if torch.cuda.is_bf16_supported():
            return torch.bfloat16, None
        return torch.float16, torch.amp.GradScaler("cuda")

    # ---------------------------------------------------------------- files
    def _checkpoint_info(self, epoch: int, val_dice) -> dict:
        return {"train": self.config.to_dict(), "epoch": epoch, "val_dice": val_dice, "data": self.config.data}

    def _checkpoint_config(self) -> ModelConfig:
        """The model config a best/last checkpoint carries: the episode length it was trained
        and validated with, so that inference runs the same steps by default (a model trained
        with --t-max 1 has untrained steps 2..10). The run's own state keeps the config it
        started from, so resuming is unchanged."""
        if self.model_config.arch == "unet":
            return self.model_config
        return self.model_config.replace(t_max=self.t_max)

    def _write_config(self) -> None:
        body = {"train": self.config.to_dict(), "model": self.model_config.to_dict(), "parameters": count_parameters(self.net)}
        text = json.dumps(body, indent=2)
        atomic_write(self.out_dir / CONFIG, lambda tmp: Path(tmp).write_text(text))

    def _write_metrics(self) -> None:
        text = "".join(json.dumps(row) + "\n" for row in self.history)
        atomic_write(self.out_dir / METRICS, lambda tmp: Path(tmp).write_text(text))

    def _write_curve(self) -> None:
        try:
            write_curve(self.history, self.out_dir / CURVE)
        except Exception as err:  # a plot must never stop training
            print(f"warning: could not draw the learning curve ({err})", file=sys.stderr)

    def _save_state(self, epoch: int) -> None:
        meta = {
            "epoch": epoch,
            "best_dice": self.best_dice,
            "best_epoch": self.best_epoch,
            "history": self.history,
            "train": self.config.to_dict(),
            "model": self.model_config.to_dict(),
        }
        save_training_state(
            self.out_dir / STATE, model=self.net, optimizer=self.optimizer, scheduler=self.scheduler, scaler=self.scaler,
            meta=meta, averaged=self.ema,
        )

    def _resume(self) -> int:
        path = self.out_dir / STATE
        if not path.exists():
            return 0
        model_state, body = load_training_state(path)
        meta = body["meta"]
        saved = ModelConfig.from_dict(meta["model"])
        if saved != self.model_config:
            raise CheckpointError(f"{path} was written for another model config; cannot resume with this one")
        self.net.load_state_dict(model_state)
        self.optimizer.load_state_dict(body["optimizer"])
        self.scheduler.load_state_dict(body["scheduler"])
        self._apply_learning_rate()
        if self.scaler is not None and body.get("scaler"):
            self.scaler.load_state_dict(body["scaler"])
        restore_rng(body["rng"])
        # A run resumed with the average newly on starts it from the current weights (the
        # first update copies them); one resumed with it off drops the saved average.
        if self.ema is not None and body.get("averaged"):
            self.ema.load_state_dict(body["averaged"])
        self.history = list(meta["history"])
        self.best_dice, self.best_epoch = float(meta["best_dice"]), int(meta["best_epoch"])
        # checkpoint_best may be newer than the state if the run died between the two writes.
        best = self.out_dir / BEST
        if best.exists():
            try:
                info = read_header(best).get("info", {})
                if info.get("val_dice") is not None and float(info["val_dice"]) > self.best_dice:
                    self.best_dice, self.best_epoch = float(info["val_dice"]), int(info["epoch"])
            except CheckpointError:
                pass
        return int(meta["epoch"])

    def _apply_learning_rate(self) -> None:
        """A resumed run takes the config's learning rates where they differ from those the
        run started with (``--lr`` or ``--reward-conv-lr-scale`` on ``--resume``, e.g. a lower
        rate for the last epochs): each group's rate and its place in the step schedule are
        scaled alike. Without it, the saved optimizer's rates would silently win."""
        groups = param_groups(self.net, self.config.lr, self.config.resolved("reward_conv_lr_scale"))
        wanted = [g.get("lr", self.config.lr) for g in groups]
        started = list(self.scheduler.base_lrs)  # one per group: the saved optimizer was built by param_groups too
        factors = [w / s for w, s in zip(wanted, started)]
        if all(abs(f - 1.0) < 1e-9 for f in factors):
            return
        for group, factor in zip(self.optimizer.param_groups, factors):
            group["lr"] *= factor
            group["initial_lr"] *= factor
        self.scheduler.base_lrs = [lr * f for lr, f in zip(started, factors)]
        self.scheduler._last_lr = [g["lr"] for g in self.optimizer.param_groups]
        if self.rank == 0:
            changes = [f"base learning rate {started[0]:g} -> {wanted[0]:g}"] if abs(factors[0] - 1.0) >= 1e-9 else []
            now = f"{self.optimizer.param_groups[0]['lr']:g}"
            if len(factors) > 1 and abs(factors[1] - factors[0]) >= 1e-9:
                changes.append(f"reward filter's learning rate {started[1]:g} -> {wanted[1]:g}")
                now += f" (reward filter {self.optimizer.param_groups[1]['lr']:g})"
            print(f"note: {'; '.join(changes)}; now {now} after the step decay so far", file=sys.stderr)

    def _keep_boxed_slices(self) -> None:
        """A box_zoom model learns inside the truth's box: it trains on the slices that hold
        the object and is validated from boxes (every episode starts from one; grown by
        BOX_ZOOM_VAL_GROW pixels unless the config says)."""
        c = self.config
        if c.val_start_grow is None:
            c.val_start_grow = BOX_ZOOM_VAL_GROW
            self._validation = self._validation_slices()
        if c.start_boxes:
            raise InputError("--start-boxes does nothing for a box_zoom model: every episode starts from the box it was "
                             "cut from; leave it out")
        if c.scale_jitter:
            raise InputError("--scale-jitter does nothing for a box_zoom model: its crops are the truth's box resized to "
                             "one size, whatever the zoom; leave it out")
        keep = object_slices(self.train_data.masks)
        if not keep:
            raise InputError("a box_zoom model trains on slices that hold the object, and none of the training slices does")
        self.train_data.images = [self.train_data.images[i] for i in keep]
        self.train_data.masks = [self.train_data.masks[i] for i in keep]

    # ---------------------------------------------------------------- validation
    @property
    def validated_net(self) -> torch.nn.Module:
        """The weights that are validated and saved: the moving average when it is on and
        has started (before its first update it is a copy of the weights it was built from,
        which a resume has since replaced)."""
        if self.ema is None or int(self.ema.n_averaged) == 0:
            return self.net
        return self.ema.module

    def _validation_slices(self) -> tuple[list, list, list | None]:
        """The slices :meth:`validate` scores and their start masks (None: all ones). From boxes
        only the slices that hold the object count, as in ``evaluate --start-from box:N``: a user
        boxes an object that is there, and an empty box on an empty slice would score 1 for free."""
        data = self.val_data if len(self.val_data) else self.train_data
        n = len(data) if self.config.val_max_slices is None else min(len(data), self.config.val_max_slices)
        images, masks, grow = data.images[:n], data.masks[:n], self.config.val_start_grow
        if grow is None:
            return images, masks, None
        keep = object_slices(masks)
        if not keep:
            instead = ("validate from all ones (--val-start ones), or, for a box model (validated from boxes only), "
                       "on more slices (--val-max-slices) or another split")
            raise InputError(f"--val-start box:{grow} scores the validation slices that hold the object, and none of "
                             f"the {n} does; {instead}")
        masks = [masks[i] for i in keep]
        return [images[i] for i in keep], masks, box_start_masks(masks, grow)

    def validate(self, net: torch.nn.Module | None = None) -> float:
        """Mean DICE over the validation slices (whole slices, argmax episodes from all ones, or
        from the truth's boxes with ``val_start_grow``) of ``net`` (default :attr:`validated_net`)."""
        images, masks, starts = self._validation
        net = self.validated_net if net is None else net
        preds = predict_slices(net, self.model_config, images, t_max=self.t_max, device=self.device, start_masks=starts)
        dice = [overlap_metrics(p.mask != 0, m != 0)["dice"] for p, m in zip(preds, masks)]
        return float(np.mean(dice))

    # ---------------------------------------------------------------- the loop
    def _stop_requested(self, started: float) -> str | None:
        reason = None
        if self.cancel.is_set():
            reason = "cancelled"
        elif self.config.time_budget_min is not None and (
                time.monotonic() - started + self._val_seconds >= self.config.time_budget_min * 60):
            reason = "time_budget"
        elif self.config.cpu_budget_min is not None and (
                time.process_time() - self._cpu_started + self._val_cpu_seconds >= self.config.cpu_budget_min * 60):
            reason = "time_budget"
        if self.world_size > 1:
            import torch.distributed as dist

            # On the run's device: NCCL reduces CUDA tensors only.
            code = torch.tensor([{None: 0, "time_budget": 1, "cancelled": 2}[reason]], device=self.device)
            dist.all_reduce(code, op=dist.ReduceOp.MAX)
            reason = {0: None, 1: "time_budget", 2: "cancelled"}[int(code)]
        return reason

    def _diverged(self, loss: float) -> bool:
        """Whether the batch's loss is NaN or infinite, on any process: under torchrun all of
        them stop together (one that stopped alone would leave the others waiting in the
        gradients' all-reduce)."""
        bad = not math.isfinite(loss)
        if self.world_size > 1:
            import torch.distributed as dist

            flag = torch.tensor([float(bad)], device=self.device)
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
            bad = bool(flag.item() > 0)
        return bad

    def _barrier(self) -> None:
        if self.world_size > 1:
            import torch.distributed as dist

            dist.barrier()

    def fit(self, resume: bool = False) -> TrainResult:
        """Train to the end and return the result (``run`` without looking at its events)."""
        return drive(self.run(resume))

    def run(self, resume: bool = False) -> Generator[object, None, TrainResult]:
        """Train, yielding StartEvent, EpisodeEvent, EpochEvent and EndEvent as they happen;
        returns the TrainResult. With ``resume`` continue the run in the folder. The folder
        is locked until the generator ends or is closed (process 0): a second run on it is
        refused (run_lock.py)."""
        self._lock = None
        try:
            return (yield from self._run(resume))
        finally:
            if self._lock is not None:
                self._lock.release()
                self._lock = None

    def _check_folder(self, resume: bool) -> None:
        """The run-folder rule (run_folder.check_run_folder), now that the folder is locked."""
        remove_stale_temporaries(self.out_dir)  # safe: the folder is locked
        check_run_folder(self.out_dir, resume)

    def _run(self, resume: bool) -> Generator[object, None, TrainResult]:
        c = self.config
        started = time.monotonic()
        self._cpu_started = time.process_time()
        if c.threads:
            torch.set_num_threads(int(c.threads))
        self.device = self._pick_device()
        self._setup_distributed()
        if self.rank == 0:  # the process that writes the folder holds it
            self._lock = RunFolderLock(self.out_dir).acquire()
        torch.manual_seed(c.seed)  # same initial weights on every process
        self._build()
        if self.rank == 0:
            self._check_folder(resume)
        start_epoch = self._resume() if resume else 0
        if self.rank == 0:
            self._write_config()
            yield self._hook(self.on_start, StartEvent(self.out_dir, start_epoch))
        n_batches = batches_per_epoch(len(self.train_data), c.batch_size, self.world_size)
        settings = CropSettings.of(c, box_zoom=self.model_config.box_zoom)
        bar = None
        if c.progress and self.rank == 0:
            from tqdm import tqdm

            bar = tqdm(total=c.epochs * n_batches, initial=start_epoch * n_batches, unit="ep", dynamic_ncols=True, file=sys.stderr)
            bar.set_description("episodes")
        reason = "done"
        epochs_done = start_epoch  # stays there when no epoch is left to run
        try:
            for epoch in range(start_epoch, c.epochs):
                reason = yield from self._train_epoch(epoch, n_batches, settings, started, bar)
                if reason != "done":
                    break
                epochs_done = epoch + 1
        finally:
            if bar is not None:
                bar.close()
        if self.rank == 0:
            self._validate_at_stop(reason, epochs_done)
        self._barrier()
        # Drop the DDP wrapper now: one that outlives the caller's destroy_process_group()
        # can abort the process at exit ("terminate called without an active exception").
        self.step_module = self.objective
        # Emitted while this run still holds its folder, so what a callback writes there is the run's.
        yield self._hook(self.on_end, EndEvent(reason, epochs_done, self.best_dice, self.best_epoch, self.out_dir,
                                               self._stop_val_dice))
        return TrainResult(reason, epochs_done, self.best_dice, self.best_epoch, self.out_dir, list(self.history),
                           self._stop_val_dice)

    def _validate_at_stop(self, reason: str, epochs_done: int) -> None:
        """A run stopped before any validation still leaves a usable best checkpoint. At a
        time-budget stop the weights trained since the last validation (a partial epoch,
        epochs skipped by ``val_every``) are validated too: the budget reserved the time.
        They also become checkpoint_last, so that the weights a budget paid for are in a file
        whether or not they validate best (a later stage may start from them)."""
        no_best = not (self.out_dir / BEST).exists()
        unvalidated = reason == "time_budget" and self._unvalidated_episodes > 0
        if reason == "done" or not (no_best or unvalidated):
            return
        dice = self._stop_val_dice = self.validate()
        self._unvalidated_episodes = 0
        info = {**self._checkpoint_info(epochs_done, dice), "validated_at_stop": True}
        if unvalidated:
            save_checkpoint(self.out_dir / LAST, self.validated_net, self._checkpoint_config(), info)
        if no_best or dice > self.best_dice:
            self.best_dice, self.best_epoch = dice, epochs_done
            save_checkpoint(self.out_dir / BEST, self.validated_net, self._checkpoint_config(), info)

    def _train_epoch(self, epoch: int, n_batches: int, settings: CropSettings, started: float, bar) -> Generator[object, None, str]:
        c = self.config
        t0, t0_cpu = time.monotonic(), time.process_time()
        self.net.train()
        gen = torch.Generator(device=self.device).manual_seed(int(c.seed) * 1_000_003 + epoch * 101 + self.rank)
        sums: dict[str, float] = {}
        count = 0
        batches = epoch_batches(
            self.train_data.images,
            self.train_data.masks,
            batch_size=c.batch_size,
            settings=settings,
            seed=c.seed,
            epoch=epoch,
            rank=self.rank,
            world_size=self.world_size,
        )
        for episode, (x, y) in enumerate(batches, start=1):
            reason = self._stop_requested(started)
            if reason:
                return reason
            x = torch.from_numpy(x).to(self.device)
            y = torch.from_numpy(y).to(self.device)
            self.optimizer.zero_grad(set_to_none=True)
            with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None):
                loss, stats = self.step_module(x, y, gen)
            if self._diverged(stats.loss):
                # Before the step: the weights stay those the last finished epoch saved.
                kept = f"; the last saved weights are in {self.out_dir / LAST}" if (self.out_dir / LAST).exists() else ""
                where = "" if self.world_size == 1 else " on at least one process"
                raise TrainingDiverged(
                    f"training diverged at epoch {epoch + 1}, episode {episode}: the loss is not finite{where} "
                    f"(here {stats.loss}){kept}. "
                    "Resume with a lower --lr, fine-tune from that checkpoint into another --out, "
                    "or check the loss weights")
            if self.scaler is not None:
                self.scaler.scale(loss).backward()
                self.scaler.step(self.optimizer)
                self.scaler.update()
            else:
                loss.backward()
                self.optimizer.step()
            if self.ema is not None:
                self.ema.update_parameters(self.net)
            self._unvalidated_episodes += 1
            for k, v in stats.as_dict().items():
                sums[k] = sums.get(k, 0.0) + v
            count += 1
            lr = self.optimizer.param_groups[0]["lr"]
            if bar is not None:
                bar.update(1)
                bar.set_postfix(epoch=epoch + 1, loss=f"{stats.loss:.3f}", R=f"{stats.mean_reward:.3f}", keep=f"{stats.keep_fraction:.2f}", best=f"{max(self.best_dice, 0):.3f}")
            yield self._hook(self.on_episode, EpisodeEvent(epoch + 1, episode, n_batches, stats, lr, time.monotonic() - started))
        lr = self.optimizer.param_groups[0]["lr"]
        self.scheduler.step()
        train = {k: v / max(count, 1) for k, v in sums.items()}
        val_dice, val_raw, is_best = None, None, False
        number = epoch + 1
        if self.rank == 0:
            if number % max(1, c.val_every) == 0 or number == c.epochs:
                v0, v0_cpu = time.monotonic(), time.process_time()
                val_dice = self.validate()
                if self.ema is not None:
                    val_raw = self.validate(self.net)
                self._val_seconds = time.monotonic() - v0
                self._val_cpu_seconds = time.process_time() - v0_cpu
                self._unvalidated_episodes = 0
                if val_dice > self.best_dice:
                    is_best = True
                    self.best_dice, self.best_epoch = val_dice, number
                    save_checkpoint(self.out_dir / BEST, self.validated_net, self._checkpoint_config(), self._checkpoint_info(number, val_dice))
            seconds = time.monotonic() - t0
            row = {"epoch": number, **{f"train_{k}": v for k, v in train.items()}, "val_dice": val_dice, "best_dice": self.best_dice, "lr": lr, "seconds": seconds,
                   "cpu_seconds": time.process_time() - t0_cpu,
                   "base_lr": c.lr}  # the rate the step schedule decays from; --lr on --resume changes it
            if self.ema is not None:
                row["val_dice_raw"] = val_raw
                row["ema_decay"] = c.ema_decay
            if self.model_config.arch != "unet":
                # A run resumed with other loss options (a staged run) shows which epochs had which.
                row["objective"] = {k: c.resolved(k) for k in (*LOSS_OPTIONS, "supervised_weight")}
            self.history.append(row)
            save_checkpoint(self.out_dir / LAST, self.validated_net, self._checkpoint_config(), self._checkpoint_info(number, val_dice))
            self._save_state(number)
            self._write_metrics()
            self._write_curve()
            yield self._hook(self.on_epoch, EpochEvent(number, c.epochs, train, val_dice, self.best_dice, self.best_epoch,
                                                       is_best, lr, seconds, time.monotonic() - started))
        self._barrier()
        return "done"
