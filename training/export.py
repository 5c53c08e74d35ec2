"""``pixeldrl export``: a checkpoint as a bioimage.io model package (model spec 0.5).

The package holds what bioimage.io tools run (``pytorch_state_dict`` weights of
:class:`~napari_pixeldrl.model.bioimage.PixelDRLEpisode`, the whole episode in one
forward, after the preprocessing described as ``scale_range`` + ``clip``), a test input
and the mask this package's own inference gives for it, the model card, the citation of
the paper, and, as an attachment, the native safetensors checkpoint, which is what
napari-pixeldrl loads from a package (model/package.py). bioimageio.spec writes and
validates the package; it is an optional dependency (the ``bioimage`` extra).
"""

from __future__ import annotations

import json
import string
import tempfile
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import tifffile
import torch
from PIL import Image

from napari_pixeldrl.core import __version__
from napari_pixeldrl.core.atomic import atomic_write
from napari_pixeldrl.core.checks import check_finite_numeric
from napari_pixeldrl.core.errors import InputError, PixelDRLError
from napari_pixeldrl.core.io import check_output_folder, read_image
from napari_pixeldrl.model.bioimage import PixelDRLEpisode
from napari_pixeldrl.model.checkpoint import BUNDLED_DIR, LoadedModel, load_checkpoint, resolve_checkpoint
from napari_pixeldrl.model.inference import raw_slices, resolve_layout, segment
from napari_pixeldrl.model.network import count_parameters
from napari_pixeldrl.model.package import CHECKPOINT_NAME, is_package, read_package_checkpoint
from napari_pixeldrl.model.preprocess import PERCENTILES, normalize_slice
from napari_pixeldrl.sample_data import SAMPLES

from .metrics import METRIC_NAMES

INSTALL_HINT = 'pip install "napari-pixeldrl[bioimage]"'
# The paper (METHOD.md); DOI from the publisher's record of Sci. Rep. 15:8213.
CITATION = dict(
    text="Liu Y, Yuan D, Xu Z, Zhan Y, Zhang H, Lu J, Lukasiewicz T. Pixel level deep reinforcement learning for "
         "accurate and robust medical image segmentation. Scientific Reports 15, 8213 (2025).",
    doi="10.1038/s41598-025-92117-2",
)
AUTHOR = "napari-pixeldrl developers"  # pyproject's authors
LICENSE = "BSD-3-Clause"  # pyproject's licence
MIN_SIZE = 16  # smallest slice side the package admits: two cells at the extractor's deepest level
# Which bundled sample serves as test input: the model's own sample, else one with its channel count.
SAMPLE_FOR_MODEL = {"lgg": "lgg", "heart": "heart"}
SAMPLE_FOR_CHANNELS = {3: "lgg", 1: "heart"}
NAME_CHARACTERS = string.ascii_letters + string.digits + "_+- ()"  # what bioimage.io allows in a name


def export_package(checkpoint, out, *, test_image=None, channel_axis: int | None = None, name: str | None = None,
                   card=None, authors: list[str] | None = None) -> dict:
    """Write the bioimage.io package of ``checkpoint`` (a bundled name, a .safetensors file or
    a package) to ``out`` (.zip), atomically; what was written, as a dict."""
    out = check_package_path(out)
    _require_bioimageio_spec()
    source = resolve_checkpoint(checkpoint)
    name = check_name(name or default_name(source))
    card_text = None if card is None else _read_card(card)
    loaded = load_checkpoint(source)
    if loaded.config.box_zoom:
        raise InputError(f"{checkpoint} segments only inside a user's box (box_zoom), and a bioimage.io model's one input "
                         "is the image: share its .safetensors checkpoint instead")
    # A bundled model is tested on its own sample; another on the bundled sample with its channels.
    own = SAMPLE_FOR_MODEL.get(source.stem) if source.parent == BUNDLED_DIR else None
    sample = None if test_image is not None else own or SAMPLE_FOR_CHANNELS.get(loaded.config.in_channels)
    test_input, test_from, channels = pick_test_slice(loaded.config.in_channels, test_image, channel_axis, sample,
                                                      own_sample=sample is not None and sample == own)
    # The expected output is what napari-pixeldrl's own inference gives (model/inference.py):
    # `bioimageio test` then checks that bioimage.io's preprocessing and the wrapper reproduce it.
    expected = segment(loaded.model, loaded.config, test_input[0], channel_axis=0, source=test_from).mask
    test_output = expected.astype(np.float32)[None, None]
    if card_text is None:
        card_text = _bundled_card(source) or generated_card(name, loaded)
    with tempfile.TemporaryDirectory(prefix="pixeldrl-export-") as tmp:
        files = _write_parts(Path(tmp), source, loaded, test_input, test_output,
                             card_text + package_section(source, loaded, test_from))
        descr = describe(name, loaded, files, channels, test_from, authors or [AUTHOR])
        atomic_write(out, lambda path: _save(descr, path), keep_suffix=".zip")
    return {"output": str(out), "name": name, "checkpoint": str(source), "test_input": test_from,
            "test_input_shape": list(test_input.shape), "object_pixels": int(expected.sum())}


