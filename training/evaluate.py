"""Evaluation of a trained model on a set of slices: the paper's Table 2, Fig. 7 and Fig. 4.

:func:`evaluate` runs the argmax episode on every slice and writes, under ``out_dir``:

* ``per_slice.csv``: patient, slice, the six metrics, the steps taken, DICE after each step t;
* ``summary.json``: mean and SD of each metric (``training.metrics.aggregate``), the
  empty-mask counts and the mean DICE after each step t = 1..T (Fig. 7);
* ``table.md``: the summary laid out like the paper's Table 2 (mean ± SD);
* ``dice_per_step.png``: mean DICE against t (Fig. 7);
* ``steps.png``: for a few slices, the mask m(t) and the action map a(t) of every step,
  pixels zeroed at step t, the only change of action an absorbing episode has, in red (Fig. 4).

HD95 is in pixels (the slices' spacing is not applied), as the paper reports it on 2D slices.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Sequence

import numpy as np

from napari_pixeldrl.core.atomic import atomic_write
from napari_pixeldrl.model.episode import ZEROED, action_map

from .metrics import METRIC_NAMES, aggregate, overlap_metrics, patient_bootstrap, slice_metrics
from .predict import predict_slices

LABELS = {"dice": "DICE", "ppv": "PPV", "sen": "SEN", "iou": "IoU", "biou": "BIoU", "hd95": "HD95"}


def evaluate(
    model,
    config,
    data,
    out_dir=None,
    *,
    t_max: int | None = None,
    fig_slices: int = 4,
    device="cpu",
    name: str = "PixelDRL-MG",
    batch_size: int = 4,
    progress: bool = False,
    start_masks=None,
) -> dict:
    """Metrics of ``model`` on ``data`` (a SliceSet, or an (images, masks) pair).
    ``start_masks``: each slice's m(0) (H, W), default all ones.

    Returns ``{"dice", "ppv", "sen", "iou", "biou", "hd95"`` (means), ``"sd"`` (per metric),
    ``"slices"``, ``"dice_per_step"``, ``"summary"`` (aggregate's dict), ``"rows"``}.
    """
    images, masks = (list(data.images), list(data.masks)) if hasattr(data, "images") else (list(data[0]), list(data[1]))
    patients = list(getattr(data, "patients", [""] * len(images)))
    slice_index = list(getattr(data, "slice_index", range(len(images))))
    t_max = int(config.t_max if t_max is None else t_max)
    preds = predict_slices(model, config, images, t_max=t_max, return_steps=True, device=device, batch_size=batch_size,
                           progress=progress, start_masks=start_masks)
    rows, results = [], []
    per_step = np.zeros((len(images), preds[0].step_masks.shape[0] if preds else 0))
    for i, (p, gt) in enumerate(zip(preds, masks)):
        res = slice_metrics(p.mask, gt)
        results.append(res)
        per_step[i] = [overlap_metrics(m != 0, gt != 0)["dice"] for m in p.step_masks]
        row = {"index": i, "patient": patients[i], "slice": slice_index[i]}
        row.update({k: res[k] for k in METRIC_NAMES})
        row["empty_pred"], row["steps_taken"] = bool(res["empty_pred"]), p.steps_taken
        row.update({f"dice_t{t + 1}": float(d) for t, d in enumerate(per_step[i])})
        rows.append(row)
    summary = aggregate(results)
    dice_per_step = per_step.mean(axis=0).tolist() if len(images) else []
    out = {k: summary[k]["mean"] for k in METRIC_NAMES}
    out.update(sd={k: summary[k]["sd"] for k in METRIC_NAMES}, slices=len(images), dice_per_step=dice_per_step, summary=summary, rows=rows)
    # Few patients make noisy means: the DICE interval resamples whole patients.
    nonempty = [r["hd95"] for r in rows if not r["empty_pred"]]
    out.update(patients=len(set(map(str, patients))),
               dice_ci95=list(patient_bootstrap([r["dice"] for r in rows], [r["patient"] for r in rows])),
               empty_predictions=sum(r["empty_pred"] for r in rows),
               hd95_nonempty=float(np.mean(nonempty)) if nonempty else float("nan"))
    if out_dir is not None:
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        _write_csv(out_dir / "per_slice.csv", rows)
        body = {k: v for k, v in out.items() if k != "rows"}
        _write_text(out_dir / "summary.json", json.dumps(body, indent=2))
        _write_text(out_dir / "table.md", table2(summary, name))
        plot_dice_per_step(dice_per_step, out_dir / "dice_per_step.png")
        chosen = pick_slices(rows, fig_slices)
        plot_steps([images[i] for i in chosen], [masks[i] for i in chosen], [preds[i] for i in chosen], out_dir / "steps.png",
                   titles=[f"{patients[i]} #{slice_index[i]}" for i in chosen], postprocess=config.postprocess,
                   starts=None if start_masks is None else [start_masks[i] for i in chosen])
    return out


def table2(summary: dict, name: str = "PixelDRL-MG") -> str:
    """One row of the paper's Table 2: DICE, PPV, SEN, IoU, BIoU, HD95 as mean ± SD."""
    head = "| Method | " + " | ".join(LABELS[k] for k in METRIC_NAMES) + " | slices |"
    rule = "|" + " --- |" * (len(METRIC_NAMES) + 2)
    cells = [f"{summary[k]['mean']:.4f} ± {summary[k]['sd']:.4f}" if k != "hd95" else f"{summary[k]['mean']:.2f} ± {summary[k]['sd']:.2f}" for k in METRIC_NAMES]
    return "\n".join([head, rule, f"| {name} | " + " | ".join(cells) + f" | {summary['n']} |"]) + "\n"


def pick_slices(rows: Sequence[dict], n: int) -> list[int]:
    """A few slices spread over the DICE range (worst, median, best, ...)."""
    if not rows or n <= 0:
        return []
    order = sorted(range(len(rows)), key=lambda i: rows[i]["dice"])
    if len(order) <= n:
        return order
    return [order[int(round(q * (len(order) - 1)))] for q in np.linspace(0, 1, n)]


def _write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda tmp: Path(tmp).write_text(text))


def _write_csv(path: Path, rows: list[dict]) -> None:
    buf = io.StringIO()
    if rows:
        writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    _write_text(path, buf.getvalue())


def _figure(**kw):
    # A bare Figure draws with Agg when saved; no matplotlib.use(), which would switch the
    # backend of the process (napari's console included) for whoever plots after us.
    from matplotlib.figure import Figure

    return Figure(**kw)


def _save(fig, path: Path) -> None:
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=80))


