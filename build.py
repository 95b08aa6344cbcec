"""Build the installable HRN for Blender extension zip for one platform.

    python build.py --platform linux-x64|windows-x64|macos-arm64 [--no-download]
                    [--torch cpu|none] [--wheels-dir DIR] [--out DIR]

Steps: resolve the runtime wheels for the platform (CPython 3.11, binary only, the versions
pyproject.toml pins) from the wheels folder ``wheels/<platform>/``, downloading into it only
what is missing (a rebuild with every wheel present makes no network request); drop the
distributions never imported or that Blender already ships (:data:`DROP`) and, inside the
kept wheels, the files never used at run time (:data:`STRIP`: C++ test binaries and headers,
MediaPipe models of other solutions, test suites); stage ``hrn_blender/`` + ``engine/`` (as
``engine/`` inside the extension) + the wheels + a manifest listing them; zip it with the
wheels stored uncompressed. ``--no-download`` takes every wheel already in the wheels folder
as it is (offline rebuilds and tests).

Torch: ``--torch cpu`` (default) bundles the platform's CPU torch build, so the extension works
offline on any machine; the zip is then large (README, "Torch": sizes per platform) and meant
for self-hosting: the Linux and Windows CPU wheels come from the PyTorch index, not PyPI.
``--torch none`` leaves torch out for a light zip; users then install torch themselves.
"""
from __future__ import annotations

import argparse
import csv
import email
import io
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
README = ROOT / "README.md"
PYTHON_VERSION = "3.11"  # Blender 4.2-5.0
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"
#: Runtime distributions, at the versions pyproject.toml pins (the ones the tests run with);
#: numpy is listed only so that the rest resolves against Blender's numpy 1.x, then dropped.
#: scikit-image is not bundled: the engine imports it only for ``--example`` photos.
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
#: Distributions pulled in as dependencies but never imported at run time, or already in
#: Blender. Measured (tools/zip_imports.py: the zip's wheels alone in a fresh environment,
#: the default and the official path run, then sys.modules read): MediaPipe's face detection
#: and face mesh run without jax, jaxlib (model-maker and LLM-converter tooling only) and
#: sounddevice (audio tasks, imported in a try); ``import mediapipe`` does import matplotlib
#: (its drawing utils), so matplotlib and its dependencies stay. torch imports sympy, mpmath
#: and typing_extensions; networkx, jinja2, fsspec, filelock and setuptools only in parts the
#: engine never uses (torch.compile, distributed checkpoints, C++ extensions). absl-py,
#: contourpy and flatbuffers are not imported either, but are kept (0.5 MiB together).
DROP = frozenset({
    "numpy",  # Blender ships numpy; a second copy would shadow it
    "jax", "jaxlib", "ml_dtypes", "opt_einsum",
    "sounddevice", "cffi", "pycparser",
    "networkx", "jinja2", "markupsafe", "fsspec", "filelock", "setuptools", "tzdata",
    # mediapipe depends on opencv-contrib-python; one cv2 package only
    "opencv_python", "opencv_python_headless", "opencv_contrib_python_headless",
})
#: Files left out of the kept wheels (regular expressions on the path inside the wheel): never
#: imported or read at run time. torch: the C++ test executables, protoc and the C++ headers
#: (for building extensions), but not torch_shm_manager (`import torch` checks it is there);
#: mediapipe: the models of solutions other than face detection and face mesh (the only ones
#: the engine starts, which read only face_detection/ and face_landmark/; the other solutions'
#: Python modules stay, `import mediapipe` imports them); scipy: its test suites; cv2: Haar
#: cascades and the Qt window fonts. Each stripped wheel's RECORD is rewritten to match, so
#: Blender's installer tracks the right files.
STRIP = {
    "torch": re.compile(r"torch/(test|include)/|torch/bin/(?!torch_shm_manager$)"),
    "mediapipe": re.compile(r"mediapipe/modules/(?!face_detection/|face_landmark/)[^/]+/.*\.tflite$"),
    "scipy": re.compile(r"scipy/(.+/)?tests/"),
    "opencv_contrib_python": re.compile(r"cv2/(data|qt/fonts)/"),
}


@dataclass(frozen=True)
class Platform:
    """A Blender platform, the pip platform tags of wheels that run on it, and its values of
    the environment markers that dependencies can carry (``sys_platform == "linux"``)."""

    name: str
    pip_tags: tuple[str, ...]
    torch_index: str | None  # None: PyPI's torch is already the CPU build (macOS)
    markers: dict


