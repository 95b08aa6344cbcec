"""Build the installable HRN for Blender extension zip for one platform.

    python build.py --platform linux-x64|windows-x64|macos-arm64 [--no-download]
                    [--torch cpu|none] [--wheels-dir DIR] [--out DIR]

Steps: download the runtime wheels for the platform (CPython 3.11, binary only) into
``wheels/<platform>/``; drop the ones never imported or that Blender already ships; stage
``hrn_blender/`` + ``engine/`` (as ``engine/`` inside the extension) + the wheels + a manifest
listing them; zip it with the wheels stored uncompressed. ``--no-download`` uses the wheels
already in the wheels folder (offline rebuilds and tests).

Torch: ``--torch cpu`` (default) bundles the platform's CPU torch build, so the extension works
offline on any machine; the zip is then large (~200 MB) and meant for self-hosting: the Linux and
Windows CPU wheels come from the PyTorch index, not PyPI. ``--torch none`` leaves torch out for a
light zip; users then install torch themselves (README, "GPU / own torch").
"""
from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent
MANIFEST = ROOT / "blender_manifest.toml"
PYPROJECT = ROOT / "pyproject.toml"
PYTHON_VERSION = "3.11"  # Blender 4.2-5.0
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"
#: Runtime distributions, at the versions pyproject.toml pins (the ones the tests run with);
#: numpy is listed only so that the rest resolves against Blender's numpy 1.x, then dropped.
RUNTIME_NAMES = ("mediapipe", "opencv-contrib-python", "pillow", "scipy", "tqdm", "numpy")


def pinned(names: tuple[str, ...], pyproject: Path = PYPROJECT) -> list[str]:
    """``name==version`` for each name, from the pins of ``pyproject``'s ``[project]``
    dependencies (the one list of pins; requirements.txt installs the project itself)."""
    pins = {}
    for requirement in tomllib.loads(pyproject.read_text())["project"]["dependencies"]:
        if "==" in requirement:
            name, version = requirement.split(";")[0].split("==")
            pins[name.strip().lower()] = version.strip()
    missing = [n for n in names if n not in pins]
    if missing:
        raise SystemExit(f"build.py: {pyproject.name} pins no version of {', '.join(missing)}")
    return [f"{n}=={pins[n]}" for n in names]


TORCH = pinned(("torch",))[0]  # the version the engine is tested with
# Distributions pulled in as dependencies but never imported at run time, or already in Blender.
# `import mediapipe` imports matplotlib (drawing utils), so matplotlib and its deps stay; jax is
# only used by mediapipe's model-maker tooling and sounddevice only by its audio tasks.
DROP = frozenset({
    "numpy",  # Blender ships numpy; a second copy would shadow it
    "jax", "jaxlib", "ml_dtypes", "opt_einsum",
    "sounddevice", "cffi", "pycparser",
    # mediapipe depends on opencv-contrib-python; one cv2 package only
    "opencv_python", "opencv_python_headless", "opencv_contrib_python_headless",
})


@dataclass(frozen=True)
class Platform:
    """A Blender platform and the pip platform tags of wheels that run on it."""

    name: str
    pip_tags: tuple[str, ...]
    torch_index: str | None  # None: PyPI's torch is already the CPU build (macOS)


PLATFORMS = {p.name: p for p in (
    Platform("linux-x64", ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64"),
             TORCH_CPU_INDEX),
    Platform("windows-x64", ("win_amd64",), TORCH_CPU_INDEX),
    Platform("macos-arm64", ("macosx_11_0_arm64", "macosx_12_0_arm64", "macosx_14_0_arm64"), None),
)}


def download_wheels(platform: Platform, dest: Path, torch: bool) -> None:
    """``pip download`` the runtime (and optionally torch) wheels for ``platform`` into ``dest``."""
    base = [sys.executable, "-m", "pip", "download", "--only-binary=:all:", "--python-version",
            PYTHON_VERSION, "--dest", str(dest)]
    for tag in platform.pip_tags:
        base += ["--platform", tag]
    subprocess.run(base + pinned(RUNTIME_NAMES), check=True)
    if torch:
        index = ["--index-url", platform.torch_index, "--extra-index-url", "https://pypi.org/simple"] \
            if platform.torch_index else []
        subprocess.run(base + index + [TORCH], check=True)


