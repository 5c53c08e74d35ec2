"""Reading the native checkpoint out of a bioimage.io model package, without bioimageio.

A package written by ``pixeldrl export`` is a zip (or the folder it unpacks to) holding
``rdf.yaml``, the ``pytorch_state_dict`` weights that bioimage.io tools load, and, as an
attachment under the fixed name :data:`CHECKPOINT_NAME`, the napari-pixeldrl checkpoint
it was made from (safetensors with the JSON config in its header). napari-pixeldrl reads
only that attachment: the pickled ``.pt`` beside it is never opened, so loading a package
runs no code, as loading a checkpoint does not. The attachment is accepted only if its
sha256 is the one ``rdf.yaml`` lists for it, so a package whose parts were swapped or
damaged is refused rather than silently loaded.
"""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

from napari_pixeldrl.core.errors import CheckpointError

CHECKPOINT_NAME = "pixeldrl_checkpoint.safetensors"
DESCRIPTIONS = ("rdf.yaml", "bioimageio.yaml")  # the names bioimage.io gives a package's description


def is_package(path: Path) -> bool:
    """A bioimage.io package: a zip with a description, a folder with one, or the description file."""
    if path.is_dir():
        return any((path / name).is_file() for name in DESCRIPTIONS)
    if path.name in DESCRIPTIONS or path.name.endswith(".bioimageio.yaml"):
        return True
    return zipfile.is_zipfile(path) and _description_name(path) is not None


def _description_name(path: Path) -> str | None:
    try:
        with zipfile.ZipFile(path) as zf:
            names = set(zf.namelist())
    except (zipfile.BadZipFile, OSError):
        return None
    return next((name for name in DESCRIPTIONS if name in names), None)


def read_package_checkpoint(path: Path) -> bytes:
    """The bytes of the native checkpoint inside the package at ``path``, checked
    against the sha256 its description lists; CheckpointError naming the problem otherwise."""
    try:
        if path.is_dir() or not zipfile.is_zipfile(path):  # an unpacked package, or its description file
            description = next(path / n for n in DESCRIPTIONS if (path / n).is_file()) if path.is_dir() else path
            text = description.read_text(encoding="utf-8", errors="replace")
            attachment = description.parent / CHECKPOINT_NAME
            data = attachment.read_bytes() if attachment.is_file() else None
        else:
            with zipfile.ZipFile(path) as zf:
                text = zf.read(_description_name(path)).decode("utf-8", errors="replace")
                data = zf.read(CHECKPOINT_NAME) if CHECKPOINT_NAME in zf.namelist() else None
    except (zipfile.BadZipFile, OSError, EOFError, RuntimeError) as err:
        # BadZipFile also reports a member whose CRC does not match (a damaged download).
        raise CheckpointError(f"{path}: cannot read the bioimage.io package ({err})") from None
    if data is None:
        raise CheckpointError(
            f"{path} is a bioimage.io package without {CHECKPOINT_NAME}: napari-pixeldrl loads only the packages "
            "`pixeldrl export` writes, whose weights it can read without running code")
    # rdf.yaml names each file with its sha256; the attachment must be the one described.
    if hashlib.sha256(data).hexdigest() not in text:
        raise CheckpointError(
            f"{path}: its {CHECKPOINT_NAME} is not the file its description lists (sha256 differs); "
            "the package is damaged: export it again")
    return data