PLATFORMS = {p.name: p for p in (
    Platform("linux-x64", ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64"),
             TORCH_CPU_INDEX, {"sys_platform": "linux", "platform_system": "Linux",
                               "platform_machine": "x86_64", "os_name": "posix"}),
    Platform("windows-x64", ("win_amd64",), TORCH_CPU_INDEX,
             {"sys_platform": "win32", "platform_system": "Windows", "platform_machine": "AMD64",
              "os_name": "nt"}),
    Platform("macos-arm64", ("macosx_11_0_arm64", "macosx_12_0_arm64", "macosx_14_0_arm64"), None,
             {"sys_platform": "darwin", "platform_system": "Darwin", "platform_machine": "arm64",
              "os_name": "posix"}),
)}


def _pip_download(platform: Platform, dest: Path, requirements: list[str], *extra: str,
                  quiet: bool = False) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "pip", "download", "--only-binary=:all:", "--python-version",
           PYTHON_VERSION, "--dest", str(dest), *extra]
    for tag in platform.pip_tags:
        cmd += ["--platform", tag]
    return subprocess.run(cmd + requirements, capture_output=quiet, text=True)


def _fetch(platform: Platform, cache: Path, requirements: list[str], *extra: str) -> None:
    """Make ``cache`` hold what ``requirements`` resolve to: checked offline first (``pip
    download --no-index``: no network request, so no retry warnings when the wheels are
    there); downloaded only when that fails."""
    what = f"{', '.join(requirements)}{'' if '--no-deps' in extra else ' and dependencies'}"
    if _pip_download(platform, cache, requirements, "--no-index", "--find-links", str(cache),
                     "--quiet", *[e for e in extra if e == "--no-deps"], quiet=True).returncode == 0:
        print(f"build.py: {what} for {platform.name}: all in {cache}, nothing downloaded")
        return
    print(f"build.py: downloading {what} for {platform.name} into {cache}")
    if _pip_download(platform, cache, requirements, "--find-links", str(cache), *extra).returncode:
        raise SystemExit(f"build.py: pip could not download {', '.join(requirements)} (above)")


def _resolve(platform: Platform, cache: Path, dest: Path, requirements: list[str], *extra: str) -> None:
    """Copy into ``dest`` the wheels of ``cache`` that ``requirements`` resolve to (offline)."""
    done = _pip_download(platform, dest, requirements, "--no-index", "--find-links", str(cache),
                         "--quiet", *extra, quiet=True)
    if done.returncode:
        raise SystemExit(f"build.py: the wheels in {cache} do not resolve:\n{done.stderr}")


def wheel_dependencies(wheel: Path, platform: Platform) -> list[str]:
    """The wheel's ``Requires-Dist`` that apply on ``platform`` (CPython 3.11), markers
    evaluated for the platform, not for this machine as ``pip download --platform`` does."""
    try:
        from packaging.requirements import Requirement
    except ImportError:  # pip always carries a copy
        from pip._vendor.packaging.requirements import Requirement
    environment = {"python_version": PYTHON_VERSION, "python_full_version": PYTHON_VERSION + ".0",
                   "implementation_name": "cpython", "platform_python_implementation": "CPython",
                   "extra": "", **platform.markers}
    with zipfile.ZipFile(wheel) as archive:
        (name,) = [n for n in archive.namelist() if re.fullmatch(r"[^/]+\.dist-info/METADATA", n)]
        metadata = email.message_from_bytes(archive.read(name))
    kept = []
    for line in metadata.get_all("Requires-Dist") or []:
        requirement = Requirement(line)
        if requirement.marker is None or requirement.marker.evaluate(environment):
            requirement.marker = None
            kept.append(str(requirement))
    return kept


def resolve_wheels(platform: Platform, cache: Path, dest: Path, requirements: list[str],
                   torch_requirements: list[str] = ()) -> list[Path]:
    """Put into ``dest`` the wheels that ``requirements`` (and ``torch_requirements``) resolve
    to for ``platform``, dependencies included; returns them.

    Everything comes from ``cache``: a rebuild with the wheels there makes no network request.
    Missing wheels are downloaded into it first, torch from the platform's torch index. Torch
    is fetched without its dependencies, which are then resolved with their markers evaluated
    for ``platform`` (on Linux, PyPI's torch for Windows or macOS would otherwise ask for
    Linux-only CUDA packages).
    """
    cache.mkdir(parents=True, exist_ok=True)
    requirements = list(requirements)
    if torch_requirements:
        index = ("--index-url", platform.torch_index, "--extra-index-url",
                 "https://pypi.org/simple") if platform.torch_index else ()
        _fetch(platform, cache, list(torch_requirements), "--no-deps", *index)
        _resolve(platform, cache, dest, list(torch_requirements), "--no-deps")
        for wheel in dest.glob("*.whl"):
            if distribution(wheel) == "torch":
                requirements += wheel_dependencies(wheel, platform)
    _fetch(platform, cache, requirements)
    _resolve(platform, cache, dest, requirements)
    return sorted(dest.glob("*.whl"))


