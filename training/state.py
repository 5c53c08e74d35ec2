"""The resumable training state in one safetensors file, without pickle.

``training_state.safetensors`` holds the model weights (``model.*``), every tensor of the
optimizer's state dict and the RNG states as tensors; its header holds one JSON object
with everything else (epoch, best score, scheduler, history, the train config, and the
optimizer's non-tensor entries with ``{"__tensor__": key}`` placeholders); with a moving
average of the weights on, its state as ``averaged.*``. One file,
written atomically, so weights and optimizer state can never come from different epochs.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from napari_pixeldrl.core.errors import CheckpointError
from napari_pixeldrl.core.atomic import atomic_write

STATE_FORMAT = "napari-pixeldrl-training-state"
STATE_VERSION = "1"
TENSOR = "__tensor__"


def flatten(obj, prefix: str, tensors: dict) -> object:
    """Move the tensors of a nested dict/list into ``tensors``; return the JSON-able rest."""
    if isinstance(obj, torch.Tensor):
        key = prefix
        tensors[key] = obj.detach().to("cpu").contiguous()
        return {TENSOR: key}
    if isinstance(obj, dict):
        # JSON keys are strings: remember integer keys (the optimizer's parameter ids).
        return {
            "__dict__": [[k, flatten(v, f"{prefix}.{k}", tensors)] for k, v in obj.items()],
        }
    if isinstance(obj, (list, tuple)):
        return [flatten(v, f"{prefix}.{i}", tensors) for i, v in enumerate(obj)]
    return obj


def unflatten(obj, tensors: dict):
    if isinstance(obj, dict):
        if TENSOR in obj:
            return tensors[obj[TENSOR]]
        if "__dict__" in obj:
            return {k: unflatten(v, tensors) for k, v in obj["__dict__"]}
        return {k: unflatten(v, tensors) for k, v in obj.items()}
    if isinstance(obj, list):
        return [unflatten(v, tensors) for v in obj]
    return obj


def save_training_state(path, *, model: torch.nn.Module, optimizer, scheduler, scaler=None, meta: dict,
                        averaged: torch.nn.Module | None = None) -> Path:
    """Write the whole resumable state atomically. ``meta`` must be JSON-serialisable;
    ``averaged`` (an ``AveragedModel``: the moving average of the weights) is optional."""
    tensors: dict[str, torch.Tensor] = {}
    for name, t in model.state_dict().items():
        tensors[f"model.{name}"] = t.detach().to("cpu").contiguous()
    rng = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        rng["cuda"] = torch.cuda.get_rng_state_all()
    body = {
        "meta": meta,
        "optimizer": flatten(optimizer.state_dict(), "optimizer", tensors),
        "scheduler": flatten(scheduler.state_dict(), "scheduler", tensors),
        "scaler": flatten(scaler.state_dict(), "scaler", tensors) if scaler is not None else None,
        "rng": flatten(rng, "rng", tensors),
        "averaged": flatten(averaged.state_dict(), "averaged", tensors) if averaged is not None else None,
    }
    header = {"format": STATE_FORMAT, "format_version": STATE_VERSION, "state": json.dumps(body)}
    atomic_write(Path(path), lambda tmp: save_file(tensors, tmp, metadata=header))
    return Path(path)


def load_training_state(path) -> tuple[dict, dict]:
    """(model state dict, the rest: meta/optimizer/scheduler/scaler/rng with tensors restored,
    and ``averaged``: the moving average's state dict, None when none was saved)."""
    path = Path(path)
    try:
        with safe_open(str(path), framework="pt") as fh:
            header = fh.metadata() or {}
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(f"{path} is not a readable training state ({err})") from None
    if header.get("format") != STATE_FORMAT or header.get("format_version") != STATE_VERSION:
        raise CheckpointError(f"{path} is not a napari-pixeldrl training state of version {STATE_VERSION}")
    try:
        body = unflatten(json.loads(header["state"]), tensors)
    except (KeyError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{path} has a damaged header ({err})") from None
    model_state = {k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")}
    return model_state, body


def restore_rng(rng: dict) -> None:
    torch.set_rng_state(rng["torch"])
    if "cuda" in rng and torch.cuda.is_available():
        try:
            torch.cuda.set_rng_state_all(rng["cuda"])
        except RuntimeError:
            pass  # another GPU count than when saved
