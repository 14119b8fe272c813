"""The package's layers point down only (README, "Layout"): checked on every module's imports."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "cmrseg"

#: Layer of each module (dotted name below ``cmrseg``), most specific prefix first.
LAYERS: dict[str, int] = {
    "core": 1,
    "conf": 2,  # conf/ of the repository, shipped as cmrseg.conf (config files and their reader)
    "t2star": 2,
    "stats": 2,
    "synth": 2,
    "classical": 2,
    "data.echo_stack": 2,
    "data.dicom": 2,
    "data.splits": 2,
    "data.nnunet": 2,
    "data": 3,
    "models": 3,
    "metrics": 3,
    "modules": 3,
    "inference": 3,
    "report": 4,
    "callbacks": 4,
    "cli": 4,
    "utils": 4,
}

#: Third-party packages a layer must not import (layer 1 is numpy and the standard library).
FORBIDDEN = {
    1: ("torch", "lightning", "scipy", "skimage", "h5py", "hydra", "omegaconf"),
    2: ("torch", "lightning", "torchmetrics", "hydra"),
}


def _layer(module: str) -> int:
    rest = module.removeprefix("cmrseg.")
    matches = [p for p in LAYERS if rest == p or rest.startswith(p + ".")]
    if not matches:
        raise AssertionError(f"{module}: no layer assigned in tests/test_layers.py")
    return LAYERS[max(matches, key=len)]


def _modules() -> list[tuple[str, Path]]:
    out = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        if name != "cmrseg":
            out.append((name, path))
    return [*out, ("cmrseg.conf", PACKAGE.parent / "conf" / "__init__.py")]


def _imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.append(node.module)
    return names


@pytest.mark.parametrize(("module", "path"), _modules(), ids=lambda v: str(v))
def test_module_imports_only_its_layer_or_below(module: str, path: Path) -> None:
    layer = _layer(module)
    for name in _imports(path):
        if name.startswith("cmrseg."):
            assert _layer(name) <= layer, (
                f"{module} (layer {layer}) imports {name} (layer {_layer(name)})"
            )
        else:
            top = name.split(".")[0]
            assert top not in FORBIDDEN.get(layer, ()), f"{module} (layer {layer}) imports {top}"
