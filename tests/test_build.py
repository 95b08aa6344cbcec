"""build.py: the extension zip, checked by Blender's own validator and installed by Blender's
own extension installer (offline: a tiny local wheel stands in for the downloaded ones)."""
from __future__ import annotations

import importlib.util
import io
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


def _write_wheel(path: Path, module: str, version: str = "0.1.0", files: tuple[str, ...] = ()) -> None:
    """A minimal valid pure-Python wheel providing ``module`` with ``VALUE = 42`` (plus
    ``files``, each holding its own name), its RECORD listing every file."""
    dist_info = f"{module}-{version}.dist-info"
    content = {f"{module}/__init__.py": "VALUE = 42\n", **{f: f for f in files},
               f"{dist_info}/METADATA": f"Metadata-Version: 2.1\nName: {module}\nVersion: {version}\n",
               f"{dist_info}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
                                     "Tag: py3-none-any\n"}
    record = "".join(f"{name},,{len(text)}\n" for name, text in content.items()) + f"{dist_info}/RECORD,,\n"
    with zipfile.ZipFile(path, "w") as whl:
        for name, text in {**content, f"{dist_info}/RECORD": record}.items():
            whl.writestr(name, text)


#: Files of the stand-in torch and mediapipe wheels, and whether build.py keeps them.
TORCH_FILES = {"torch/include/ATen/Tensor.h": False, "torch/test/basic": False,
               "torch/bin/test_api": False, "torch/bin/torch_shm_manager": True, "torch/lib/libc10.so": True}
MEDIAPIPE_FILES = {"mediapipe/modules/face_detection/face_detection_short_range.tflite": True,
                   "mediapipe/modules/face_landmark/face_landmark_with_attention.tflite": True,
                   "mediapipe/modules/pose_landmark/pose_landmark_full.tflite": False,
                   "mediapipe/modules/pose_landmark/__init__.py": True,
                   "mediapipe/python/solutions/pose.py": True}
TORCH_WHEEL = "torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl"
MEDIAPIPE_WHEEL = "mediapipe-0.10.14-cp311-cp311-manylinux_2_17_x86_64.whl"


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("build")
    wheels = tmp / "wheels"
    wheels.mkdir()
    _write_wheel(wheels / TINY, "hrn_tiny_dep")
    # Distributions build.py must drop: Blender's own numpy, and jax (never imported).
    _write_wheel(wheels / "numpy-1.26.4-cp311-cp311-manylinux_2_17_x86_64.whl", "numpy", "1.26.4")
    _write_wheel(wheels / "jax-0.4.30-py3-none-any.whl", "jax", "0.4.30")
    _write_wheel(wheels / "networkx-3.6.1-py3-none-any.whl", "networkx", "3.6.1")
    # Wheels build.py keeps but strips of files never used at run time.
    _write_wheel(wheels / TORCH_WHEEL, "torch", "2.13.0", tuple(TORCH_FILES))
    _write_wheel(wheels / MEDIAPIPE_WHEEL, "mediapipe", "0.10.14", tuple(MEDIAPIPE_FILES))
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
    assert {"engine/head/data/ict_head.npz", "engine/head/data/ICT_FACE_MODEL_LICENSE.md"} <= names
    assert not any("__pycache__" in n or n.endswith(".pyc") for n in names)
    assert not any("benchmark" in n for n in names)  # outside the engine, never shipped
    assert manifest["wheels"] == [f"./wheels/{w}" for w in (TINY, MEDIAPIPE_WHEEL, TORCH_WHEEL)]
    assert manifest["platforms"] == ["linux-x64"]
    assert manifest["id"] == "hrn_blender" and manifest["blender_version_min"] == "4.2.0"
    assert wheel_info.compress_type == zipfile.ZIP_STORED
    assert not any("numpy" in n or "jax" in n or "networkx" in n for n in names)