def _require_bioimageio_spec() -> None:
    try:
        import bioimageio.spec
        import pydantic
    except ImportError:
        raise PixelDRLError(f"writing a bioimage.io package needs bioimageio.spec: {INSTALL_HINT}") from None
    # bioimageio.spec up to 0.5.12 (the one bioimageio.core 0.11 pins) hands pydantic's serialiser
    # an argument that pydantic 2.14 refuses, so every package write fails deep inside it.
    if _version(bioimageio.spec.__version__) < (0, 5, 14) and _version(pydantic.VERSION) >= (2, 14):
        raise PixelDRLError(f"bioimageio.spec {bioimageio.spec.__version__} cannot write packages with pydantic "
                            f"{pydantic.VERSION}: pip install \"pydantic<2.14\" (or {INSTALL_HINT})")


def _version(text: str) -> tuple[int, ...]:
    parts = []
    for part in str(text).split(".")[:3]:
        digits = "".join(c for c in part if c.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts)


def check_package_path(out) -> Path:
    """``out`` must name a .zip in a folder that can be written: checked before any work."""
    out = Path(out)
    if out.is_dir():
        raise InputError(f"{out} is a folder; give a file name, e.g. {out / 'model.zip'}")
    if out.suffix.lower() != ".zip":
        raise InputError(f"{out}: a bioimage.io package is a .zip file; give a name ending in .zip")
    check_output_folder(out.parent)
    return out


def default_name(source: Path) -> str:
    stem = source.name if source.is_dir() else source.stem
    return "PixelDRL-MG " + "".join(c if c in NAME_CHARACTERS else "-" for c in stem)[:100]


def check_name(name: str) -> str:
    if not 5 <= len(name) <= 128 or set(name) - set(NAME_CHARACTERS):
        raise InputError(f"package name {name!r}: bioimage.io wants 5 to 128 letters, digits, spaces and _+-(); "
                         "choose another with --name")
    return name


def _read_card(card) -> str:
    try:
        return Path(card).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise InputError(f"cannot read the model card {card} ({err})") from None


