"""Layering: the engine runs alone. No module under engine/ imports bpy (or Blender's other
modules) or the extension, reaches above the engine package with a relative import (the
extension bundles the engine as ``hrn_blender.engine``), or names one of them as a module in a
string (what a child process ``python -m hrn_blender...`` or ``importlib`` would need)."""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ENGINE = ROOT / "engine"
FORBIDDEN = ("bpy", "bmesh", "mathutils", "bpy_extras", "hrn_blender")
MODULE_NAME = re.compile(rf"^({'|'.join(FORBIDDEN)})(\.[A-Za-z_]\w*)*$")
MODULES = sorted(ENGINE.rglob("*.py"))


def problems(source: str, depth: int) -> list[str]:
    """Breaches in one module's ``source``; ``depth``: its folder depth under engine/
    (engine/x.py is 1, engine/io/x.py is 2)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [f"line {node.lineno}: import {a.name}" for a in node.names
                      if a.name.split(".")[0] in FORBIDDEN]
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0 and node.module.split(".")[0] in FORBIDDEN:
                found.append(f"line {node.lineno}: from {node.module} import")
            if node.level > depth:
                found.append(f"line {node.lineno}: from {'.' * node.level}{node.module or ''} import "
                             "(above the engine package)")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and MODULE_NAME.match(node.value):
            found.append(f"line {node.lineno}: names the module {node.value!r}")
    return found


def test_every_engine_module_is_checked():
    assert len(MODULES) > 50 and ENGINE / "cli.py" in MODULES and ENGINE / "io" / "exr.py" in MODULES


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(ROOT)))
def test_engine_module_needs_neither_blender_nor_the_extension(path):
    assert problems(path.read_text(), len(path.relative_to(ENGINE).parts)) == []


def test_the_check_sees_each_kind_of_breach():
    source = ('"""Docs may mention hrn_blender.headless in prose."""\n'
              "import bpy\nfrom hrn_blender.scene import build\nfrom ..errors import EngineError\n"
              # how engine/cli.py started the scene builder for --blend before issue 15
              "cmd = [sys.executable, '-m', 'hrn_blender.headless', 'out']\n")
    assert len(problems(source, depth=1)) == 4
    assert len(problems(source, depth=2)) == 3  # engine/io/x.py may import ..errors

