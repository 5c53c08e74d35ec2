"""``pixeldrl train``, ``pixeldrl finetune`` and ``pixeldrl evaluate``.

``add_train_commands(subparsers)`` registers the three subcommands on the main CLI's
argparse subparsers; each sets ``func`` to its handler (``handler(args) -> exit code``).
``python -m napari_pixeldrl.training.cli_train ...`` runs them standalone (and under
``torchrun --nproc_per_node N`` for DistributedDataParallel).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

from napari_pixeldrl.core.device import choose_device
from napari_pixeldrl.core.errors import InputError, PixelDRLError
from napari_pixeldrl.model.config import NORMS, SAM_AXES
from napari_pixeldrl.training.data.splits import select_split

DATASETS = ("lgg", "msd", "hecktor", "folder")
COMMANDS = "commands.jsonl"  # in a run folder: one line per train/finetune command that ran there


def add_inference_options(p) -> None:
    from napari_pixeldrl.model.postprocess import CHOICES

    p.add_argument("--postprocess", choices=CHOICES, default="auto",
                   help="post-processing of the final mask (default auto: the one stored in the checkpoint)")
    p.add_argument("--window", default="auto", metavar="auto|0|N",
                   help="slices larger than N pixels run as half-overlapping N x N windows, blended (N: the "
                        "training crop); 0: whole slices (default auto: the one stored in the checkpoint)")
    p.add_argument("--keep-threshold", default="auto", metavar="auto|P",
                   help="keep a pixel when pi(keep) (a U-Net's sigmoid) > P; 0.5 is the argmax (default auto: the "
                        "one stored in the checkpoint, chosen on validation)")


def inference_config(config, args):
    """The checkpoint's model config with the command's --postprocess, --window and
    --keep-threshold applied."""
    from napari_pixeldrl.model.postprocess import with_postprocess
    from napari_pixeldrl.model.threshold import with_keep_threshold
    from napari_pixeldrl.model.window import with_window

    return with_keep_threshold(with_window(with_postprocess(config, args.postprocess), args.window), args.keep_threshold)


# ----------------------------------------------------------------------------- data


def _load(kind: str, path, label=None):
    from napari_pixeldrl.training.data import load_dataset

    return load_dataset(kind, path, label=label)


# ----------------------------------------------------------------------------- options


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", choices=DATASETS, help="dataset layout")
    p.add_argument("--data", type=Path, help="dataset folder")
    p.add_argument("--label", type=int, default=None, help="object label in multi-label masks")
    p.add_argument("--split-by", choices=("patient", "slice"), default="patient")
    p.add_argument("--fold", type=int, default=None, help="k-fold CV: use this fold as test (0-based)")
    p.add_argument("--val-fold", type=int, default=None,
                   help="cross-validation on the development patients: the default split's test patients stay out, "
                        "the others are divided into --folds folds and this one validates (0-based)")
    p.add_argument("--folds", type=int, default=None, help="folds of --fold or --val-fold (default 5; evaluate: the run's)")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the split into train/val/test (and, in training without --train-seed, of the "
                        "training's randomness)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")


def _train_options(p: argparse.ArgumentParser, finetune: bool) -> None:
    _common(p)
    p.add_argument("--train-seed", type=int, default=None, metavar="N",
                   help="seed of the training's own randomness (initial weights, crops, sampled actions) "
                        "without changing the split, which --seed draws (default: --seed)")
    if finetune:
        p.add_argument("--checkpoint", required=True, help="start from this checkpoint (.safetensors, a bioimage.io .zip or a bundled name)")
    else:
        p.add_argument("--preset", default=None, help="paper | lite | unet (default lite)")
        # The paper's Table 3 switches; a fine-tuned model keeps its checkpoint's architecture.
        p.add_argument("--sam", action=argparse.BooleanOptionalAction, default=None,
                       help="self-attention module on conv4_3 (default on; --no-sam for the ablation)")
        p.add_argument("--dilation", action=argparse.BooleanOptionalAction, default=None,
                       help="dilated convolutions in the extractor and heads (default on; --no-dilation for the ablation)")
        p.add_argument("--shared-head", action=argparse.BooleanOptionalAction, default=None,
                       help="one head body for the policy and the value (three outputs) instead of two: half the "
                            "heads' cost per step (default off; not in the paper)")
        p.add_argument("--extractor-norm", choices=NORMS, default=None,
                       help="normalisation after each extractor convolution (default none, as VGG16; not in the paper)")
        p.add_argument("--state-prototypes", action=argparse.BooleanOptionalAction, default=None,
                       help="lite heads: also see each pixel's similarity to the mean features inside and outside "
                            "m(t), a cheap view of the state (default off; not in the paper)")
        p.add_argument("--first-step-head", action=argparse.BooleanOptionalAction, default=None,
                       help="lite shared head: step 1 runs a head of its own, the later steps the shared one "
                            "(default off; not in the paper)")
        p.add_argument("--prompt-channel", action=argparse.BooleanOptionalAction, default=None,
                       help="lite: the extractor also sees m(0), the episode's start mask (a user's box; all ones "
                            "without one), so train it with --start-boxes (default off; not in the paper)")
        p.add_argument("--box-zoom", type=int, default=None, metavar="S",
                       help="segment inside a user's box: train on the truth's box (grown at random) resized to S x S, "
                            "validate from boxes (--val-start, default box:10); the model then needs a start mask "
                            "(default 0: whole slices; not in the paper)")
        p.add_argument("--sam-axis", choices=SAM_AXES, default=None,
                       help="the self-attention's softmax axis: spatial (per channel over the image, default) or "
                            "channel (per pixel, so a pixel's output does not depend on the image's size)")
        p.add_argument("--head-norm", choices=NORMS, default=None,
                       help="lite heads: normalisation after each head convolution (default none; not in the paper)")
        p.add_argument("--fine-decoder", type=int, default=None, metavar="CHANNELS",
                       help="lite heads: a small decoder of this width at full resolution (ReLU, 3x3, ReLU, 1x1) "
                            "instead of one linear 3x3 layer (default 0: none; not in the paper)")
    p.add_argument("--out", type=Path, required=True, help="run folder")
    p.add_argument("--epochs", type=int, default=None, help="default 200")
    p.add_argument("--time-budget", type=float, default=None, metavar="MINUTES", help="stop cleanly after this long (the weights trained since the last validation are validated at the stop and kept if best)")
    p.add_argument("--cpu-budget", type=float, default=None, metavar="MINUTES",
                   help="stop cleanly after this much CPU time of the process (all threads together): a budget that "
                        "other work on the machine does not change, for comparisons under the same budget")
    p.add_argument("--n-shot", type=int, default=None, help="train on N slices of the training split")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--crop", type=int, default=None, help="training crop side (0: whole slices; default 128, or for finetune the checkpoint's)")
    p.add_argument("--no-augment", action="store_true")
    p.add_argument("--scale-jitter", type=float, default=None, metavar="S",
                   help="augmentation: zoom each training slice about its centre by a factor in [1 - S, 1 + S] "
                        "(p = 0.5; default 0: off)")
    p.add_argument("--gamma-jitter", type=float, default=None, metavar="G",
                   help="augmentation: raise each training slice's intensities to a power in [1 / (1 + G), 1 + G] "
                        "(p = 0.5; default 0: off)")
    p.add_argument("--t-max", type=int, default=None)
    p.add_argument("--value-weight", type=float, default=None, help="c_v (default 1)")
    p.add_argument("--supervised-weight", type=float, default=None, help="BCE on pi(keep) (paper 0, lite 5)")
    p.add_argument("--keep-init", default=None, metavar="P|random",
                   help="start pi(keep) near P (bias, output weights x0.1) or keep PyTorch's initialisation "
                        "(default random)")
    p.add_argument("--reward-conv-lr-scale", type=float, default=None, metavar="S",
                   help="learning rate of the reward-map filter = lr x S (lite 1/1089, paper 1)")
    p.add_argument("--coarse-to-fine", type=int, default=None, metavar="PIXELS",
                   help="step t's target is the truth dilated by PIXELS (t_max - t) / (t_max - 1), in its reward and "
                        "supervised term: the first steps remove far background, the last settle the boundary "
                        "(default 0: off; not in the paper)")
    p.add_argument("--coarse-first", type=int, default=None, metavar="PIXELS",
                   help="step 1's target is the truth dilated by PIXELS, the later steps' the truth: the first step "
                        "keeps a margin that the later ones, seeing m(1), trim (default 0: off; not in the paper)")
    p.add_argument("--first-step-recall", type=float, default=None, metavar="K",
                   help="weigh step 1's object pixels K times more in its reward and supervised term: step 1 keeps "
                        "what it is unsure of and the later steps, seeing m(1), decide it (default 1: off; not in the "
                        "paper)")
    p.add_argument("--start-boxes", type=float, default=None, metavar="P",
                   help="start each training episode, with probability P, from the truth's bounding box grown by "
                        "0-20 pixels instead of all ones, so that the agents learn to refine a user's box "
                        "(default 0; not in the paper)")
    p.add_argument("--supervised-steps", choices=("every", "last"), default=None,
                   help="put the supervised term on every step's pi(keep) (default) or on the last step only, "
                        "so that the earlier steps learn from the reward alone (not in the paper)")
    p.add_argument("--live-mean", choices=("live", "all"), default=None,
                   help="with --live-pixels-only, average a step's policy, value and entropy terms over its live "
                        "pixels (default) or over all pixels, a dead one counting 0, so that each live pixel of a "
                        "later step weighs as much as one of step 1 (not in the paper)")
    p.add_argument("--reward-balance", action=argparse.BooleanOptionalAction, default=None,
                   help="weigh each pixel's reward by its class's fraction of the training crop to the power -balance-power (lite on, paper off)")
    p.add_argument("--balance-power", type=float, default=None,
                   help="reward weight per class = fraction^-power (1: fully balanced, 0.5: softer; lite 0.5, paper 1)")
    p.add_argument("--supervised-dice", action=argparse.BooleanOptionalAction, default=None,
                   help="add soft Dice on pi(keep) to the supervised BCE (lite on, paper off)")
    p.add_argument("--live-pixels-only", action=argparse.BooleanOptionalAction, default=None,
                   help="policy, entropy and value terms over the pixels not yet zeroed (lite on, paper off)")
    p.add_argument("--ema-decay", type=float, default=None, metavar="DECAY",
                   help="validate and save a moving average of the weights, updated every episode with this decay "
                        "(e.g. 0.995; default off; 0 turns it off on --resume); the raw weights are validated "
                        "and logged too, which doubles the validation time")
    p.add_argument("--val-max-slices", type=int, default=None)
    p.add_argument("--val-every", type=int, default=None, metavar="EPOCHS",
                   help="validate every N epochs (default 1; few-shot epochs are short, validation is not)")
    p.add_argument("--val-start", default=None, metavar="ones|box:N",
                   help="start the validation episodes from all ones (default) or from the truth's bounding box "
                        "grown by N pixels, scored on the slices that hold the object, so that the best checkpoint of a "
                        "model trained to refine a user's box (--start-boxes) is chosen from boxes (not in the paper)")
    p.add_argument("--no-amp", action="store_true", help="no autocast on CUDA")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--resume", action="store_true", help="continue the run in --out where it stopped (with --lr: that base learning rate from here on; the step decay so far still applies)")


def add_train_commands(subparsers) -> None:
    p = subparsers.add_parser("train", help="train PixelDRL-MG (PA3C) or the U-Net baseline")
    _train_options(p, finetune=False)
    p.set_defaults(func=cmd_train)
    p = subparsers.add_parser("finetune", help="continue training from a checkpoint on new data")
    _train_options(p, finetune=True)
    p.set_defaults(func=cmd_train)
    p = subparsers.add_parser("evaluate", help="metrics of a checkpoint (Table 2, Fig. 7, Fig. 4)")
    _common(p)
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--split", choices=("test", "val", "train", "all"), default="test")
    p.add_argument("--out", type=Path, default=None, help="report folder (default: eval_<model>_<split> in the current folder)")
    p.add_argument("--fig-slices", type=int, default=4)
    p.add_argument("--t-max", type=int, default=None,
                   help="steps of every episode (default: the model's t_max); the report gives the DICE after each")
    p.add_argument("--start-from", default="ones", metavar="ones|box:N",
                   help="m(0) of every episode: all ones (default), or the truth's bounding box grown by N pixels, a "
                        "simulated user's box; with a box only the slices that hold the object are scored")
    p.add_argument("--object-slices", action="store_true",
                   help="score only the slices whose truth holds the object (what --start-from box:N scores)")
    add_inference_options(p)
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=cmd_evaluate)


# ----------------------------------------------------------------------------- handlers


def _config_from_args(args, finetune: bool):
    from napari_pixeldrl.training.run_folder import CONFIG
    from napari_pixeldrl.training.train_config import AUGMENTATION, TrainConfig, augmentation_off, finetune_config

    cfg_path = args.out / CONFIG
    if args.epochs is not None and args.epochs < 1:
        raise InputError(f"--epochs must be at least 1, got {args.epochs}")
    if args.n_shot is not None and args.n_shot < 1:
        raise InputError(f"--n-shot must be at least 1 (leave it out to train on the whole split), got {args.n_shot}")
    if args.cpu_budget is not None and not args.cpu_budget > 0:
        raise InputError(f"--cpu-budget must be a positive number of minutes, got {args.cpu_budget}")
    if args.resume and cfg_path.exists():
        cfg = TrainConfig.from_dict(json.loads(cfg_path.read_text())["train"])
        _refuse_changed_run(cfg, args, finetune)
    else:
        if args.resume:
            print(f"note: {args.out} holds no run yet; starting a new one", file=sys.stderr)
        if not args.dataset or not args.data:
            raise InputError("--dataset and --data are required")
        cfg = TrainConfig()
        if finetune:
            from napari_pixeldrl.model.checkpoint import read_header

            # The checkpoint's own loss options, crop and augmentation; those given on the command line win (below).
            cfg = finetune_config(cfg, read_header(args.checkpoint))
        else:
            cfg.preset = args.preset or "lite"
        cfg.data = {"dataset": args.dataset, "path": str(args.data), "label": args.label, "split_by": args.split_by,
                    "fold": args.fold, "folds": args.folds or 5, "val_fold": args.val_fold, "seed": args.seed,
                    "n_shot": args.n_shot,
                    "init_checkpoint": str(args.checkpoint) if finetune else None}
        cfg.seed = args.seed if args.train_seed is None else args.train_seed
    _set_architecture_switches(cfg, args, resumed=args.resume and cfg_path.exists())
    for name, attr in (("epochs", "epochs"), ("batch_size", "batch_size"), ("lr", "lr"), ("t_max", "t_max"),
                       ("value_weight", "value_weight"), ("supervised_weight", "supervised_weight"),
                       ("val_max_slices", "val_max_slices"), ("val_every", "val_every"), ("threads", "threads"),
                       ("reward_balance", "reward_balance"), ("live_pixels_only", "live_pixels_only"),
                       ("balance_power", "balance_power"), ("supervised_dice", "supervised_dice"),
                       ("ema_decay", "ema_decay"), ("reward_conv_lr_scale", "reward_conv_lr_scale"),
                       ("coarse_to_fine", "coarse_to_fine"), ("coarse_first", "coarse_first"), ("first_step_recall", "first_step_recall"), ("start_boxes", "start_boxes"), ("supervised_steps", "supervised_steps"),
                       ("live_mean", "live_mean"), ("scale_jitter", "scale_jitter"), ("gamma_jitter", "gamma_jitter")):
        value = getattr(args, name)
        if value is not None:
            setattr(cfg, attr, value)
    if args.val_start is not None:
        from napari_pixeldrl.training.prompts import parse_start

        cfg.val_start_grow = parse_start(args.val_start)
    if args.crop is not None:
        cfg.crop = args.crop or None
    if args.ema_decay == 0:
        cfg.ema_decay = None
    if args.keep_init is not None:
        cfg.keep_init = _keep_init(args.keep_init)
    cfg.time_budget_min = args.time_budget
    cfg.cpu_budget_min = args.cpu_budget
    cfg.device = args.device
    if args.no_augment:  # a fine-tune's inherited jitter goes with the rest; one given is refused
        augmentation_off(cfg, given={name for name in AUGMENTATION if getattr(args, name) is not None})
    if args.no_amp:
        cfg.amp = False
    cfg.progress = not args.no_progress and sys.stderr.isatty()
    return cfg


def _keep_init(text: str):
    if text == "random":
        return "random"
    try:
        return float(text)
    except ValueError:
        raise InputError(f"--keep-init takes a probability in (0, 1) or 'random', got {text!r}") from None


def _refuse_changed_run(cfg, args, finetune: bool) -> None:
    """--resume continues the run in --out as it was set up; a data, preset or starting
    checkpoint option that says otherwise is refused rather than silently ignored."""
    d = cfg.data
    given = {"--dataset": (args.dataset, d.get("dataset")), "--data": (args.data, d.get("path")),
             "--n-shot": (args.n_shot, d.get("n_shot")), "--label": (args.label, d.get("label")),
             "--train-seed": (args.train_seed, cfg.seed), "--fold": (args.fold, d.get("fold")),
             "--val-fold": (args.val_fold, d.get("val_fold")), "--folds": (args.folds, d.get("folds", 5))}
    if finetune:
        given["--checkpoint"] = (args.checkpoint, d.get("init_checkpoint"))
    else:
        given["--preset"] = (args.preset, cfg.preset)

    def same(flag, new, old) -> bool:  # a path may be given relative one time, absolute the next
        if str(new) == str(old):
            return True
        return flag in ("--data", "--checkpoint") and old is not None and Path(new).resolve() == Path(old).resolve()

    changed = [f"{flag} {new} (the run has {old})" for flag, (new, old) in given.items()
               if new is not None and not same(flag, new, old)]
    if changed:
        raise InputError(f"{args.out} holds a run set up otherwise; --resume cannot change " + ", ".join(changed))


def _set_architecture_switches(cfg, args, resumed: bool) -> None:
    """The architecture switches (--sam, --dilation, ... --prompt-channel) become model overrides of a new run; a resumed run keeps its network."""
    from napari_pixeldrl.model.config import preset_config

    names = ("sam", "dilation", "shared_head", "extractor_norm", "state_prototypes", "first_step_head", "fine_decoder",
             "sam_axis", "head_norm", "prompt_channel", "box_zoom")
    switches = {k: getattr(args, k, None) for k in names}
    switches = {k: v for k, v in switches.items() if v is not None}
    if not switches:
        return
    if preset_config(cfg.preset).arch != "pixeldrl" and set(switches) - {"box_zoom"}:  # a U-Net can segment in a box too
        flags = "/".join("--" + name.replace("_", "-") for name in names if name != "box_zoom")
        raise InputError(f"{flags} switch parts of PixelDRL-MG; the {cfg.preset!r} preset has none")
    if resumed:
        stored = {k: cfg.model_overrides.get(k, getattr(preset_config(cfg.preset), k)) for k in switches}
        if stored != switches:
            raise InputError(f"{args.out} was trained with {stored}; a resumed run cannot change its network to {switches}")
        return
    cfg.model_overrides = {**cfg.model_overrides, **switches}


def cmd_train(args) -> int:
    from napari_pixeldrl.training.events import drive
    from napari_pixeldrl.training.trainer import Trainer

    finetune = not hasattr(args, "preset")
    cfg = _config_from_args(args, finetune)
    cfg.check()  # before any data is read
    from napari_pixeldrl.training.run_folder import check_run_folder

    check_run_folder(args.out, args.resume)  # before the data is read
    d = cfg.data
    data = _load(d["dataset"], d["path"], d.get("label"))
    train, val = select_split(data, d, "train"), select_split(data, d, "val")
    init = d.get("init_checkpoint")
    print(f"training {cfg.preset} on {len(train)} slices, validating on {len(val)}; run folder {args.out}", file=sys.stderr)

    started = datetime.now(timezone.utc).isoformat(timespec="seconds")

    cpu_started = time.process_time()

    trainer = Trainer(cfg, train, val, args.out, init_checkpoint=init)
    with _stop_cleanly_on_signals(trainer.cancel) as signals:
        result = drive(trainer.run(resume=args.resume),
                       lambda event: _report(event, args, cfg, started, cpu_started) if trainer.rank == 0 else None)
    if trainer.rank == 0:
        print(json.dumps({"reason": result.reason, "epochs": result.epochs_done, "best_dice": result.best_dice,
                          "best_epoch": result.best_epoch, "best_checkpoint": str(result.best_checkpoint)}))
    if trainer.world_size > 1:
        from napari_pixeldrl.training.trainer import leave_process_group

        del trainer
        leave_process_group()
    return 128 + signals[0] if signals else 0


@contextmanager
def _stop_cleanly_on_signals(cancel: threading.Event):
    """SIGTERM (``kill``, a scheduler's preemption) and a first Ctrl-C stop the run as the
    plugin's Cancel does: before the next episode, with the stop recorded in commands.jsonl
    with its CPU time, so that ``--resume`` continues it and its budget stays counted. A
    second Ctrl-C interrupts at once. The command then exits with 128 + the signal's number,
    as a killed command does, so that a caller does not take the stop for a finished run."""
    received = []

    def stop(signum, frame):
        if cancel.is_set() and signum == signal.SIGINT:
            raise KeyboardInterrupt
        cancel.set()
        received.append(signum)
        # os.write, not print: a handler that prints while stderr is mid-write raises.
        os.write(2, f"{signal.Signals(signum).name}: stopping before the next episode "
                    "(Ctrl-C again to interrupt at once)\n".encode())

    if threading.current_thread() is not threading.main_thread():  # signals reach the main thread only
        yield received
        return
    previous = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield received
    finally:
        for s, handler in previous.items():
            if handler is not None:  # None: a handler not set from Python, which cannot be put back
                signal.signal(s, handler)


def _report(event, args, cfg, started: str, cpu_started: float) -> None:
    """What the command does with the run's events: commands.jsonl and one line per epoch."""
    from napari_pixeldrl.training.events import EndEvent, EpochEvent, StartEvent

    if isinstance(event, StartEvent):
        # Recorded as soon as the run holds its folder, so a killed command is on record too.
        _record(args.out, {"argv": getattr(args, "argv", None), "started": started, "status": "started",
                           "start_epoch": event.start_epoch})
    elif isinstance(event, EndEvent):
        # The run folder keeps every command that trained it: a run continued in stages,
        # maybe with other options, says how it was made. Written while the run holds the folder.
        _record(args.out, {"argv": getattr(args, "argv", None), "started": started, "status": "ended",
                           "ended": datetime.now(timezone.utc).isoformat(timespec="seconds"), "reason": event.reason,
                           "epochs_done": event.epochs_done, "stop_val_dice": event.stop_val_dice,
                           "cpu_minutes": round((time.process_time() - cpu_started) / 60, 3)})
    elif isinstance(event, EpochEvent) and not cfg.progress:
        val_txt = "-" if event.val_dice is None else f"{event.val_dice:.4f}"
        print(f"epoch {event.epoch}/{event.epochs}  loss {event.train.get('loss', 0):.4f}  reward {event.train.get('mean_reward', 0):.4f}  "
              f"keep {event.train.get('keep_fraction', 0):.3f}  val DICE {val_txt}  best {event.best_dice:.4f}  ({event.seconds:.1f} s)",
              file=sys.stderr, flush=True)


def _record(out, record: dict) -> None:
    """One line of the run folder's commands.jsonl: a command when it starts, and again when it ends."""
    with open(Path(out) / COMMANDS, "a") as f:
        f.write(json.dumps(record) + "\n")


def cmd_evaluate(args) -> int:
    from napari_pixeldrl.core.io import check_output_folder
    from napari_pixeldrl.model.checkpoint import load_checkpoint
    from napari_pixeldrl.model.config import check_t_max
    from napari_pixeldrl.model.threshold import ARGMAX
    from napari_pixeldrl.training.evaluate import evaluate
    from napari_pixeldrl.training.prompts import box_start_masks, object_slices, parse_start

    import torch

    grow = parse_start(args.start_from)
    if args.t_max is not None:
        check_t_max(args.t_max, "--t-max")
    if args.threads:
        torch.set_num_threads(args.threads)
    loaded = load_checkpoint(args.checkpoint)
    # Checked before the work; never next to the checkpoint: a bundled one lies inside the installed package.
    out = check_output_folder(args.out or Path.cwd() / f"eval_{Path(loaded.path).stem}_{args.split}")
    config = inference_config(loaded.config, args)
    trained_on = dict(loaded.info.get("data") or {})
    kind = args.dataset or trained_on.get("dataset")
    path = args.data or trained_on.get("path")
    if not kind or not path:
        raise InputError("--dataset and --data are required (the checkpoint does not name its data)")
    # --folds left out: the run's own (a fold number means nothing without it), else 5.
    folds = args.folds if args.folds is not None else (trained_on.get("folds") or 5)
    provenance = {"split_by": args.split_by, "fold": args.fold, "folds": folds, "val_fold": args.val_fold,
                  "seed": args.seed}
    if (trained_on and args.dataset in (None, trained_on.get("dataset")) and args.split_by == "patient"
            and args.fold is None and args.val_fold is None and args.seed == 0):
        provenance = {k: trained_on.get(k, v) for k, v in provenance.items()}  # the training run's split
    if not args.data and not Path(path).expanduser().exists():
        raise InputError(f"the checkpoint was trained on {path}, which is not there from {Path.cwd()}; "
                         "give the dataset folder with --data")
    data = _load(kind, path, args.label if args.label is not None else trained_on.get("label"))
    if data.in_channels != loaded.config.in_channels:
        raise InputError(f"{loaded.path} takes {loaded.config.in_channels}-channel images, but {path} holds "
                         f"{data.in_channels}-channel ones; pick the checkpoint trained for this data")
    subset = select_split(data, provenance, args.split)
    if len(subset) == 0:
        raise InputError(f"the {args.split} split is empty")
    object_only = grow is not None or args.object_slices  # a user boxes an object that is there
    if object_only:
        subset = subset.subset(object_slices(subset.masks))  # as the trainer's validation from boxes picks them
        if len(subset) == 0:
            raise InputError(f"no slice of the {args.split} split holds the object; there is nothing to box")
    starts = None if grow is None else box_start_masks(subset.masks, grow)
    device = choose_device(args.device)
    name = "U-Net" if loaded.config.arch == "unet" else f"PixelDRL-MG ({loaded.config.preset})"
    if config.keep_threshold != ARGMAX:
        name += f", pi(keep) > {config.keep_threshold:g}"
    if config.postprocess != "none":
        name += f" + {config.postprocess}"  # in table.md, so a report says what it measured
    if config.box_zoom:
        name += f", inside the box at {config.box_zoom} x {config.box_zoom}"
    elif config.window:
        name += f", {config.window}-pixel windows"
    if grow is not None:
        name += f", from the box + {grow} px"
    result = evaluate(loaded.model, config, subset, out, fig_slices=args.fig_slices, device=device, name=name,
                      progress=not args.json and sys.stderr.isatty(), start_masks=starts, t_max=args.t_max)
    if args.json:
        keys = ("dice", "ppv", "sen", "iou", "biou", "hd95", "slices", "sd", "dice_per_step", "patients", "dice_ci95",
                "empty_predictions", "hd95_nonempty")
        print(json.dumps({**{k: result[k] for k in keys}, "postprocess": config.postprocess,
                          "keep_threshold": config.keep_threshold,
                          "window": 0 if config.box_zoom else config.window, "box_zoom": config.box_zoom, "start_from": args.start_from, "object_slices_only": object_only}))
    else:
        print((out / "table.md").read_text(), end="")
        print(f"post-processing of the final mask: {config.postprocess}")
        if config.keep_threshold != ARGMAX:
            print(f"a pixel was kept where pi(keep) > {config.keep_threshold:g} (the argmax: 0.5)")
        if config.window and not config.box_zoom:  # a box model runs on its box, never in windows
            print(f"slices larger than {config.window} pixels ran as {config.window}-pixel windows")
        if object_only:
            print(f"scored on the {result['slices']} slices that hold the object; episodes start from {args.start_from}")
        lo, hi = result["dice_ci95"]
        print(f"DICE {result['dice']:.4f}, 95 % interval {lo:.4f}-{hi:.4f} (bootstrap over {result['patients']} patients); "
              f"empty predictions {result['empty_predictions']} of {result['slices']}; "
              f"HD95 over non-empty predictions {result['hd95_nonempty']:.2f}")
        print("DICE after each step (raw masks m(t)): " + " ".join(f"{d:.4f}" for d in result["dice_per_step"]))
        print(f"report in {out}")
    return 0


def run(args) -> int:
    try:
        return args.func(args)
    except PixelDRLError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="pixeldrl")
    add_train_commands(parser.add_subparsers(dest="command", required=True))
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
