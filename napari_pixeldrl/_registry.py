"""Models shared between the dock widgets of one viewer (no Qt, no napari import).

The Train widget *publishes* the model it trained for its viewer; every Segment widget
of that viewer lists it at once, and a Segment widget opened later picks up the models
published before it existed. Segment widgets register themselves here, so the Train
widget can also offer the models a Segment widget already has as starting points. Both
tables are weak: a closed viewer or widget drops out.
"""

from __future__ import annotations

import weakref

TAG = "pixeldrl"  # the metadata key that marks the layers our widgets add: {"role": ..., ...}


def layer_tag(layer) -> dict:
    """The tag one of our widgets put on ``layer`` ({} for any other layer)."""
    tag = layer.metadata.get(TAG) if hasattr(layer, "metadata") else None
    return tag if isinstance(tag, dict) else {}


def layer_role(layer) -> str | None:
    """mask, steps, actions, value (Segment) or agreement (Evaluate); None for the user's layers."""
    return layer_tag(layer).get("role")


def image_channels(layer) -> int:
    """The channels a model must take for an image layer: 3 for RGB, else 1."""
    return 3 if getattr(layer, "rgb", False) else 1


def model_config_of(source) -> dict | None:
    """The model config (the header's ``model`` dict) of a LoadedModel, a checkpoint or
    package path, or a bundled name; None when it cannot be read (the run says why later)."""
    from napari_pixeldrl.model.checkpoint import header_of

    try:
        return dict(header_of(source)["model"])
    except Exception:  # noqa: BLE001 - only a default or a hint is lost
        return None


def config_channels(config: dict | None) -> int | None:
    """Input channels a model config (a header's ``model`` dict) asks for; None for no config."""
    return None if config is None else int(config.get("in_channels", 1))


def model_channels(source) -> int | None:
    """Input channels of a model (see :func:`model_config_of`); None when it cannot be read."""
    return config_channels(model_config_of(source))


def bundled_configs() -> dict[str, dict | None]:
    """{bundled model name: its model config}, read once; models of whole slices first, then
    the box models (``box_zoom``), which segment only inside a start layer."""
    global _configs
    if _configs is None:
        from napari_pixeldrl.model.checkpoint import bundled_models

        read = {name: model_config_of(path) for name, path in bundled_models().items()}
        _configs = dict(sorted(read.items(), key=lambda item: bool((item[1] or {}).get("box_zoom"))))
    return _configs


def bundled_channels() -> dict[str, int | None]:
    """{bundled model name: input channels}, in the order of :func:`bundled_configs`."""
    return {name: config_channels(config) for name, config in bundled_configs().items()}


_configs: dict[str, dict | None] | None = None
_published: dict[int, tuple[weakref.ref, dict]] = {}  # id(viewer) -> (viewer ref, {name: source})
_segment_widgets: "weakref.WeakSet" = weakref.WeakSet()


def _real(viewer):
    """The viewer itself: napari hands plugin widgets a PublicOnlyProxy, a new one per widget."""
    return getattr(viewer, "__wrapped__", viewer)


def _entry(viewer) -> dict:
    viewer = _real(viewer)
    key = id(viewer)
    hit = _published.get(key)
    if hit is None or hit[0]() is not viewer:
        hit = (weakref.ref(viewer, lambda _ref, key=key: _published.pop(key, None)), {})
        _published[key] = hit
    return hit[1]


def register_segment_widget(widget) -> None:
    _segment_widgets.add(widget)


def segment_widgets(viewer) -> list:
    """The live Segment widgets of ``viewer``."""
    viewer, out = _real(viewer), []
    for w in list(_segment_widgets):
        try:
            if _real(w.viewer) is viewer:
                out.append(w)
        except RuntimeError:  # the Qt object behind it was deleted
            continue
    return out


def published_models(viewer) -> dict:
    """{name: LoadedModel or path} published for ``viewer``, oldest first."""
    return dict(_entry(viewer))


def publish_model(viewer, name: str, source, select: bool = True) -> list:
    """Offer a model to every Segment widget of ``viewer`` (now and later); returns those told."""
    _entry(viewer)[name] = source
    told = []
    for w in segment_widgets(viewer):
        w.add_model(name, source, select=select)
        told.append(w)
    return told


def unique_name(viewer, base: str) -> str:
    """``base``, or ``base (2)``, ... not yet used for ``viewer``'s published or Segment models."""
    used = set(_entry(viewer))
    for w in segment_widgets(viewer):
        used |= set(w.models())
    name, k = base, 1
    while name in used:
        k += 1
        name = f"{base} ({k})"
    return name
