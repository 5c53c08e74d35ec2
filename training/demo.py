"""``pixeldrl demo``: the bundled model on the bundled sample, metrics and the Fig. 4 picture.

The sample patients are in the test part of the default split by patient, so the bundled
models never saw them: the figures printed here are test figures on one patient.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from napari_pixeldrl.model.checkpoint import load_checkpoint
from napari_pixeldrl.model.inference import iter_segment, prepare_slices
from napari_pixeldrl.sample_data import SAMPLES

from .evaluate import pick_slices, plot_steps
from .metrics import METRIC_NAMES, aggregate, slice_metrics, volume_metrics
from .predict import run_with_progress

# Which bundled model fits which sample.
MODEL_FOR_SAMPLE = {"lgg": "lgg", "heart": "heart"}


def run_demo(sample: str, checkpoint: str | None = None, out_dir="pixeldrl-demo", *, device="cpu", fig_slices: int = 3,
             progress: bool = False) -> dict:
    """Segment the sample ``sample`` ('lgg' or 'heart'); write ``<out_dir>/<sample>_steps.png``.
    ``progress``: a progress bar on stderr."""
    data = SAMPLES[sample]()
    loaded = load_checkpoint(checkpoint or MODEL_FOR_SAMPLE[sample])
    channel_axis = -1 if data.rgb else None
    seg = run_with_progress(
        iter_segment(loaded.model, loaded.config, data.image, channel_axis=channel_axis, return_steps=True,
                     device=device, source=str(data.image_path)),
        f"segmenting the {sample} sample", enabled=progress)
    in_plane = tuple(data.spacing[-2:]) if data.affine is not None else None
    per_slice = [slice_metrics(seg.mask[z], data.mask[z], spacing=in_plane) for z in range(len(data.mask))]
    summary = aggregate(per_slice)
    volume = volume_metrics(seg.mask, data.mask, spacing=tuple(data.spacing) if data.affine is not None else None)

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = [{"dice": r["dice"]} for r in per_slice]
    chosen = sorted(pick_slices(rows, fig_slices))
    slices, _ = prepare_slices(data.image, seg.layout)
    preds = [
        SimpleNamespace(mask=seg.mask[z], step_masks=seg.step_masks[:, z], step_actions=seg.step_actions[:, z],
                        steps_taken=int(seg.steps_taken[z]))
        for z in chosen
    ]
    figure = out_dir / f"{sample}_steps.png"
    plot_steps([slices[z] for z in chosen], [data.mask[z] for z in chosen], preds, figure,
               titles=[f"{data.meta.get('case', sample)} z={z}" for z in chosen], postprocess=loaded.config.postprocess)
    return {
        "sample": sample,
        "case": data.meta.get("case"),
        "model": str(loaded.path),
        "slices": len(per_slice),
        "steps_taken": seg.steps_taken.tolist(),
        "slice_mean": {k: summary[k]["mean"] for k in METRIC_NAMES},
        "volume": {k: float(volume[k]) for k in METRIC_NAMES},
        "figure": str(figure),
        "units": "HD95 in mm" if in_plane else "HD95 in pixels",
        "postprocess": loaded.config.postprocess,
    }


def format_demo(result: dict) -> str:
    head = f"{result['sample']}: {result['case']} ({result['slices']} slices), model {Path(result['model']).name}"
    if result.get("postprocess", "none") != "none":
        head += f", post-processing {result['postprocess']}"
    names = "".join(f"{k.upper():>8}" for k in METRIC_NAMES)
    lines = [head, f"{'':14}{names}"]
    for label, key in (("slice mean", "slice_mean"), ("volume", "volume")):
        lines.append(f"{label:14}" + "".join(f"{result[key][k]:8.3f}" for k in METRIC_NAMES))
    lines.append(f"steps taken per slice: {result['steps_taken']}  ({result['units']})")
    lines.append(f"figure: {result['figure']}")
    return "\n".join(lines)
