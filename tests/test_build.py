"""build.py: the extension zip, checked by Blender's own validator and installed by Blender's
own extension installer (offline: a tiny local wheel stands in for the downloaded ones)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TINY = "hrn_tiny_dep-0.1.0-py3-none-any.whl"


def _blender_ext() -> Path:
    bpy = pytest.importorskip("bpy")
    scripts = Path(bpy.__file__).resolve().parents[2]  # bpy/<X.Y>/scripts/modules/bpy -> scripts
    path = scripts / "addons_core" / "bl_pkg" / "cli" / "blender_ext.py"
    assert path.is_file(), path
    return path


def _write_wheel(path: Path, module: str, version: str = "0.1.0") -> None:
    """A minimal valid pure-Python wheel providing ``module`` with ``VALUE = 42``."""
    dist_info = f"{module}-{version}.dist-info"
    with zipfile.ZipFile(path, "w") as whl:
        whl.writestr(f"{module}/__init__.py", "VALUE = 42\n")
        whl.writestr(f"{dist_info}/METADATA", f"Metadata-Version: 2.1\nName: {module}\nVersion: {version}\n")
        whl.writestr(f"{dist_info}/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
                                           "Tag: py3-none-any\n")
        whl.writestr(f"{dist_info}/RECORD", "")


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("build")
    wheels = tmp / "wheels"
    wheels.mkdir()
    _write_wheel(wheels / TINY, "hrn_tiny_dep")
    # Distributions build.py must drop: Blender's own numpy, and jax (never imported).
    _write_wheel(wheels / "numpy-1.26.4-cp311-cp311-manylinux_2_17_x86_64.whl", "numpy", "1.26.4")
    _write_wheel(wheels / "jax-0.4.30-py3-none-any.whl", "jax", "0.4.30")
    done = subprocess.run([sys.executable, str(ROOT / "build.py"), "--platform", "linux-x64",
                           "--no-download", "--wheels-dir", str(wheels), "--out", str(tmp / "dist")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return tmp / "dist" / "hrn_blender-0.1.0-linux_x64.zip"


def test_zip_layout_manifest_and_stored_wheels(built):
    with zipfile.ZipFile(built) as archive:
        names = set(archive.namelist())
        manifest = tomllib.loads(archive.read("blender_manifest.toml").decode())
        wheel_info = archive.getinfo(f"wheels/{TINY}")
    assert {"__init__.py", "blender_manifest.toml", "scene/build.py", "engine/__init__.py",
            "engine/result.py", "engine/cli.py"} <= names
    assert "engine/head/data/head_model.npz" in names
    assert not any("__pycache__" in n or n.endswith(".pyc") for n in names)
    assert not any("benchmark" in n for n in names)  # outside the engine, never shipped
    assert manifest["wheels"] == [f"./wheels/{TINY}"] and manifest["platforms"] == ["linux-x64"]
    assert manifest["id"] == "hrn_blender" and manifest["blender_version_min"] == "4.2.0"
    assert wheel_info.compress_type == zipfile.ZIP_STORED
    assert not any("numpy" in n or "jax" in n for n in names)


def test_blender_validator_accepts_the_zip(built):
    done = subprocess.run([sys.executable, str(_blender_ext()), "validate", str(built)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def test_blender_installs_and_enables_the_zip(built, tmp_path):
    """Install through Blender's extension operator into a throw-away repository and user
    folder; enabling registers the add-on from bl_ext, with the bundled engine and wheel."""
    script = tmp_path / "install.py"
    script.write_text(textwrap.dedent(f"""
        import json, sys
        import bpy
        bpy.ops.wm.read_factory_settings(use_empty=True)
        repo = bpy.context.preferences.extensions.repos.new(
            name="hrn_test", module="hrn_test", custom_directory={str(tmp_path / "repo")!r}, source="USER")
        bpy.ops.extensions.package_install_files(filepath={str(built)!r}, repo="hrn_test",
                                                 enable_on_install=True)
        api = sys.modules["bl_ext.hrn_test.hrn_blender.engine_api"]
        import hrn_tiny_dep
        print("RESULT " + json.dumps({{
            "enabled": "bl_ext.hrn_test.hrn_blender" in bpy.context.preferences.addons,
            "panel": hasattr(bpy.types, "HRN_PT_reconstruct"),
            "engine_parent": str(api.ENGINE_PARENT),
            "wheel_value": hrn_tiny_dep.VALUE}}))
    """))
    env = dict(os.environ, BLENDER_USER_RESOURCES=str(tmp_path / "user"))
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=120)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    line = next(l for l in done.stdout.splitlines() if l.startswith("RESULT "))
    report = json.loads(line[len("RESULT "):])
    assert report["enabled"] and report["panel"] and report["wheel_value"] == 42
    assert Path(report["engine_parent"]) == tmp_path / "repo" / "hrn_blender"
