"""Which bundled wheels does the engine import? Run the extension zip's engine on its wheels alone.

    python tools/zip_imports.py dist/hrn_blender-0.1.0-linux_x64.zip [--photo PHOTO]

For the zip of this machine's platform (built by ``build.py``): makes a fresh virtual
environment holding only the zip's wheels (installed with ``--no-deps``, as Blender does) plus
numpy (Blender's own), then runs the zip's engine in it as the extension's worker does
(``python -m engine reconstruct``, in-process so that ``sys.modules`` can be read afterwards):

1. the default path (built-in head model, fast quality) on the photo (default: scikit-image's
   astronaut, written with this environment's scikit-image);
2. the official path on generated files in the official formats (random weights,
   ``tests/official_fakes.py``), official detector chain included.

Prints the distributions imported and the bundled ones never imported: the evidence behind
``build.py``'s ``DROP`` and ``STRIP``. A run that fails (a dropped wheel or a stripped file was
needed after all) shows the child's traceback and exits non-zero.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

MEASURE = textwrap.dedent("""
    import importlib.metadata as md, json, runpy, sys
    photo, weights, out = sys.argv[1:4]
    runs = {"default": ["reconstruct", photo, "--quality", "fast", "--out", out + "/default"],
            "official": ["reconstruct", photo, "--weights", weights, "--out", out + "/official"]}
    codes = {}
    for name, args in runs.items():
        sys.argv = ["engine", *args, "--progress", "jsonl"]
        try:
            runpy.run_module("engine", run_name="__main__", alter_sys=True)
        except SystemExit as done:
            codes[name] = done.code
    by_module = md.packages_distributions()
    imported = sorted({d for m in list(sys.modules) for d in by_module.get(m.split(".")[0], [])})
    installed = sorted({d.metadata["Name"] for d in md.distributions()})
    print("RESULT " + json.dumps({"codes": codes, "imported": imported, "installed": installed}))
""")

FAKES = textwrap.dedent("""
    import sys
    from pathlib import Path
    sys.path[:0] = [sys.argv[2], sys.argv[2] + "/tests"]
    from engine.hrn_official import layout
    from official_fakes import write_official_tree
    from fake_retinaface import write_fake_retinaface
    from fake_landmark106 import write_bbox_regressor, write_landmark106
    from fake_fan import write_fake_fan, write_fake_s3fd
    root = Path(sys.argv[1])
    write_official_tree(root)
    paths = {key: root / layout.BY_KEY[key].github_path for key in layout.DETECTOR_KEYS}
    for path in paths.values():
        path.parent.mkdir(parents=True, exist_ok=True)
    write_fake_retinaface(paths["retinaface"])
    write_landmark106(paths["landmark106"])
    write_bbox_regressor(paths["bbreg"])
    write_fake_s3fd(paths["s3fd"].parent)
    write_fake_fan(paths["fan"].parent)
""")


def run(cmd: list, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([str(c) for c in cmd], check=True, **kwargs)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("zip", type=Path, help="extension zip for this machine's platform")
    parser.add_argument("--photo", type=Path, help="photo with a face (default: the astronaut)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        with zipfile.ZipFile(args.zip) as archive:
            archive.extractall(tmp / "extension")
        wheels = sorted((tmp / "extension" / "wheels").glob("*.whl"))
        photo = args.photo
        if photo is None:
            photo = tmp / "astronaut.png"
            run([sys.executable, "-c", "import sys; from skimage import data; from PIL import Image; "
                 "Image.fromarray(data.astronaut()).save(sys.argv[1])", photo])
        print(f"Writing the official-format files (random weights) into {tmp / 'hrn'} ...")
        run([sys.executable, "-c", FAKES, tmp / "hrn", ROOT], env=dict(os.environ, PYTHONWARNINGS="ignore"))
        print(f"Installing the zip's {len(wheels)} wheels and numpy into a fresh environment ...")
        run([sys.executable, "-m", "venv", tmp / "venv"])
        python = tmp / "venv" / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
        numpy = next(r for r in _pins() if r.startswith("numpy=="))
        run([python, "-m", "pip", "install", "-q", "--no-deps", numpy, *wheels])
        print("Running the default and the official path with the zip's engine ...")
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        env["PYTHONPATH"] = str(tmp / "extension")  # `engine` = the zip's copy, as in the worker
        done = subprocess.run([str(python), "-s", "-c", MEASURE, str(photo), str(tmp / "hrn"), str(tmp / "out")],
                              env=env, cwd=tmp, capture_output=True, text=True)
        line = next((l for l in done.stdout.splitlines() if l.startswith("RESULT ")), None)
        if done.returncode or line is None:
            print(done.stdout[-4000:] + done.stderr[-4000:])
            return 1
        result = json.loads(line[len("RESULT "):])
        bundled = {_name(w) for w in wheels}
        imported = {_norm(d) for d in result["imported"]}
        print(f"exit codes: {result['codes']}")
        print(f"imported:   {', '.join(sorted(imported))}")
        print(f"bundled, never imported: {', '.join(sorted(bundled - imported)) or 'none'}")
        ok = all(code == 0 for code in result["codes"].values()) and len(result["codes"]) == 2
        return 0 if ok else 1


def _pins() -> list[str]:
    import tomllib

    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]


def _norm(name: str) -> str:
    return name.replace("-", "_").replace(".", "_").lower()


def _name(wheel: Path) -> str:
    return _norm(wheel.name.split("-")[0])


if __name__ == "__main__":
    sys.exit(main())
