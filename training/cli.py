"""The ``pixeldrl`` command line: one subcommand per operation.

Errors that this package raises on purpose (bad input, foreign checkpoints) print one
clear line and exit with status 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from napari_pixeldrl.core import __version__
from napari_pixeldrl.core.device import choose_device
from napari_pixeldrl.core.errors import PixelDRLError

DATASETS = ("lgg", "msd", "hecktor", "folder")


def _print(result: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps(result, indent=2, default=str))
    else:
        width = max(len(k) for k in result)
        for key, value in result.items():
            print(f"{key:<{width}}  {value}")


# -- info -------------------------------------------------------------------------------
def cmd_info(args) -> None:
    from napari_pixeldrl.model.checkpoint import bundled_models, load_checkpoint
    from napari_pixeldrl.model.config import preset_config
    from napari_pixeldrl.model.network import build_model, count_parameters

    if args.checkpoint:
        loaded = load_checkpoint(args.checkpoint)
        config, model, info = loaded.config, loaded.model, loaded.info
    else:
        overrides = {"in_channels": args.in_channels} if args.in_channels else {}
        config = preset_config(args.preset, **overrides)
        model, info = build_model(config), {}
    result = {
        "preset": config.preset,
        "arch": config.arch,
        "params": count_parameters(model),
        "in_channels": config.in_channels,
        "t_max": config.t_max,
        "sam": config.sam,
        "dilation": config.dilation,
        "head_scale": config.head_scale,
        "shared_head": config.shared_head,
        "extractor_norm": config.extractor_norm,
        "state_prototypes": config.state_prototypes,
        "first_step_head": config.first_step_head,
        "fine_decoder": config.fine_decoder,
        "prompt_channel": config.prompt_channel,
        # 0: a model of whole slices; S: it segments only inside a start mask's box, resized to S x S
        "box_zoom": config.box_zoom,
        "features_from": config.features_from,
        "normalisation": config.normalisation,
        "bundled_models": sorted(bundled_models()),
    }
    if config.arch == "pixeldrl":
        from napari_pixeldrl.training.train_config import TrainConfig
        from napari_pixeldrl.training.initialisation import reward_filter_lr_scale

        train = TrainConfig(preset=config.preset)
        result["train_defaults"] = {k: train.resolved(k) for k in (
            "supervised_weight", "reward_balance", "balance_power", "live_pixels_only", "supervised_dice",
            "coarse_to_fine", "coarse_first", "first_step_recall", "keep_init", "reward_conv_lr_scale", "value_weight", "entropy_beta", "lr",
            "batch_size", "crop")}
        result["train_defaults"]["reward_conv_lr_scale"] = reward_filter_lr_scale(
            result["train_defaults"]["reward_conv_lr_scale"], config.reward_kernel**2)
    if info:
        result["info"] = info
    _print(result, args.json)


# -- clear-cache ------------------------------------------------------------------------
def cmd_clear_cache(args) -> None:
    from napari_pixeldrl.training.data.cache import clear_cache, default_cache_dir

    n = clear_cache()
    print(f"removed {n} cache file(s) from {default_cache_dir()}")


# -- data-summary -----------------------------------------------------------------------
def cmd_data_summary(args) -> None:
    from napari_pixeldrl.training.data import summarize

    _print(summarize(args.dataset, args.data), args.json)


# -- metrics ----------------------------------------------------------------------------
def cmd_metrics(args) -> None:
    import numpy as np

    from napari_pixeldrl.core.io import label_array, read_image
    from napari_pixeldrl.core.checks import scored_pair
    from napari_pixeldrl.training.metrics import METRIC_NAMES, slice_metrics, volume_metrics

    gt = read_image(args.gt)
    truth = label_array(gt)
    if args.label is not None and not (truth == args.label).any():
        # A whole ground-truth file without the label is a wrong --label, not an empty object.
        present = sorted(int(v) for v in np.unique(truth) if v != 0)[:10]
        raise PixelDRLError(f"--label {args.label} does not occur in {args.gt} (its labels: {present or 'none'})")
    p, g = scored_pair(label_array(read_image(args.pred)), truth, args.label, args.pred, args.gt)
    if p.shape != g.shape:
        raise PixelDRLError(f"{args.pred} has shape {p.shape} but {args.gt} has shape {g.shape}")
    if args.spacing:
        spacing = tuple(args.spacing)
    elif gt.spacing is not None and gt.format == "nifti":
        spacing = tuple(gt.spacing)[-p.ndim :]
    else:
        spacing = None
    if p.ndim == 2:
        result = slice_metrics(p, g, spacing=spacing)
    elif p.ndim == 3:
        result = volume_metrics(p, g, spacing=spacing)
    else:
        raise PixelDRLError(f"{args.pred}: masks must be 2D or 3D, got shape {p.shape}")
    out = {k: float(result[k]) for k in METRIC_NAMES}
    out["spacing"] = list(spacing) if spacing else None
    _print(out, args.json)


# -- predict ----------------------------------------------------------------------------
def cmd_predict(args) -> int:
    from napari_pixeldrl.core.errors import InputError
    from napari_pixeldrl.core.io import check_output_file, check_output_folder, read_image
    from napari_pixeldrl.model.checkpoint import load_checkpoint
    from napari_pixeldrl.training.cli_train import inference_config
    from napari_pixeldrl.training.predict_files import segment_file, segment_folder

    folder = Path(args.input).is_dir()
    if folder:
        if args.start_mask is not None:
            raise InputError("--start-mask belongs to one image; give an image file, not a folder")
        check_output_folder(args.output)  # before the work, not after it
    else:
        check_output_file(args.output)
    loaded = load_checkpoint(args.checkpoint)
    if loaded.config.box_zoom and args.start_mask is None:
        raise InputError(f"{args.checkpoint} segments only inside a box (box_zoom {loaded.config.box_zoom}): give "
                         "--start-mask FILE (a box or rough region round the object) with one image")
    config = inference_config(loaded.config, args)
    options = dict(channel_axis=args.channel_axis, t_max=args.t_max, device=choose_device(args.device))
    progress = not args.json and sys.stderr.isatty()
    if folder:
        done = segment_folder(loaded.model, config, Path(args.input), Path(args.output), overwrite=args.overwrite,
                              progress=progress, **options)
        for name, why in done.failed:
            print(f"skipped {name}: {why}", file=sys.stderr)
        _print({"output": str(args.output), "segmented": len(done.segmented), "already_done": len(done.already_done),
                "failed": [name for name, _ in done.failed], "not_images": len(done.not_images)}, args.json)
        if not done.segmented and not done.already_done:
            raise InputError(f"no image in {args.input} could be segmented (TIF, PNG or NIfTI files)")
        return 2 if done.failed else 0
    start = None if args.start_mask is None else read_image(args.start_mask).array
    seg = segment_file(loaded.model, config, Path(args.input), Path(args.output), start_mask=start,
                       progress=progress, **options)
    result = {
        "output": str(args.output),
        "shape": list(seg.mask.shape),
        "object_pixels": int(seg.mask.sum()),
        "steps_taken_max": int(seg.steps_taken.max()),
        "t_max": seg.t_max,
    }
    if seg.constant_slices:
        result["constant_slices"] = seg.constant_slices
    _print(result, args.json)
    return 0


# -- bench ------------------------------------------------------------------------------
def cmd_bench(args) -> None:
    from napari_pixeldrl.training.bench import bench_inference, bench_training

    for name, low in (("size", 16), ("batch", 1), ("channels", 1), ("threads", 1), ("repeats", 1), ("warmup", 0)):
        if getattr(args, name) < low:
            raise PixelDRLError(f"--{name} must be at least {low}, got {getattr(args, name)}")
    if args.size % 8:
        raise PixelDRLError(f"--size must be a multiple of 8 (the extractor pools three times), got {args.size}")
    if args.train:
        if args.checkpoint:
            raise PixelDRLError("--train times a fresh network of --preset; it takes no --checkpoint")
        result = bench_training(args.preset, args.size, batch=args.batch, channels=args.channels, threads=args.threads,
                                repeats=args.repeats, warmup=args.warmup, device=choose_device(args.device))
        _print(result, args.json)
        return
    loaded = slice_ = None
    if args.checkpoint:
        from napari_pixeldrl.core.io import read_image
        from napari_pixeldrl.model.checkpoint import load_checkpoint
        from napari_pixeldrl.model.inference import prepare_slices, resolve_layout

        loaded = load_checkpoint(args.checkpoint)
        if not args.image:
            raise PixelDRLError("--checkpoint needs --image: a real slice to time the trained model on")
        img = read_image(args.image)
        layout = resolve_layout(img.array.shape, loaded.config.in_channels, source=str(args.image))
        slices, _ = prepare_slices(img.array, layout, str(args.image))
        slice_ = slices[len(slices) // 2]
    result = bench_inference(
        args.preset,
        args.size,
        threads=args.threads,
        repeats=args.repeats,
        warmup=args.warmup,
        loaded=loaded,
        slice_=slice_,
        device=choose_device(args.device),
    )
    _print(result, args.json)


# -- export -----------------------------------------------------------------------------
def cmd_export(args) -> None:
    from napari_pixeldrl.training.export import export_package

    result = export_package(args.checkpoint, args.out, test_image=args.test_image, channel_axis=args.channel_axis,
                            name=args.name, card=args.card, authors=args.author)
    result["check_with"] = f"bioimageio test {args.out}"
    _print(result, args.json)


# -- demo -------------------------------------------------------------------------------
def cmd_demo(args) -> None:
    from napari_pixeldrl.training.demo import format_demo, run_demo

    from napari_pixeldrl.core.io import check_output_folder

    check_output_folder(args.out)
    from napari_pixeldrl.training.demo import DEMOS, SAMPLE_OF

    samples = list(DEMOS) if args.sample == "all" else [args.sample]
    if args.checkpoint and args.sample == "all":  # one given model: once per sample, not twice on the heart
        samples = [s for s in samples if s not in SAMPLE_OF]
    results = [run_demo(s, args.checkpoint, args.out, device=choose_device(args.device),
                        progress=not args.json and sys.stderr.isatty()) for s in samples]
    if args.json:
        print(json.dumps(results if len(results) > 1 else results[0], indent=2))
    else:
        print("\n\n".join(format_demo(r) for r in results))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pixeldrl", description="PixelDRL-MG medical image segmentation",
        epilog="Datasets read by train, finetune, evaluate and data-summary are decoded once into a cache "
               "(about 1 GB for LGG and the heart set together) in $PIXELDRL_CACHE, else ~/.cache/napari-pixeldrl; "
               "`pixeldrl clear-cache` empties it.")
    parser.add_argument("--version", action="version", version=f"napari-pixeldrl {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("demo", help="segment the bundled sample with the bundled model; metrics and a Fig. 4 PNG")
    p.add_argument("--sample", default="all", choices=("all", "lgg", "lgg-box", "heart", "heart-box"),  # demo.DEMOS
                   help="lgg-box, heart-box: the box model on its sample, each slice that holds the object from the "
                        "truth's box + 10 px (a simulated user's box); default all four")
    p.add_argument("--checkpoint", help="use this checkpoint instead of the bundled model")
    p.add_argument("--out", default="pixeldrl-demo", help="folder for the PNGs (default: ./pixeldrl-demo)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("info", help="describe a preset or a checkpoint")
    p.add_argument("--preset", default="lite", help="paper, lite or unet")
    p.add_argument("--checkpoint", help="a checkpoint file, a bioimage.io package (.zip) or a bundled model name")
    p.add_argument("--in-channels", type=int, help="input channels (default: the preset's)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("clear-cache", help="delete the decoded-dataset cache ($PIXELDRL_CACHE or ~/.cache/napari-pixeldrl)")
    p.set_defaults(func=cmd_clear_cache)

    p = sub.add_parser("data-summary", help="count patients and slices of a dataset folder")
    p.add_argument("--dataset", choices=DATASETS, required=True)
    p.add_argument("--data", required=True, help="the dataset folder")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_data_summary)

    p = sub.add_parser("metrics", help="compare a predicted mask file with a ground-truth mask file")
    p.add_argument("pred")
    p.add_argument("gt")
    p.add_argument("--spacing", type=float, nargs="+", metavar="S", help="pixel spacing, e.g. --spacing SY SX")
    p.add_argument("--label", type=int, help="the object's label in a multi-label ground truth (and prediction); "
                   "without it, a file with several labels is refused")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_metrics)

    p = sub.add_parser("predict", help="segment an image or volume file (or every image of a folder) and write the mask")
    p.add_argument("--checkpoint", required=True,
                   help="a checkpoint file, a bioimage.io package (.zip) or a bundled model name")
    p.add_argument("input", help="an image file, or a folder of them")
    p.add_argument("output", help="mask file: .nii/.nii.gz keeps the input's affine; .tif/.png for 2D; "
                                  "for a folder input, the folder the masks go to under the images' names")
    p.add_argument("--overwrite", action="store_true",
                   help="folder input: segment again the images whose mask is already there (default: skip them, "
                        "so a stopped run resumes)")
    p.add_argument("--t-max", type=int, help="steps (default: the model's t_max)")
    p.add_argument("--channel-axis", type=int, help="axis of the channels, when it cannot be guessed")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--start-mask", type=Path, default=None, metavar="FILE",
                   help="a rough mask of the image's shape (a box, a stroke; nonzero = inside) that the episode "
                        "starts from instead of all ones: the agents remove what does not belong")
    from napari_pixeldrl.training.cli_train import add_inference_options

    add_inference_options(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("export", help="write a checkpoint as a bioimage.io model package (.zip) that bioimage.io "
                                      "tools run and pixeldrl loads as a checkpoint")
    p.add_argument("--checkpoint", required=True, help="a checkpoint file or a bundled model name")
    p.add_argument("--out", required=True, help="the package to write, e.g. model.zip")
    p.add_argument("--test-image", help="an image file whose slice (the middle one of a volume) becomes the package's "
                                        "test input (default: the bundled sample with the model's channels)")
    p.add_argument("--channel-axis", type=int, help="--test-image: axis of the channels, when it cannot be guessed")
    p.add_argument("--name", help="the package's name (default: PixelDRL-MG and the checkpoint's name)")
    p.add_argument("--card", help="a Markdown model card for the package's documentation (default: the bundled "
                                  "model's card, else one made from what the checkpoint records)")
    p.add_argument("--author", action="append", help="an author of the package (repeat for several; "
                                                     "default: napari-pixeldrl developers)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("bench", help="time one inference against one U-Net forward, or (--train) one PA3C "
                                     "training step against one MONAI BasicUNet training step")
    p.add_argument("--train", action="store_true",
                   help="time one PA3C training step (batch --batch) against one BasicUNet step with BCE + soft Dice")
    p.add_argument("--batch", type=int, default=2, help="--train: images per batch")
    p.add_argument("--channels", type=int, default=1, help="--train: input channels")
    p.add_argument("--preset", default="lite")
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=5, help="timed runs; the median is reported")
    p.add_argument("--warmup", type=int, default=2, help="untimed runs first")
    p.add_argument("--checkpoint", help="time this trained model (early stop on) on --image")
    p.add_argument("--image", help="a real image file for --checkpoint")
    p.add_argument("--device", default="cpu", choices=("auto", "cpu", "cuda"))
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_bench)

    try:
        from napari_pixeldrl.training.cli_train import add_train_commands
    except ImportError:
        pass
    else:
        add_train_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.argv = ["pixeldrl", *(sys.argv[1:] if argv is None else argv)]  # the command as typed, for run records
    try:
        code = args.func(args)
    except PixelDRLError as err:
        print(f"pixeldrl {args.command}: error: {err}", file=sys.stderr)
        return 2
    return int(code or 0)


if __name__ == "__main__":
    sys.exit(main())
