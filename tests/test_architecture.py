"""The house's rules, read from the code: each room imports only the rooms below it, and
the library and the command line work without napari, Qt or vispy."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Folder of the checkout -> the package it installs as (pyproject's package-dir).
ROOMS = {"core": "napari_pixeldrl.core", "model": "napari_pixeldrl.model", "sample_data": "napari_pixeldrl.sample_data",
         "training": "napari_pixeldrl.training", "napari_pixeldrl": "napari_pixeldrl"}
# What each room may import: the ground floor below everything, the plugin on top.
ALLOWED = {
    "core": {"core"},
    "model": {"core", "model"},
    "sample_data": {"core", "sample_data"},
    "training": {"core", "model", "sample_data", "training"},
}


def _room_of(module: str) -> str | None:
    """The room a module of this package lies in (the longest package prefix), None for others."""
    best = None
    for room, package in ROOMS.items():
        if (module == package or module.startswith(package + ".")) and (best is None or len(package) > len(ROOMS[best])):
            best = room
    return best


def _imports(path: Path, package: str):
    """Every module ``path`` imports, at any depth (function-level imports too), made absolute."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module
            yield module
            yield from (f"{module}.{alias.name}" for alias in node.names)  # `from pkg import submodule`


@pytest.mark.parametrize("room", sorted(ALLOWED))
def test_each_room_imports_only_the_rooms_below_it(room):
    wrong = []
    for path in sorted((ROOT / room).rglob("*.py")):
        rel = path.relative_to(ROOT / room).with_suffix("")
        parts = list(rel.parts)
        package = ".".join([ROOMS[room], *parts[:-1]]) if parts[-1] != "__init__" else ".".join([ROOMS[room], *parts[:-1]])
        for module in _imports(path, package):
            target = _room_of(module)
            if target is not None and target not in ALLOWED[room]:
                wrong.append(f"{path.relative_to(ROOT)} imports {module} ({target}/)")
    assert not wrong, "\n".join(wrong)


def test_library_and_command_line_import_no_gui():
    code = (
        "import sys\n"
        "import napari_pixeldrl, napari_pixeldrl.core.io, napari_pixeldrl.core.checks, napari_pixeldrl.core.device\n"
        "import napari_pixeldrl.model.inference, napari_pixeldrl.model.checkpoint, napari_pixeldrl.sample_data\n"
        "import napari_pixeldrl.training.trainer, napari_pixeldrl.training.evaluate, napari_pixeldrl.training.demo\n"
        "import napari_pixeldrl.model.bioimage, napari_pixeldrl.training.export\n"
        "from napari_pixeldrl.training.cli import main\n"
        "assert main(['info', '--json']) == 0\n"
        "gui = sorted(m for m in sys.modules if m.split('.')[0] in ('napari', 'qtpy', 'vispy', 'PyQt5', 'PySide2', 'PyQt6', 'PySide6'))\n"
        "print('GUI:', gui, file=sys.stderr)\n"
        "sys.exit(1 if gui else 0)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