def test_kept_wheels_are_stripped_of_files_never_used_and_their_record_matches(built):
    with zipfile.ZipFile(built) as archive:
        inner = {name: zipfile.ZipFile(io.BytesIO(archive.read(f"wheels/{name}")))
                 for name in (TORCH_WHEEL, MEDIAPIPE_WHEEL)}
    for (name, whl), files in zip(inner.items(), (TORCH_FILES, MEDIAPIPE_FILES)):
        names = set(whl.namelist())
        assert {f for f, keep in files.items() if keep} <= names, name
        assert not {f for f, keep in files.items() if not keep} & names, name
        (record,) = [n for n in names if n.endswith(".dist-info/RECORD")]
        listed = {row.split(",")[0] for row in whl.read(record).decode().splitlines() if row}
        assert listed == names, name  # Blender's installer tracks the files through RECORD
        assert all(whl.read(f).decode() == f for f, keep in files.items() if keep), name


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


def _load_build():
    spec = importlib.util.spec_from_file_location("hrn_build_script", ROOT / "build.py")
    module = sys.modules[spec.name] = importlib.util.module_from_spec(spec)  # dataclasses need it
    spec.loader.exec_module(module)
    return module


def test_wheels_already_there_are_resolved_offline(tmp_path, monkeypatch):
    """A rebuild with the wheels in the wheels folder runs pip only with --no-index (no
    network, so no retry warnings), and takes the pinned version, not every wheel there."""
    build = _load_build()
    calls = []
    real = build._pip_download

    def spy(platform, dest, requirements, *extra, quiet=False):
        calls.append(extra)
        if "--no-index" not in extra:  # would go online: stand in for an unreachable index
            return subprocess.CompletedProcess([], 1, "", "no network here")
        return real(platform, dest, requirements, *extra, quiet=quiet)

    monkeypatch.setattr(build, "_pip_download", spy)
    cache, dest = tmp_path / "cache", tmp_path / "dest"
    cache.mkdir(), dest.mkdir()
    _write_wheel(cache / TINY, "hrn_tiny_dep")
    _write_wheel(cache / "hrn_tiny_dep-0.2.0-py3-none-any.whl", "hrn_tiny_dep", "0.2.0")
    wheels = build.resolve_wheels(build.PLATFORMS["linux-x64"], cache, dest, ["hrn_tiny_dep==0.1.0"])
    assert [w.name for w in wheels] == [TINY]
    assert calls and all("--no-index" in extra for extra in calls)
    # A pin the folder cannot satisfy is downloaded (here: refused by the stand-in index).
    calls.clear()
    with pytest.raises(SystemExit, match="could not download hrn_tiny_dep==0.3.0"):
        build.resolve_wheels(build.PLATFORMS["linux-x64"], cache, tmp_path / "dest2", ["hrn_tiny_dep==0.3.0"])
    assert "--no-index" in calls[0] and "--no-index" not in calls[1]


def test_size_report_compares_the_zip_with_the_readme(tmp_path):
    build = _load_build()
    stated = build.readme_sizes()
    assert {(p, t) for p in ("linux-x64",) for t in ("cpu", "none")} <= set(stated)
    readme = tmp_path / "README.md"
    readme.write_text("| platform | CPU torch | `--torch none` |\n|---|---|---|\n"
                      "| linux-x64 | 100 MiB | 20 MiB |\n")
    zip_path = tmp_path / "x.zip"
    zip_path.write_bytes(b"0" * (103 * 2**20))
    assert "within 5 %" in build.size_report(zip_path, "linux-x64", "cpu", readme)
    assert "update its table to 103 MiB" in build.size_report(zip_path, "linux-x64", "none", readme)
    assert "states no size" in build.size_report(zip_path, "windows-x64", "cpu", readme)


def test_readme_states_the_size_of_the_built_zip():
    """When a real linux-x64 zip has been built (dist/), the README's figure for it (CPU torch
    or --torch none, told by the torch wheel inside) is within 5 %."""
    build = _load_build()
    version = tomllib.loads((ROOT / "blender_manifest.toml").read_text())["version"]
    path = ROOT / "dist" / f"hrn_blender-{version}-linux_x64.zip"
    if not path.is_file():
        pytest.skip("no dist/ zip built (python build.py --platform linux-x64)")
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
    if not any(n.startswith("wheels/mediapipe-") for n in names):
        pytest.skip(f"{path.name} was built from stand-in wheels")
    torch = "cpu" if any(n.startswith("wheels/torch-") for n in names) else "none"
    assert "within 5 %" in build.size_report(path, "linux-x64", torch)