def pick_test_slice(in_channels: int, test_image=None, channel_axis=None, sample: str | None = None,
               own_sample: bool = False) -> tuple[np.ndarray, str, list[str]]:
    """The test input as (1, C, H, W) float32 raw values, where it came from, and the channel names.

    From ``test_image`` (its middle slice for a volume), else the middle slice of the bundled
    ``sample``, else a synthetic disc on a noisy background (discs of training/synthetic.py)."""
    names = ["image"] if in_channels == 1 else [f"channel{i}" for i in range(in_channels)]
    if test_image is not None:
        image = read_image(test_image).array
        source = Path(test_image).name
    elif sample is not None:
        data = SAMPLES[sample]()
        image, channel_axis, source = data.image, (-1 if data.rgb else None), data.meta.get("source", sample)
        source = f"the bundled {sample} sample ({data.meta.get('case', '?')}; {source})"
        if own_sample and data.meta.get("channels"):
            names = list(data.meta["channels"])
    else:
        from .synthetic import discs

        image = np.repeat(discs(1, seed=0, size=64)[0][0], in_channels, axis=0)  # (C, 64, 64)
        channel_axis, source = 0, "a synthetic disc on a noisy background"
    image = check_finite_numeric(np.asarray(image), source)
    layout = resolve_layout(image.shape, in_channels, channel_axis, source)
    slices = raw_slices(image, layout)
    middle = len(slices) // 2
    where = f"slice {middle} of {len(slices)} of {source}" if layout.is_volume else source
    x = np.ascontiguousarray(slices[middle : middle + 1], dtype=np.float32)
    if min(x.shape[-2:]) < MIN_SIZE:
        raise InputError(f"the test image {where} is {x.shape[-2]}x{x.shape[-1]}; give one of at least {MIN_SIZE}x{MIN_SIZE}")
    return x, where, names


def _bundled_card(source: Path) -> str | None:
    card = BUNDLED_DIR / f"{source.stem}.md"
    return card.read_text(encoding="utf-8") if source.parent == BUNDLED_DIR and card.is_file() else None


def generated_card(name: str, loaded: LoadedModel) -> str:
    """A short model card from what the checkpoint records of its training."""
    cfg, info = loaded.config, loaded.info
    data = _record(info, "data")
    lines = [f"# Model card: {name}", "",
             f"- **Network**: PixelDRL-MG, `{cfg.preset}` preset ({cfg.arch}), {cfg.in_channels} input channel(s), "
             f"t_max {cfg.t_max}, post-processing `{cfg.postprocess}`, keep threshold {cfg.keep_threshold:g}; "
             f"{count_parameters(loaded.model):,} parameters."]
    if data:
        label = f", label {data['label']}" if data.get("label") is not None else ""
        lines.append(f"- **Data**: {data.get('dataset', '?')} from `{data.get('path', '?')}`{label}; split by "
                     f"{data.get('split_by', '?')}, seed {data.get('seed', '?')}.")
    if isinstance(info.get("val_dice"), (int, float)):
        lines.append(f"- **Training**: the weights of epoch {info.get('epoch', '?')}, validation DICE "
                     f"{float(info['val_dice']):.4f}.")
    metrics = _record(info, "test_metrics")
    shown = ", ".join(f"{k.upper()} {float(metrics[k]):.4f}" for k in METRIC_NAMES if isinstance(metrics.get(k), (int, float)))
    if shown:
        lines.append(f"- **Test**: {shown} ({metrics.get('split', 'test split')}).")
    lines.append(f"- **Written by**: napari-pixeldrl {info.get('package_version', '?')}.")
    return "\n".join(lines) + "\n"


def _record(info: dict, key: str) -> dict:
    """``info[key]`` when it is a JSON object (a checkpoint's info is free-form), else {}."""
    value = info.get(key)
    return value if isinstance(value, dict) else {}


def package_section(source: Path, loaded: LoadedModel, test_from: str) -> str:
    """How to use and check the package; bioimage.io asks for a 'Validation' section."""
    lo, hi = PERCENTILES
    return f"""
## This bioimage.io package

Made by napari-pixeldrl {__version__} from `{source.name}` on {datetime.now(timezone.utc):%Y-%m-%d}.

- `{CHECKPOINT_NAME}`: the napari-pixeldrl checkpoint (weights and config, safetensors). napari-pixeldrl
  loads a package through this file only: `pixeldrl predict --checkpoint model.zip IN OUT`, or
  *Load checkpoint file...* in the Segment widget.
- `weights.pt`: the same weights as a PyTorch state dict of
  `napari_pixeldrl.model.bioimage.PixelDRLEpisode`, for bioimage.io tools; they need napari-pixeldrl
  installed in their Python environment. One forward runs the whole episode (t_max {loaded.config.t_max} steps)
  and returns the final mask (1 object, 0 background).
- Preprocessing: each channel of each slice scaled so that its {lo} and {hi} percentiles map to 0 and 1,
  then clipped to [0, 1] (`scale_range` + `clip`), as napari-pixeldrl does. Where a channel's two percentiles
  coincide (a nearly constant slice), napari-pixeldrl falls back to the channel's minimum and maximum and
  bioimage.io tools do not, so the masks of such slices can differ.
- Test input: {test_from}. The test output is the mask napari-pixeldrl's own inference gives for it.

## Validation

`bioimageio test model.zip` runs the package as bioimage.io tools do and checks that it reproduces
the test output. To measure the model on labelled data:
`pixeldrl evaluate --checkpoint model.zip --dataset DATASET --data FOLDER --split test`
(DICE, PPV, SEN, IoU, BIoU and HD95 per slice, as in the paper).
"""


