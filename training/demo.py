"""``pixeldrl demo``: the bundled model on the bundled sample, metrics and the Fig. 4 picture.

The sample patients are in the test part of the default split by patient, so the bundled
models never saw them: the figures printed here are test figures on one patient.

``lgg-box`` and ``heart-box`` run on their sample as a user of the box model would: each slice that holds
the object starts from its box (the truth's bounding box grown by 10 pixels, a simulated
user's box), and only those slices are scored; so does any demo run with a box model, and
``heart-box --checkpoint heart`` shows what the same boxes give a model of whole slices.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np

from napari_pixeldrl.core.errors import InputError
from napari_pixeldrl.model.checkpoint import load_checkpoint
from napari_pixeldrl.model.inference import iter_segment, prepare_slices
from napari_pixeldrl.sample_data import SAMPLES

from .evaluate import pick_slices, plot_steps
from .metrics import METRIC_NAMES, aggregate, slice_metrics, volume_metrics
from .prompts import BOX_ZOOM_VAL_GROW, box_start_masks, object_slices
from .predict import run_with_progress

# Which bundled model fits which demo, and the sample it runs on.
MODEL_FOR_SAMPLE = {"lgg": "lgg", "lgg-box": "lgg-box", "heart": "heart", "heart-box": "heart-box"}
SAMPLE_OF = {"lgg-box": "lgg", "heart-box": "heart"}
BOX_DEMOS = frozenset(SAMPLE_OF)  # the demos that start from boxes whatever the model
DEMOS = tuple(MODEL_FOR_SAMPLE)


def run_demo(sample: str, checkpoint: str | None = None, out_dir="pixeldrl-demo", *, device="cpu", fig_slices: int = 3,
             progress: bool = False) -> dict:
    """Segment the sample of demo ``sample`` (one of :data:`DEMOS`); write
    ``<out_dir>/<sample>_steps.png``. A box demo (:data:`BOX_DEMOS`) or a box model (a
    checkpoint with ``box_zoom``) starts each slice that holds the object from its box + 10
    pixels and is scored on those slices. ``progress``: a progress bar on stderr."""
    data = SAMPLES[SAMPLE_OF.get(sample, sample)]()
    loaded = load_checkpoint(checkpoint or MODEL_FOR_SAMPLE[sample])
    channel_axis = -1 if data.rgb else None
    starts, scored = None, list(range(len(data.mask)))
    if loaded.config.box_zoom or sample in BOX_DEMOS:
        starts = np.stack(box_start_masks(data.mask, BOX_ZOOM_VAL_GROW))
        scored = object_slices(data.mask)
        if not scored:
            raise InputError(f"no slice of the {sample} sample holds the object, so there is no box to start from; "
                             "run a model of whole slices on a whole-slice demo")
    seg = run_with_progress(
        iter_segment(loaded.model, loaded.config, data.image, channel_axis=channel_axis, return_steps=True,
                     device=device, source=str(data.image_path), start_mask=starts),
        f"segmenting the {sample} sample", enabled=progress)
    in_plane = tuple(data.spacing[-2:]) if data.affine is not None else None
    per_slice = [slice_metrics(seg.mask[z], data.mask[z], spacing=in_plane) for z in scored]
    summary = aggregate(per_slice)
    spacing = tuple(data.spacing) if data.affine is not None else None
    # The whole volume: a box model leaves the slices without a box empty, as the truth is there.
    volume = volume_metrics(seg.mask, data.mask, spacing=spacing)

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = [{"dice": r["dice"]} for r in per_slice]
    chosen = sorted(scored[i] for i in pick_slices(rows, fig_slices))
    slices, _ = prepare_slices(data.image, seg.layout)
    preds = [
        SimpleNamespace(mask=seg.mask[z], step_masks=seg.step_masks[:, z], step_actions=seg.step_actions[:, z],
                        steps_taken=int(seg.steps_taken[z]))
        for z in chosen
    ]
    figure = out_dir / f"{sample}_steps.png"
    plot_steps([slices[z] for z in chosen], [data.mask[z] for z in chosen], preds, figure,
               titles=[f"{data.meta.get('case', sample)} z={z}" for z in chosen], postprocess=loaded.config.postprocess,
               starts=None if starts is None else [starts[z] for z in chosen])
    return {
        "sample": sample,
        "case": data.meta.get("case"),
        "model": str(loaded.path),
        "slices": len(per_slice),
        "start": "all ones" if starts is None else f"the truth's box + {BOX_ZOOM_VAL_GROW} px on the slices that hold it",
        "steps_taken": seg.steps_taken.tolist(),
        "slice_mean": {k: summary[k]["mean"] for k in METRIC_NAMES},
        "volume": {k: float(volume[k]) for k in METRIC_NAMES},
        "figure": str(figure),
        "units": "HD95 in mm" if in_plane else "HD95 in pixels",
        "postprocess": loaded.config.postprocess,
    }


def format_demo(result: dict) -> str:
    head = f"{result['sample']}: {result['case']} ({result['slices']} slices), model {Path(result['model']).name}"
    if result.get("start", "all ones") != "all ones":
        head += f", from {result['start']}"
    if result.get("postprocess", "none") != "none":
        head += f", post-processing {result['postprocess']}"
    names = "".join(f"{k.upper():>8}" for k in METRIC_NAMES)
    lines = [head, f"{'':14}{names}"]
    for label, key in (("slice mean", "slice_mean"), ("volume", "volume")):
        lines.append(f"{label:14}" + "".join(f"{result[key][k]:8.3f}" for k in METRIC_NAMES))
    lines.append(f"steps taken per slice: {result['steps_taken']}  ({result['units']})")
    lines.append(f"figure: {result['figure']}")
    return "\n".join(lines)