def plot_dice_per_step(dice_per_step: Sequence[float], path) -> None:
    """Mean DICE after each step t (the paper's Fig. 7)."""
    fig = _figure(figsize=(4.5, 3.2))
    ax = fig.subplots()
    ax.plot(range(1, len(dice_per_step) + 1), dice_per_step, marker="o")
    ax.set(xlabel="step t", ylabel="mean DICE", title="DICE after each step", ylim=(0, 1))
    fig.tight_layout()
    _save(fig, Path(path))


def _crop_box(*masks, margin: int = 12, least: int = 64):
    """Rows and columns around everything in ``masks`` (with a margin), so that a small
    object's changing boundary is large enough to see; the whole slice if all are empty."""
    h, w = masks[0].shape
    ys, xs = np.nonzero(np.logical_or.reduce([m > 0 for m in masks]))
    if len(ys) == 0:
        return slice(0, h), slice(0, w)

    def span(lo, hi, size):
        lo, hi = max(lo - margin, 0), min(hi + margin + 1, size)
        grow = max(least - (hi - lo), 0)
        lo, hi = max(lo - grow // 2, 0), min(hi + grow - grow // 2, size)
        if hi - lo < least:  # clipped at an edge: grow on the other side
            lo, hi = max(0, hi - least), min(size, max(0, hi - least) + least)
        return slice(lo, hi)

    return span(ys.min(), ys.max(), h), span(xs.min(), xs.max(), w)


def plot_steps(images, masks, preds, path, titles=None, postprocess: str = "none", starts=None) -> None:
    """Fig. 4, readable: per slice, a row of masks m(t) with their DICE and a row of the
    pixels each step zeroed, for the steps the episode took (its stop marked), cropped
    around the object. From all ones step 1 zeroes most of the background, which is no
    news, so its zeroed pixels are drawn faint; later steps' in strong red. ``starts``:
    each slice's m(0) where the episodes started from a rough mask (a box): its outline is
    drawn, and step 1's removals inside it are news, drawn strong. A legend says what the
    colours mean; the final outline says when it was post-processed."""
    from matplotlib.patches import Patch

    if not preds:
        return
    shown = [int(p.steps_taken) if p.step_masks is not None else 0 for p in preds]
    cols = 1 + max(shown)
    fig = _figure(figsize=(2.1 * cols, 4.3 * len(preds)))
    axes = np.atleast_2d(fig.subplots(2 * len(preds), cols))
    for r, (im, gt, p, n) in enumerate(zip(images, masks, preds, shown)):
        top, bottom = axes[2 * r], axes[2 * r + 1]
        gray = im[min(1, im.shape[0] - 1)] if im.shape[0] in (2, 3) else im[0]
        first = p.step_masks[0] if n else p.mask
        start = None if starts is None else np.asarray(starts[r]) > 0
        box = _crop_box(gt, first, p.mask, *([] if start is None else [start]))
        g, truth, final = gray[box], gt[box] > 0, p.mask[box] > 0
        post = n and not np.array_equal(p.mask, p.step_masks[n - 1])
        top[0].imshow(g, cmap="gray")
        top[0].contour(truth, levels=[0.5], colors="lime", linewidths=1.0)
        top[0].contour(final, levels=[0.5], colors="yellow", linewidths=1.0)
        if start is not None:
            top[0].contour(start[box], levels=[0.5], colors="cyan", linewidths=1.0, linestyles="dashed")
        head = titles[r] if titles else "image"
        top[0].set_title(f"{head}\nfinal DICE {overlap_metrics(final, truth)['dice']:.3f}" + (f"\n(outline: {postprocess})" if post else ""),
                         fontsize=8)
        bottom[0].axis("off")
        handles = [Patch(color="lime", label="truth G (outline)"), Patch(color="yellow", label="final mask (outline)")]
        if start is not None:
            handles.append(Patch(color="cyan", label="start m(0) (dashed)"))
        handles += [Patch(color=(0.25, 0.5, 1.0), label="m(t): kept"), Patch(color="red", label="zeroed at step t")]
        if start is None:
            handles.append(Patch(color=(1.0, 0.75, 0.6), label="zeroed at step 1 (faint)"))
        bottom[0].legend(handles=handles, loc="center", fontsize=8, frameon=False)
        actions = action_map(p.step_masks[:n], start) if n else None
        rgb = np.dstack([g] * 3).astype(float)
        rgb = (rgb - rgb.min()) / max(float(np.ptp(rgb)), 1e-9)
        for t in range(n):
            m = p.step_masks[t][box] > 0
            zeroed = actions[t][box] == ZEROED
            over = rgb.copy()
            kept = rgb.copy()
            kept[m] = 0.55 * kept[m] + 0.45 * np.array([0.25, 0.5, 1.0])
            top[t + 1].imshow(kept)
            top[t + 1].contour(truth, levels=[0.5], colors="lime", linewidths=0.8)
            stop = " (stop)" if t == n - 1 and n < len(p.step_masks) else ""
            top[t + 1].set_title(f"m({t + 1}){stop}\nDICE {overlap_metrics(m, truth)['dice']:.3f}", fontsize=8)
            colour, weight = ((1.0, 0.75, 0.6), 0.5) if t == 0 and start is None else ((1.0, 0.0, 0.0), 0.9)
            over[zeroed] = (1 - weight) * over[zeroed] + weight * np.array(colour)
            bottom[t + 1].imshow(over)
            bottom[t + 1].set_title(f"a({t + 1}): {int(zeroed.sum())} px zeroed", fontsize=8)
        for ax in list(top[n + 1:]) + list(bottom[n + 1:]):
            ax.axis("off")
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    _save(fig, Path(path))
