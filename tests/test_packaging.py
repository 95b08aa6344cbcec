"""pyproject.toml: the project builds into a wheel holding exactly the engine and the extension
(modules, subpackages and data files: the head model and its licence notice), installs outside
the repository, and declares the pins build.py bundles. The wheel is built offline from a copy
of the working tree (tracked and untracked, not ignored files: what a fresh clone would have),
so no stale build/ folder or other engineer's build can leak into it."""
from __future__ import annotations

import email
import importlib.util
import os
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("engine", "hrn_blender")
NOT_PACKAGED = ("tests", "tools", "bench", "benchmark", "docs")


def _source_files() -> list[str]:
    """Files a fresh clone of the working tree has (git's view), else everything but caches."""
    done = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
                          cwd=ROOT, capture_output=True)
    if done.returncode == 0:
        return [p for p in done.stdout.decode().split("\0") if p and (ROOT / p).is_file()]
    skip = {".git", ".venv", "wheels", "dist", "build", "out", "__pycache__"}
    return [p.relative_to(ROOT).as_posix() for p in ROOT.rglob("*")
            if p.is_file() and not skip & set(p.relative_to(ROOT).parts)]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("packaging")
    src = tmp / "src"
    for name in _source_files():
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, src / name)
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", str(src), "--no-deps",
                           "--no-build-isolation", "--no-index", "-w", str(tmp / "dist")],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (built,) = (tmp / "dist").glob("*.whl")
    return built


def _names(wheel: Path) -> set[str]:
    with zipfile.ZipFile(wheel) as archive:
        return set(archive.namelist())


def test_wheel_holds_every_engine_and_extension_file_and_nothing_else(wheel):
    names = _names(wheel)
    expected = {p for p in _source_files() if p.split("/")[0] in PACKAGES and not p.endswith(".pyc")}
    assert expected <= names, sorted(expected - names)  # every module, subpackage and data file
    assert {"engine/__init__.py", "engine/__main__.py", "engine/pipeline.py", "engine/hrn_official/model.py",
            "hrn_blender/__init__.py", "hrn_blender/scene/build.py"} <= names
    data = [n for n in names if n.startswith("engine/head/data/")]
    assert any(n.endswith(".npz") for n in data) and any(n.endswith("LICENSE.md") for n in data), data
    tops = {n.split("/")[0] for n in names}
    assert tops == {*PACKAGES, "hrn_for_blender-0.1.0.dist-info"}, tops
    assert not [n for n in names if n.split("/")[0] in NOT_PACKAGED or "__pycache__" in n]


def test_wheel_metadata_declares_the_pins_and_extras(wheel):
    with zipfile.ZipFile(wheel) as archive:
        meta = email.message_from_bytes(archive.read("hrn_for_blender-0.1.0.dist-info/METADATA"))
    requires = meta.get_all("Requires-Dist")
    for pin in ("torch==2.13.0", "mediapipe==0.10.14", "numpy==1.26.4", "scipy==1.17.1",
                "pillow==13.0.0", "opencv-contrib-python==4.11.0.86", "scikit-image==0.26.0",
                "tqdm==4.70.1"):
        assert pin in requires, (pin, requires)
    assert set(meta.get_all("Provides-Extra")) == {"test", "bench"}
    assert 'bpy==5.0.1; extra == "test"' in requires and 'pytest==9.2.0; extra == "test"' in requires
    assert meta["License-Expression"] == "GPL-3.0-or-later"
    assert not [r for r in requires if r.split("==")[0] in ("bpy", "pytest") and "extra" not in r]


def test_installed_wheel_runs_outside_the_repository(wheel, tmp_path):
    """Installed into a folder of its own (dependencies from this environment), every engine
    module imports from there without bpy or the extension, the packaged head model data reads
    from there, the CLI runs, and the extension's engine_api finds the installed engine."""
    target = tmp_path / "site"
    done = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index",
                           "--target", str(target), str(wheel)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    script = (
        "import sys, pkgutil, importlib, pathlib, numpy, engine\n"
        "for m in pkgutil.walk_packages(engine.__path__, 'engine.'):\n"
        "    if not m.name.endswith('__main__'):\n"
        "        importlib.import_module(m.name)\n"
        "assert not {'bpy', 'hrn_blender'} & set(sys.modules)\n"
        "data = sorted(pathlib.Path(engine.__file__).parent.rglob('*.npz'))\n"
        "arrays = sum(len(numpy.load(p).files) for p in data)\n"
        "import hrn_blender.engine_api as api\n"
        "print(engine.__file__, api.ENGINE_PARENT, len(data), arrays)\n")
    env = dict(os.environ, PYTHONPATH=str(target))
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    engine_file, engine_parent, npz_files, arrays = done.stdout.split()[-4:]
    assert int(npz_files) >= 1 and int(arrays) > 5  # the packaged head model, readable
    assert Path(engine_file) == target / "engine" / "__init__.py"
    assert Path(engine_parent) == target
    cli = subprocess.run([sys.executable, "-m", "engine", "reconstruct", "--help"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=120)
    assert cli.returncode == 0 and "--out" in cli.stdout


def test_requirements_install_the_project_and_build_py_reads_its_pins():
    """One list of pins: requirements.txt installs the project (with its test extra) and
    build.py bundles the versions pyproject.toml pins."""
    lines = [l.strip() for l in (ROOT / "requirements.txt").read_text().splitlines()
             if l.strip() and not l.startswith("#")]
    assert lines == ["-e .[test]"]
    spec = importlib.util.spec_from_file_location("hrn_build_script", ROOT / "build.py")
    build = sys.modules[spec.name] = importlib.util.module_from_spec(spec)  # dataclasses need it
    spec.loader.exec_module(build)
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert build.TORCH == "torch==2.13.0" and build.TORCH in deps
    assert set(build.pinned(build.RUNTIME_NAMES)) <= set(deps)