def _write_parts(folder: Path, source: Path, loaded: LoadedModel, test_input, test_output, card: str) -> dict:
    """The package's files in ``folder``, by role."""
    files = {"checkpoint": folder / CHECKPOINT_NAME, "weights": folder / "weights.pt",
             "test_input": folder / "test_input.npy", "test_output": folder / "test_output.npy",
             "sample_input": folder / "sample_input.tif", "sample_output": folder / "sample_output.tif",
             "cover": folder / "cover.png", "documentation": folder / "README.md"}
    # The native checkpoint, byte for byte as it was (a package's own attachment when re-exporting one).
    files["checkpoint"].write_bytes(read_package_checkpoint(source) if is_package(source) else source.read_bytes())
    episode = PixelDRLEpisode(**kwargs_of(loaded))
    episode.network.load_state_dict(loaded.model.state_dict())
    torch.save(episode.state_dict(), files["weights"])
    np.save(files["test_input"], test_input)
    np.save(files["test_output"], test_output)
    # The same slice for people and viewers: the raw input (C, H, W) and the mask as TIFFs, and a cover.
    tifffile.imwrite(files["sample_input"], test_input[0])
    tifffile.imwrite(files["sample_output"], test_output[0, 0].astype(np.uint8))
    Image.fromarray(cover_image(test_input, test_output)).save(files["cover"])
    files["documentation"].write_text(card, encoding="utf-8")
    return files


def cover_image(test_input: np.ndarray, test_output: np.ndarray) -> np.ndarray:
    """(H, 2W, 3) uint8: the normalised test slice (its first three channels as RGB, else
    its first as grey), and beside it the same with the mask tinted red."""
    x = normalize_slice(test_input[0])
    rgb = np.moveaxis(x[:3] if len(x) >= 3 else np.repeat(x[:1], 3, axis=0), 0, -1)
    tinted = rgb.copy()
    inside = test_output[0, 0] > 0
    tinted[inside] = 0.5 * tinted[inside] + 0.5 * np.array([1.0, 0.15, 0.15], np.float32)
    return (np.concatenate([rgb, tinted], axis=1) * 255).round().astype(np.uint8)


def kwargs_of(loaded: LoadedModel) -> dict:
    """The model config as plain JSON values: the wrapper's keyword arguments in rdf.yaml."""
    return json.loads(json.dumps(loaded.config.to_dict()))