def distribution(wheel: Path) -> str:
    """Normalised distribution name of a wheel file (``opencv_contrib_python-4.10...`` -> ...)."""
    return re.sub(r"[-_.]+", "_", wheel.name.split("-")[0]).lower()


def kept_wheels(folder: Path) -> list[Path]:
    """The wheels in ``folder`` minus the dropped distributions, sorted by name."""
    return sorted(w for w in folder.glob("*.whl") if distribution(w) not in DROP)


def strip_wheel(wheel: Path, pattern: re.Pattern) -> int:
    """Rewrite ``wheel`` in place without the files whose path matches ``pattern``, and
    without their lines in its RECORD; returns the number of files left out."""
    tmp = wheel.with_suffix(".tmp")
    removed = set()
    with zipfile.ZipFile(wheel) as src, zipfile.ZipFile(tmp, "w") as dst:
        infos = src.infolist()
        removed = {i.filename for i in infos if pattern.match(i.filename)}
        for info in infos:
            if info.filename in removed:
                continue
            data = src.read(info)
            if info.filename.endswith(".dist-info/RECORD"):
                rows = [r for r in csv.reader(io.StringIO(data.decode())) if r and r[0] not in removed]
                text = io.StringIO()
                csv.writer(text, lineterminator="\n").writerows(rows)
                data = text.getvalue().encode()
            dst.writestr(info, data, compress_type=info.compress_type)
    tmp.replace(wheel)
    return len(removed)


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


def stage(platform: Platform, folder: Path) -> Path:
    """Lay out the extension as Blender installs it (package files at the top level), with an
    empty ``wheels`` folder; returns that folder."""
    if folder.exists():
        shutil.rmtree(folder)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(ROOT / "hrn_blender", folder, ignore=ignore)
    shutil.copytree(ROOT / "engine", folder / "engine", ignore=ignore)
    (folder / "wheels").mkdir()
    return folder / "wheels"


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
    version = tomllib.loads(MANIFEST.read_text())["version"]
    out.mkdir(parents=True, exist_ok=True)
    folder = out / f"hrn_blender-{platform.name}"
    staged = stage(platform, folder)
    if download:
        resolve_wheels(platform, wheels_dir, staged, pinned(RUNTIME_NAMES), [TORCH] if torch else [])
    else:
        for wheel in wheels_dir.glob("*.whl"):
            shutil.copy2(wheel, staged / wheel.name)
    for wheel in staged.glob("*.whl"):
        if distribution(wheel) in DROP or (not torch and distribution(wheel) == "torch"):
            wheel.unlink()
    wheels = kept_wheels(staged)
    for wheel in wheels:
        if distribution(wheel) in STRIP:
            strip_wheel(wheel, STRIP[distribution(wheel)])
    (folder / "blender_manifest.toml").write_text(manifest_text(platform, wheels))
    path = out / f"hrn_blender-{version}-{platform.name.replace('-', '_')}.zip"
    write_zip(folder, path)
    return path


def readme_sizes(readme: Path = README) -> dict[tuple[str, str], float]:
    """The zip sizes (MiB) the README states, by (platform, torch): its table rows
    ``| linux-x64 | 286 MiB | 21 MiB |`` (CPU torch, then ``--torch none``)."""
    sizes = {}
    for line in readme.read_text().splitlines():
        m = re.fullmatch(r"\|\s*`?([a-z]+-[a-z0-9]+)`?\s*\|\s*([\d.]+) MiB\s*\|\s*([\d.]+) MiB\s*\|.*",
                         line.strip())
        if m and m.group(1) in PLATFORMS:
            sizes[(m.group(1), "cpu")] = float(m.group(2))
            sizes[(m.group(1), "none")] = float(m.group(3))
    return sizes


def size_report(path: Path, platform: str, torch: str, readme: Path = README) -> str:
    """The zip's size, and whether the README's figure for it is within 5 %."""
    mib = path.stat().st_size / 2**20
    stated = readme_sizes(readme).get((platform, torch))
    line = f"Wrote {path} ({mib:.1f} MiB)"
    if stated is None:
        return line + f"\nREADME.md states no size for {platform} with --torch {torch}."
    if abs(stated - mib) > 0.05 * mib:
        return line + (f"\nREADME.md says {stated:g} MiB for {platform} with --torch {torch}: "
                       f"update its table to {mib:.0f} MiB.")
    return line + f" - README.md says {stated:g} MiB: within 5 %"


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
    print(size_report(path, args.platform, args.torch))
    return 0


if __name__ == "__main__":
    sys.exit(main())
