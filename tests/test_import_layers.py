"""The package's layers, enforced: every import points down, and a fresh process loads only what its layer allows.

Layers (README, ARCHITECTURE): model → inference → kit / pading / semantics / data / evaluation /
drawing → runtime → export, training, node, demo → cli, bench; experiments/ sits on top and is not
installed. `ALLOWED` lists, per subpackage of zsp_ros, the other subpackages it may import (at the top
of a file or inside a function alike).
"""
from __future__ import annotations

import ast
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "zsp_ros"

_BASE = {"utils"}
_BELOW_RUNTIME = _BASE | {"model", "inference", "drawing", "semantics", "data", "evaluation", "kit", "pading"}
_APPS = _BELOW_RUNTIME | {"runtime"}
ALLOWED: dict[str, set[str]] = {
    "utils": set(),
    "model": _BASE,
    "inference": _BASE,
    "drawing": _BASE,
    "semantics": _BASE,
    "data": _BASE | {"drawing", "inference"},
    "evaluation": _BASE | {"data", "inference"},
    "kit": _BASE | {"model", "inference", "semantics"},
    "pading": _BASE | {"model", "kit", "semantics"},
    "runtime": _BELOW_RUNTIME,
    "export": _APPS,
    "training": _APPS,
    "node": _APPS | {"export"},
    "demo": _APPS | {"export", "node"},
    "bench": _APPS | {"export", "node", "training"},
    "cli": _APPS | {"export", "node", "training", "demo", "bench"},
}


def _project_imports(path: Path) -> list[tuple[int, str]]:
    """(line, subpackage) of every absolute import of zsp_ros.<subpackage> in a file."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            modules = [node.module]
            if node.module == "zsp_ros":
                modules = [f"zsp_ros.{alias.name}" for alias in node.names]
        else:
            continue
        for module in modules:
            parts = module.split(".")
            if parts[0] == "zsp_ros" and len(parts) > 1:
                found.append((node.lineno, parts[1]))
    return found


def test_every_subpackage_has_a_rule():
    packages = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()}
    assert packages == set(ALLOWED), "add the new subpackage to ALLOWED (and to README ARCHITECTURE)"


def test_every_import_points_down():
    wrong = []
    for path in sorted(PACKAGE.rglob("*.py")):
        layer = path.relative_to(PACKAGE).parts[0]
        if layer not in ALLOWED:                     # zsp_ros/__init__.py
            continue
        for line, target in _project_imports(path):
            if target != layer and target not in ALLOWED[layer]:
                wrong.append(f"{path.relative_to(ROOT)}:{line}: {layer} imports {target}")
    assert not wrong, "imports against the layers:\n" + "\n".join(wrong)


def test_the_import_rules_have_no_cycle():
    state: dict[str, str] = {}

    def visit(layer: str, trail: list[str]) -> None:
        if state.get(layer) == "done":
            return
        assert state.get(layer) != "open", f"cycle: {' -> '.join(trail + [layer])}"
        state[layer] = "open"
        for below in ALLOWED[layer]:
            visit(below, trail + [layer])
        state[layer] = "done"

    for layer in ALLOWED:
        visit(layer, [])


def _loaded_after_import(module: str) -> set[str]:
    code = (f"import json, sys; import {module}; "
            "print(json.dumps(sorted(m for m in sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


HEAVY_OPTIONAL = {"rclpy", "onnxruntime", "tensorrt", "open_clip", "onnx"}


@pytest.mark.parametrize("module, allowed_layers, forbidden", [
    ("zsp_ros.model.mask2former", {"model", "utils"}, HEAVY_OPTIONAL),
    ("zsp_ros.model.primitive_generator", {"model", "utils"}, HEAVY_OPTIONAL),
    ("zsp_ros.inference.postprocess", {"inference", "utils"}, HEAVY_OPTIONAL),
    ("zsp_ros.kit.model_kit", ALLOWED["kit"] | {"kit"}, HEAVY_OPTIONAL),
    ("zsp_ros.runtime.segmenter", ALLOWED["runtime"] | {"runtime"}, HEAVY_OPTIONAL),
    ("zsp_ros.runtime.registry", ALLOWED["runtime"] | {"runtime"}, HEAVY_OPTIONAL),
    ("zsp_ros.export.on_demand", ALLOWED["export"] | {"export"}, HEAVY_OPTIONAL - {"onnx"}),
    ("zsp_ros.node.zsp_node", ALLOWED["node"] | {"node"}, HEAVY_OPTIONAL - {"rclpy", "onnx"}),
])
def test_a_fresh_process_loads_only_its_layers(module, allowed_layers, forbidden):
    loaded = _loaded_after_import(module)
    layers = {name.split(".")[1] for name in loaded if name.startswith("zsp_ros.")}
    assert layers <= allowed_layers, f"{module} loads {sorted(layers - allowed_layers)}"
    heavy = {name.split(".")[0] for name in loaded} & forbidden
    assert not heavy, f"{module} loads the optional packages {sorted(heavy)} at import time"


def test_runtime_loads_no_training_export_or_ros():
    loaded = _loaded_after_import("zsp_ros.runtime.segmenter")
    assert not {m for m in loaded if m.split(".")[:2] in (["zsp_ros", "training"], ["zsp_ros", "export"],
                                                          ["zsp_ros", "node"])}
    assert "rclpy" not in loaded and "experiments" not in {m.split(".")[0] for m in loaded}


def test_only_zsp_ros_is_installed(tmp_path):
    """The wheel (what colcon and pip install) holds the zsp_ros package and nothing else at the top level."""
    out = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                          "-w", str(tmp_path), str(ROOT)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    wheel = next(tmp_path.glob("zsp_ros-*.whl"))
    with zipfile.ZipFile(wheel) as archive:
        top = {name.split("/")[0] for name in archive.namelist()}
    packages = {t for t in top if not t.endswith((".dist-info", ".data"))}
    assert packages == {"zsp_ros"}, f"installed top-level entries: {sorted(top)}"


def test_project_modules_are_imported_at_the_top_of_files():
    """Function-local imports hide the import graph: only heavy optional packages are imported inside functions."""
    hidden = []
    for path in sorted([*PACKAGE.rglob("*.py"), *(ROOT / "experiments").glob("*.py")]):
        tree = ast.parse(path.read_text(), str(path))
        top = {id(node) for node in tree.body}
        for node in ast.walk(tree):
            if id(node) in top or not isinstance(node, (ast.Import, ast.ImportFrom)):
                continue
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            if not getattr(node, "level", 0) and any(n.split(".")[0] in ("zsp_ros", "experiments") for n in names):
                hidden.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not hidden, "function-local project imports:\n" + "\n".join(hidden)
