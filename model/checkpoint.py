"""Checkpoints: weights in safetensors, the config as JSON in the file's header.

One file carries everything needed to rebuild the model, and loading it never unpickles
anything. The header holds ``format`` (always ``napari-pixeldrl``), ``format_version``
and ``config``: a JSON object with the model config (preset, architecture, input
channels, normalisation) and free-form ``info`` (data it was trained on, metrics,
package version, ...). Writes are atomic: a temporary file in the same folder, then
``os.replace``, so a crash or a full disk leaves the previous file intact.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from napari_pixeldrl.core import __version__
from napari_pixeldrl.core.atomic import atomic_write
from napari_pixeldrl.core.errors import CheckpointError, InputError

from .config import ModelConfig
from .network import build_model

FORMAT = "napari-pixeldrl"
FORMAT_VERSION = 1
BUNDLED_DIR = Path(__file__).parent / "weights"


@dataclass
class LoadedModel:
    model: torch.nn.Module
    config: ModelConfig
    info: dict = field(default_factory=dict)
    path: Path | None = None

    @property
    def header(self) -> dict:
        """What a checkpoint of this model holds besides its weights (as :func:`read_header`)."""
        return {"model": self.config.to_dict(), "info": self.info}


def save_checkpoint(path, model: torch.nn.Module, config: ModelConfig, info: dict | None = None, *, half: bool = False) -> Path:
    """Write ``model``'s weights and ``config`` to ``path`` (.safetensors), atomically."""
    info = dict(info or {})
    info.setdefault("package_version", __version__)
    tensors = {}
    for name, tensor in model.state_dict().items():
        t = tensor.detach().to("cpu").contiguous()
        if half and t.is_floating_point():
            t = t.half()
        tensors[name] = t
    header = {
        "format": FORMAT,
        "format_version": str(FORMAT_VERSION),
        "config": json.dumps({"model": config.to_dict(), "info": info}),
    }
    atomic_write(Path(path), lambda tmp: save_file(tensors, tmp, metadata=header))
    return Path(path)


def bundled_models() -> dict[str, Path]:
    """The trained models shipped with the package, by name."""
    if not BUNDLED_DIR.is_dir():
        return {}
    return {p.stem: p for p in sorted(BUNDLED_DIR.glob("*.safetensors"))}


def resolve_checkpoint(name_or_path) -> Path:
    """A bundled model's name (``lgg``, ``heart``) or a file path, as a path that exists."""
    bundled = bundled_models()
    if str(name_or_path) in bundled:
        return bundled[str(name_or_path)]
    path = Path(name_or_path)
    if not path.exists():
        names = ", ".join(bundled) or "none installed"
        raise CheckpointError(f"checkpoint {str(name_or_path)!r} is neither a file nor a bundled model ({names})")
    return path


def read_header(path) -> dict:
    """The parsed header of a napari-pixeldrl checkpoint; refuses anything else."""
    path = resolve_checkpoint(path)
    if path.is_dir():
        raise CheckpointError(f"{path} is a folder; give the .safetensors file inside it")
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as fh:
            meta = fh.metadata() or {}
    except (SafetensorError, OSError, ValueError) as err:
        # Only now look at the first bytes: a safetensors header length may start with any byte.
        with open(path, "rb") as fh:
            head = fh.read(2)
        if head == b"PK" or head[:1] == b"\x80":
            raise CheckpointError(
                f"{path} is a pickled PyTorch file; napari-pixeldrl only loads safetensors checkpoints, "
                "which cannot run code when opened"
            ) from None
        raise CheckpointError(f"{path} is not a readable safetensors file ({err})") from None
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{path} is a safetensors file but not a napari-pixeldrl checkpoint (no '{FORMAT}' header)")
    version = meta.get("format_version")
    if version != str(FORMAT_VERSION):
        raise CheckpointError(
            f"{path} has checkpoint format version {version}; this napari-pixeldrl ({__version__}) reads version {FORMAT_VERSION}"
        )
    try:
        return json.loads(meta["config"])
    except (KeyError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{path} has a damaged config header ({err})") from None


def header_of(start) -> dict:
    """The header of a model given as a LoadedModel, a checkpoint file or a bundled name."""
    return start.header if isinstance(start, LoadedModel) else read_header(start)


def load_checkpoint(path, device: str | torch.device = "cpu") -> LoadedModel:
    """Rebuild the model a checkpoint describes and load its weights (float32)."""
    path = resolve_checkpoint(path)
    header = read_header(path)
    try:
        config = ModelConfig.from_dict(header["model"])
    except (KeyError, TypeError, InputError) as err:
        raise CheckpointError(f"{path} has a model config this version cannot build ({err})") from None
    if not isinstance(header.get("info", {}), dict):
        raise CheckpointError(f"{path} has a damaged config header (its 'info' is not a JSON object)")
    model = build_model(config)
    try:
        tensors = load_file(str(path), device="cpu")
    except (SafetensorError, OSError) as err:
        raise CheckpointError(f"{path}: cannot read weights ({err})") from None
    state = model.state_dict()
    missing = sorted(set(state) - set(tensors))
    unexpected = sorted(set(tensors) - set(state))
    wrong = sorted(k for k in set(state) & set(tensors) if state[k].shape != tensors[k].shape)
    if missing or unexpected or wrong:
        detail = "; ".join(
            f"{what}: {names[:3]}{'...' if len(names) > 3 else ''}"
            for what, names in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong))
            if names
        )
        raise CheckpointError(f"{path}: weights do not match its config ({detail})")
    broken = sorted(k for k, v in tensors.items() if v.is_floating_point() and not bool(torch.isfinite(v).all()))
    if broken:
        raise CheckpointError(f"{path}: weights that are NaN or infinite in {broken[:3]}{'...' if len(broken) > 3 else ''}; "
                              "the run that wrote it diverged: use an earlier checkpoint")
    model.load_state_dict({k: v.to(state[k].dtype) for k, v in tensors.items()})
    model.to(device).eval()
    return LoadedModel(model=model, config=config, info=header.get("info", {}), path=path)
