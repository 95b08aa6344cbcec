"""Command line: ``python -m engine reconstruct PHOTO [PHOTO ...] --out DIR``.

Progress goes to the console as a bar (default), as JSON lines for programs
(``--progress jsonl``, the protocol the Blender extension reads: :mod:`engine.progress`), or
nowhere. Exit code :data:`~engine.progress.EXIT_CANCELLED` after a cancel (Ctrl-C / SIGINT),
:data:`~engine.progress.EXIT_ERROR` after an error the user can fix.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Optional, Sequence

from .errors import Cancelled, EngineError
from .progress import (CANCELLED, EXIT_CANCELLED, EXIT_ERROR, DoneEvent, ErrorEvent, Event, ProgressEvent,
                       WarningEvent)

EXAMPLES = ("astronaut",)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m engine",
                                description="HRN for Blender: hierarchical 3D face reconstruction.")
    p.epilog = "Also: python -m engine assets check|download DIR (official HRN files)."
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("reconstruct", help="reconstruct a 3D head from one or more photos of a face")
    r.add_argument("photos", nargs="*", help="photo files (JPEG, PNG, WebP, TIFF); several photos of "
                   "one person are fitted together (shared shape, per-photo pose and lighting)")
    r.add_argument("--example", choices=EXAMPLES,
                   help="use a photo that ships with scikit-image instead of your own")
    r.add_argument("--out", help="output folder (created; files of the same names are replaced); "
                   "checked for writing before the reconstruction starts")
    r.add_argument("--face-index", type=_face_index, metavar="N",
                   help="in photos with several faces, use face N, counting from 0 left to right "
                        "(by the centre of each face); applies to every photo given. Default: the "
                        "largest face. The warning about several faces lists them with their N")
    r.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    r.add_argument("--quality", choices=("fast", "high"), default="fast")
    r.add_argument("--weights", help="folder with the official HRN release (checkpoints + BFM); "
                                      "default: the built-in offline model")
    r.add_argument("--alignment", choices=("auto", "official", "mediapipe"), default="auto",
                   help="with --weights: where the face-alignment points come from; auto = the "
                        "official detectors (RetinaFace, 106-point net, FAN) when their files are in "
                        "the weights folder, else MediaPipe")
    r.add_argument("--progress", choices=("bar", "jsonl", "none"), default="bar")
    r.add_argument("--no-preview", action="store_true", help="do not write preview.png")
    r.add_argument("--blend", help="also build the Blender scene and save it to this .blend file")
    r.add_argument("--render", help="with --blend: render the scene with Cycles to this PNG")
    return p


def _face_index(text: str) -> int:
    """argparse type of --face-index: an integer >= 0."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a face number 0, 1, 2, ..., got {text!r}")
    return value


def _check_output_folder(out: Path) -> None:
    """Fail now, not after minutes of work, when ``out`` cannot be created or written to.
    Leaves no trace: folders made for the check are removed again (``save`` makes them)."""
    missing = [folder for folder in (out, *out.parents) if not folder.exists()]  # deepest first
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as err:
        raise EngineError(f"Cannot write to the output folder {str(out)!r}: {err.strerror or err}. "
                          "Choose a folder you can write to with --out.") from err
    finally:
        for folder in missing:
            with contextlib.suppress(OSError):
                folder.rmdir()


class _Reporter:
    """Turns engine progress into a console bar or JSON lines."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self._bar = None
        self._stage = None

    def emit(self, event: Event) -> None:
        """A protocol line in jsonl mode; else warnings and errors as text on stderr."""
        if self.mode == "jsonl":
            print(event.to_json(), flush=True)
        elif isinstance(event, (WarningEvent, ErrorEvent)):
            self.close()
            print(f"{event.EVENT}: {event.message}", file=sys.stderr)

    def progress(self, stage: str, fraction: float) -> bool:
        if self.mode == "jsonl":
            self.emit(ProgressEvent(stage=stage, fraction=round(float(fraction), 4)))
        elif self.mode == "bar":
            from tqdm import tqdm

            if self._bar is None:
                self._bar = tqdm(total=1000, unit="", bar_format="{l_bar}{bar}| {elapsed}<{remaining}",
                                 file=sys.stderr)
            if stage != self._stage:
                self._bar.set_description(stage)
                self._stage = stage
            self._bar.n = int(fraction * 1000)
            self._bar.refresh()
        return True

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def _example_photo(name: str, folder: Path) -> Path:
    from skimage import data
    from PIL import Image

    path = folder / f"{name}.png"
    Image.fromarray(getattr(data, name)()).save(path)
    return path


def reconstruct_command(args: argparse.Namespace, rep: _Reporter) -> int:
    from .pipeline import ReconstructionOptions, reconstruct

    if not args.photos and not args.example:
        raise EngineError("Give at least one photo, or --example astronaut to try a bundled photo.")
    if args.render and not args.blend:
        raise EngineError("--render needs --blend (the scene to render).")
    out = Path(args.out or (Path(args.photos[0]).stem + "_hrn" if args.photos else f"{args.example}_hrn"))
    _check_output_folder(out)
    with tempfile.TemporaryDirectory() as tmp:
        photos = [Path(p) for p in args.photos]
        if args.example:
            photos.append(_example_photo(args.example, Path(tmp)))
        options = ReconstructionOptions(device=args.device, quality=args.quality,
                                        weights_dir=Path(args.weights) if args.weights else None,
                                        face_index=args.face_index, alignment=args.alignment)
        result = reconstruct(photos, options, progress=rep.progress)
        rep.close()
        for message in result.warnings:
            rep.emit(WarningEvent(message))
        result.save(out)
        if not args.no_preview:
            from .io.image_io import load_photo
            from .preview import write_preview

            # The preview overlays the result's camera, that of its reference (most frontal) photo.
            reference = photos[result.metadata.get("reference_view", 0)]
            write_preview(result, load_photo(reference).rgb, out / "preview.png")
    if args.blend:
        cmd = [sys.executable, "-m", "hrn_blender.headless", str(out), "--blend", args.blend]
        if args.render:
            cmd += ["--render", args.render]
        # The scene builder lives beside the engine package (repository layout).
        root = str(Path(__file__).resolve().parents[1])
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])))
        done = subprocess.run(cmd, env=env)
        if done.returncode != 0:
            raise EngineError(f"Building the Blender scene failed (exit code {done.returncode}); "
                              "is the bpy module installed?")
    rep.emit(DoneEvent(str(out)))
    if rep.mode != "jsonl":
        print(f"Wrote {out}")
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["assets"]:
        # `python -m engine assets check|download DIR`: the official HRN files.
        from .hrn_official.__main__ import main as assets_main

        return assets_main(argv)
    args = _parser().parse_args(argv)
    rep = _Reporter(getattr(args, "progress", "bar"))
    try:
        if args.command == "reconstruct":
            return reconstruct_command(args, rep)
    except (Cancelled, KeyboardInterrupt):
        rep.close()
        rep.emit(CANCELLED)
        return EXIT_CANCELLED
    except EngineError as err:
        rep.close()
        rep.emit(ErrorEvent(kind=type(err).__name__, message=str(err)))
        return EXIT_ERROR
    return 1
