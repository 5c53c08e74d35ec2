"""The colours of the layers the plugin draws, one place for all widgets.

Our results never take napari's default label colours, so that a prediction laid over
an expert's labels (drawn in napari's defaults) can be told apart; where the two are
compared, an agreement layer shows agree / missed / extra.
"""

from __future__ import annotations

from napari_pixeldrl.model.episode import KEPT, ZEROED

TRANSPARENT = (0.0, 0.0, 0.0, 0.0)
PREDICTION = (0.0, 0.85, 1.0, 1.0)  # cyan: our masks m(t) and the final mask

# The action layer (paper Fig. 4), one colour per code of the Segment job's action map.
STEP1_ZEROED = 4  # zeroed at step 1: the coarse removal of the background, drawn faint
ACTIONS = {
    0: TRANSPARENT,  # zeroed at an earlier step (or outside the start mask): no action any more
    KEPT: (0.2, 0.8, 0.3, 0.55),  # green: kept
    ZEROED: (1.0, 0.0, 0.0, 1.0),  # red: zeroed at this step, its action changed from keep
    STEP1_ZEROED: (1.0, 0.55, 0.55, 0.25),  # faint red: zeroed at step 1
}

# The agreement layer of the Evaluate widget.
AGREE, MISSED, EXTRA = 1, 2, 3
AGREEMENT = {
    0: TRANSPARENT,
    AGREE: (0.25, 0.45, 1.0, 1.0),  # blue: object in both (not green: the FLAIR scans are green)
    MISSED: (1.0, 0.0, 1.0, 1.0),  # magenta: in the truth only (missed)
    EXTRA: (1.0, 0.85, 0.0, 1.0),  # yellow: in the prediction only (extra)
}


def label_colormap(colors: dict):
    """A napari colormap that draws exactly ``colors`` (label -> RGBA), the rest transparent."""
    from napari.utils.colormaps import DirectLabelColormap

    return DirectLabelColormap(color_dict={**colors, None: TRANSPARENT})


def legend_html(entries) -> str:
    """A one-line legend: a coloured square and a word per (rgba, text)."""
    def square(rgba):
        r, g, b = (int(255 * c) for c in rgba[:3])
        return f'<span style="color: rgb({r},{g},{b})">&#9632;</span>'

    return " &nbsp; ".join(f"{square(c)} {t}" for c, t in entries)