def distribution(wheel: Path) -> str:
    """Normalised distribution name of a wheel file (``opencv_contrib_python-4.10...`` -> ...)."""
    return re.sub(r"[-_.]+", "_", wheel.name.split("-")[0]).lower()


def kept_wheels(folder: Path) -> list[Path]:
    """The wheels in ``folder`` minus the dropped distributions, sorted by name."""
    return sorted(w for w in folder.glob("*.whl") if distribution(w) not in DROP)


def manifest_text(platform: Platform, wheels: list[Path]) -> str:
    """The repository manifest with ``platforms`` and ``wheels`` written in (before the tables)."""
    text = MANIFEST.read_text()
    lines = [f'platforms = ["{platform.name}"]']
    if wheels:  # an empty list is invalid: leave the key out
        lines += ["wheels = ["] + [f'  "./wheels/{w.name}",' for w in wheels] + ["]"]
    insert = "\n".join(lines) + "\n\n"
    table = text.index("\n[")  # first table; top-level keys must come before it
    text = text[:table + 1] + insert + text[table + 1:]
    tomllib.loads(text)  # fail here, not in Blender, if the edit broke the TOML
    return text


def stage(platform: Platform, wheels: list[Path], folder: Path) -> None:
    """Lay out the extension as Blender installs it: package files at the top level."""
    if folder.exists():
        shutil.rmtree(folder)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(ROOT / "hrn_blender", folder, ignore=ignore)
    shutil.copytree(ROOT / "engine", folder / "engine", ignore=ignore)
    (folder / "wheels").mkdir()
    for wheel in wheels:
        shutil.copy2(wheel, folder / "wheels" / wheel.name)
    (folder / "blender_manifest.toml").write_text(manifest_text(platform, wheels))


def write_zip(folder: Path, path: Path) -> None:
    """Zip ``folder``'s contents; wheels are stored uncompressed (they are zips already)."""
    with zipfile.ZipFile(path, "w") as archive:
        for file in sorted(folder.rglob("*")):
            if file.is_file():
                method = zipfile.ZIP_STORED if file.suffix == ".whl" else zipfile.ZIP_DEFLATED
                archive.write(file, file.relative_to(folder).as_posix(), compress_type=method)


def build(platform_name: str, download: bool = True, torch: bool = True,
          wheels_dir: Path | None = None, out: Path = ROOT / "dist") -> Path:
    """Build the extension zip for one platform; returns its path."""
    platform = PLATFORMS[platform_name]
    wheels_dir = wheels_dir or ROOT / "wheels" / platform.name
    wheels_dir.mkdir(parents=True, exist_ok=True)
    if download:
        download_wheels(platform, wheels_dir, torch)
    wheels = kept_wheels(wheels_dir)
    if not torch:
        wheels = [w for w in wheels if distribution(w) != "torch"]
    version = tomllib.loads(MANIFEST.read_text())["version"]
    out.mkdir(parents=True, exist_ok=True)
    folder = out / f"hrn_blender-{platform.name}"
    stage(platform, wheels, folder)
    path = out / f"hrn_blender-{version}-{platform.name.replace('-', '_')}.zip"
    write_zip(folder, path)
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--platform", required=True, choices=sorted(PLATFORMS))
    parser.add_argument("--no-download", action="store_true",
                        help="use the wheels already in the wheels folder (no network)")
    parser.add_argument("--torch", choices=("cpu", "none"), default="cpu",
                        help="bundle the CPU build of torch (default) or leave it to the user")
    parser.add_argument("--wheels-dir", type=Path, help="wheels folder (default wheels/<platform>)")
    parser.add_argument("--out", type=Path, default=ROOT / "dist", help="output folder (default dist/)")
    args = parser.parse_args()
    path = build(args.platform, download=not args.no_download, torch=args.torch == "cpu",
                 wheels_dir=args.wheels_dir, out=args.out)
    print(f"Wrote {path} ({path.stat().st_size / 2**20:.1f} MiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