def describe(name: str, loaded: LoadedModel, files: dict, channels: list[str], test_from: str, authors: list[str]):
    """The model description (bioimageio.spec ModelDescr, format 0.5)."""
    from bioimageio.spec.model import v0_5 as m

    cfg = loaded.config
    image, mask = m.TensorId("image"), m.TensorId("mask")
    y, x = m.AxisId("y"), m.AxisId("x")
    # Any slice side from MIN_SIZE up: the wrapper pads to a multiple of 8 and crops back, as
    # napari-pixeldrl does, so a tool never pads the raw image itself (which would change the percentiles).
    size = m.ParameterizedSize(min=MIN_SIZE, step=1)
    axes = [m.BatchAxis(), m.ChannelAxis(channel_names=channels), m.SpaceInputAxis(id=y, size=size),
            m.SpaceInputAxis(id=x, size=size)]
    lo, hi = PERCENTILES
    preprocessing = [
        m.EnsureDtypeDescr(kwargs=m.EnsureDtypeKwargs(dtype="float32")),
        # Per sample, per channel, over the slice: model/preprocess.py's normalisation.
        m.ScaleRangeDescr(kwargs=m.ScaleRangeKwargs(axes=[y, x], min_percentile=lo, max_percentile=hi)),
        m.ClipDescr(kwargs=m.ClipKwargs(min=0.0, max=1.0)),
        m.EnsureDtypeDescr(kwargs=m.EnsureDtypeKwargs(dtype="float32")),
    ]
    inputs = [m.InputTensorDescr(
        id=image, axes=axes, preprocessing=preprocessing, test_tensor=m.FileDescr(source=files["test_input"]),
        sample_tensor=m.FileDescr(source=files["sample_input"]),
        description=f"a 2D slice, {cfg.in_channels} channel(s), any intensity range")]
    outputs = [m.OutputTensorDescr(
        id=mask, test_tensor=m.FileDescr(source=files["test_output"]),
        sample_tensor=m.FileDescr(source=files["sample_output"]),
        axes=[m.BatchAxis(), m.ChannelAxis(channel_names=["mask"]),
              m.SpaceOutputAxis(id=y, size=m.SizeReference(tensor_id=image, axis_id=y)),
              m.SpaceOutputAxis(id=x, size=m.SizeReference(tensor_id=image, axis_id=x))],
        data=m.NominalOrOrdinalDataDescr(values=[0.0, 1.0], type="float32"),
        description="the final mask f(T) of the episode: 1 object, 0 background")]
    weights = m.WeightsDescr(pytorch_state_dict=m.PytorchStateDictWeightsDescr(
        source=files["weights"], pytorch_version=m.Version(torch.__version__.split("+")[0]),
        architecture=m.ArchitectureFromLibraryDescr(
            import_from=PixelDRLEpisode.__module__, callable=m.Identifier(PixelDRLEpisode.__name__),
            kwargs=kwargs_of(loaded))))
    data = _record(loaded.info, "data")
    trained_on = f" Trained on {data['dataset']}." if data.get("dataset") else ""
    tags = ["2d", "pytorch", "semantic-segmentation", "other", "medical-imaging", "mri", "reinforcement-learning",
            "pixeldrl-mg", "napari"]
    if data.get("dataset") == "lgg":
        tags.append("brain")
    if cfg.arch == "unet":
        tags.append("unet")
    return m.ModelDescr(
        name=name,
        description=(f"PixelDRL-MG: pixel-level deep reinforcement learning segmentation (Liu et al., Sci. Rep. 2025). "
                     f"Each pixel is an agent that keeps or zeroes itself over {cfg.t_max} steps. Preset {cfg.preset}, "
                     f"{cfg.in_channels} input channel(s).{trained_on} Made with napari-pixeldrl {__version__}."),
        authors=[m.Author(name=a) for a in authors],
        cite=[m.CiteEntry(**CITATION)],
        license=LICENSE,
        tags=tags,
        documentation=m.FileDescr(source=files["documentation"]),
        covers=[m.FileDescr(source=files["cover"])],
        attachments=[m.FileDescr(source=files["checkpoint"])],
        inputs=inputs,
        outputs=outputs,
        weights=weights,
        version="1.0.0",  # the package's own version: the first export of these weights
        config=m.Config(
            bioimageio=m.BioimageioConfig(
                architecture_type="PixelDRL-MG",
                task="semantic-segmentation",
                model_parameter_count=count_parameters(loaded.model),
            ),
            # Read by no tool: a record of what the package was made from.
            pixeldrl={"checkpoint": CHECKPOINT_NAME, "napari_pixeldrl_version": __version__, "test_input": test_from},
        ),
    )


def _save(descr, path: str) -> None:
    """Write and validate the zip (save_bioimageio_package refuses an invalid one), then
    check that napari-pixeldrl finds its checkpoint inside."""
    from bioimageio.spec import save_bioimageio_package

    save_bioimageio_package(descr, output_path=Path(path))
    read_package_checkpoint(Path(path))
