"""Evaluation of a trained model on a set of slices: the paper's Table 2, Fig. 7 and Fig. 4.

:func:`evaluate` runs the argmax episode on every slice and writes, under ``out_dir``:

* ``per_slice.csv``: patient, slice, the six metrics, the steps taken, DICE after each step t;
* ``summary.json``: mean and SD of each metric (``training.metrics.aggregate``), the
  empty-mask counts and the mean DICE after each step t = 1..T (Fig. 7);
* ``table.md``: the summary laid out like the paper's Table 2 (mean ± SD);
* ``dice_per_step.png``: mean DICE against t (Fig. 7);
* ``steps.png``: for a few slices, the mask m(t) and the action map a(t) of every step,
  pixels whose action changed from step t-1 in red (Fig. 4).

HD95 is in pixels (the slices' spacing is not applied), as the paper reports it on 2D slices.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Sequence

import numpy as np

from napari_pixeldrl.model.checkpoint import atomic_write

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
) -> dict:
    """Metrics of ``model`` on ``data`` (a SliceSet, or an (images, masks) pair).

    Returns ``{"dice", "ppv", "sen", "iou", "biou", "hd95"`` (means), ``"sd"`` (per metric),
    ``"slices"``, ``"dice_per_step"``, ``"summary"`` (aggregate's dict), ``"rows"``}.
    """
    images, masks = (list(data.images), list(data.masks)) if hasattr(data, "images") else (list(data[0]), list(data[1]))
    patients = list(getattr(data, "patients", [""] * len(images)))
    slice_index = list(getattr(data, "slice_index", range(len(images))))
    t_max = int(config.t_max if t_max is None else t_max)
    preds = predict_slices(model, config, images, t_max=t_max, return_steps=True, device=device, batch_size=batch_size,
                           progress=progress)
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
                   titles=[f"{patients[i]} #{slice_index[i]}" for i in chosen])
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
    import matplotlib

    matplotlib.use("Agg", force=False)
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


def plot_steps(images, masks, preds, path, titles=None) -> None:
    """Fig. 4: per slice, a row of masks m(t) and a row of action maps a(t); red = action changed."""
    if not preds:
        return
    steps = preds[0].step_masks.shape[0]
    cols = steps + 2
    fig = _figure(figsize=(1.3 * cols, 2.6 * len(preds)))
    axes = np.atleast_2d(fig.subplots(2 * len(preds), cols))
    for r, (im, gt, p) in enumerate(zip(images, masks, preds)):
        top, bottom = axes[2 * r], axes[2 * r + 1]
        gray = im[min(1, im.shape[0] - 1)] if im.shape[0] in (2, 3) else im[0]
        top[0].imshow(gray, cmap="gray")
        top[0].set_title(titles[r] if titles else "image", fontsize=6)
        top[1].imshow(gt, cmap="gray", vmin=0, vmax=1)
        top[1].set_title("truth G", fontsize=7)
        bottom[0].imshow(gray, cmap="gray")
        bottom[0].contour(gt, levels=[0.5], colors="lime", linewidths=0.6)
        bottom[0].contour(p.mask, levels=[0.5], colors="red", linewidths=0.6)
        bottom[0].set_title("G green, f(T) red", fontsize=6)
        bottom[1].axis("off")
        prev = np.ones_like(p.step_actions[0])
        for t in range(steps):
            top[t + 2].imshow(p.step_masks[t], cmap="gray", vmin=0, vmax=1)
            top[t + 2].set_title(f"m({t + 1})", fontsize=7)
            a = p.step_actions[t]
            rgb = np.repeat((a * 255).astype(np.uint8)[..., None], 3, axis=2)
            rgb[a != prev] = (255, 0, 0)
            bottom[t + 2].imshow(rgb)
            bottom[t + 2].set_title(f"a({t + 1})", fontsize=7)
            prev = a
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    _save(fig, Path(path))
