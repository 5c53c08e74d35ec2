"""Checkpoints: weights in safetensors, the config as JSON in the file's header.

One file carries everything needed to rebuild the model, and loading it never unpickles
anything. The header holds ``format`` (always ``napari-pixeldrl``), ``format_version``
and ``config``: a JSON object with the model config (preset, architecture, input
channels, normalisation) and free-form ``info`` (data it was trained on, metrics,
package version, ...). Writes are atomic: a temporary file in the same folder, then
``os.replace``, so a crash or a full disk leaves the previous file intact.

Wherever a checkpoint is read, a bioimage.io model package written by ``pixeldrl export``
(a .zip, the folder it unpacks to, or its rdf.yaml) is read too: the checkpoint it carries
as an attachment is loaded (model/package.py), never the pickled weights beside it.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_bytes
from safetensors.torch import load_file, save_file

from napari_pixeldrl.core import __version__
from napari_pixeldrl.core.atomic import atomic_write
from napari_pixeldrl.core.errors import CheckpointError, InputError

from .config import ModelConfig
from .network import build_model
from .package import CHECKPOINT_NAME, is_package, read_package_checkpoint

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
    """The parsed header of a napari-pixeldrl checkpoint, or of the one a bioimage.io
    package carries (``pixeldrl export``); refuses anything else."""
    return _open(resolve_checkpoint(path))[0]


def _open(path: Path) -> tuple[dict, Callable[[], dict]]:
    """(the parsed header, a function reading the tensors) of the checkpoint at ``path``:
    a .safetensors file, or a bioimage.io package (.zip, its folder or its rdf.yaml)
    whose native checkpoint is read, never its pickled weights."""
    if is_package(path):
        data = read_package_checkpoint(path)
        meta = _metadata_of_bytes(data, f"{path} ({CHECKPOINT_NAME} inside)")
        return _parse_header(meta, path), lambda: load_bytes(data)
    if path.is_dir():
        raise CheckpointError(f"{path} is a folder; give the .safetensors file inside it (or a bioimage.io package)")
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as fh:
            meta = fh.metadata() or {}
    except (SafetensorError, OSError, ValueError) as err:
        # Only now look at the first bytes: a safetensors header length may start with any byte.
        with open(path, "rb") as fh:
            head = fh.read(2)
        if head == b"PK" and zipfile.is_zipfile(path) and not _is_torch_zip(path):
            raise CheckpointError(f"{path} is a zip file but not a bioimage.io model package (no rdf.yaml inside)") from None
        if head == b"PK" or head[:1] == b"\x80":
            raise CheckpointError(
                f"{path} is a pickled PyTorch file; napari-pixeldrl only loads safetensors checkpoints, "
                "which cannot run code when opened"
            ) from None
        raise CheckpointError(f"{path} is not a readable safetensors file ({err})") from None
    return _parse_header(meta, path), lambda: load_file(str(path), device="cpu")


def _is_torch_zip(path: Path) -> bool:
    """torch.save's zip format: one folder holding data.pkl."""
    try:
        with zipfile.ZipFile(path) as zf:
            return any(name.endswith("/data.pkl") or name == "data.pkl" for name in zf.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


def _metadata_of_bytes(data: bytes, where: str) -> dict:
    """The ``__metadata__`` of a safetensors file held in memory: an 8-byte little-endian
    length, then that many bytes of JSON (the format's header)."""
    size = int.from_bytes(data[:8], "little") if len(data) >= 8 else 0
    try:
        if not 0 < size <= len(data) - 8:
            raise ValueError("the header length does not fit the file")
        meta = json.loads(data[8 : 8 + size]).get("__metadata__") or {}
        if not isinstance(meta, dict):
            raise ValueError("its metadata is not a JSON object")
    except (ValueError, AttributeError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{where} is not a readable safetensors file ({err})") from None
    return meta


def _parse_header(meta: dict, path: Path) -> dict:
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{path} is a safetensors file but not a napari-pixeldrl checkpoint (no '{FORMAT}' header)")
    version = meta.get("format_version")
    if version != str(FORMAT_VERSION):
        raise CheckpointError(
            f"{path} has checkpoint format version {version}; this napari-pixeldrl ({__version__}) reads version {FORMAT_VERSION}"
        )
    try:
        return json.loads(meta["config"])
    except (KeyError, TypeError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{path} has a damaged config header ({err})") from None


def header_of(start) -> dict:
    """The header of a model given as a LoadedModel, a checkpoint file or a bundled name."""
    return start.header if isinstance(start, LoadedModel) else read_header(start)


def load_checkpoint(path, device: str | torch.device = "cpu") -> LoadedModel:
    """Rebuild the model a checkpoint describes and load its weights (float32)."""
    path = resolve_checkpoint(path)
    header, read_tensors = _open(path)
    try:
        config = ModelConfig.from_dict(header["model"])
    except (KeyError, TypeError, InputError) as err:
        raise CheckpointError(f"{path} has a model config this version cannot build ({err})") from None
    if not isinstance(header.get("info", {}), dict):
        raise CheckpointError(f"{path} has a damaged config header (its 'info' is not a JSON object)")
    model = build_model(config)
    try:
        tensors = read_tensors()
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
