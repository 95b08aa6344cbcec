"""Command line: ``python -m engine reconstruct PHOTO [PHOTO ...] --out DIR``.

Progress goes to the console as a bar (default), as JSON lines for programs
(``--progress jsonl``, the protocol the Blender extension reads: :mod:`engine.progress`), or
nowhere. Exit code :data:`~engine.progress.EXIT_CANCELLED` after a cancel (Ctrl-C / SIGINT),
:data:`~engine.progress.EXIT_ERROR` after an error the user can fix.

Front ends that add a step after the reconstruction (``python -m hrn_blender.headless``, which
builds a .blend) reuse :func:`add_reconstruct_arguments`, :func:`reconstruct_command`,
:class:`Reporter` and :func:`run` rather than starting this command.
"""
from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
from pathlib import Path
from typing import Callable, Optional, Sequence

from .errors import Cancelled, EngineError
from .progress import (CANCELLED, EXIT_CANCELLED, EXIT_ERROR, DoneEvent, ErrorEvent, Event, ProgressEvent,
                       WarningEvent)

EXAMPLES = ("astronaut",)
PHOTOS_HELP = ("photo files (JPEG, PNG, WebP, TIFF); several photos of one person are fitted "
               "together (shared shape, per-photo pose and lighting)")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m engine",
                                description="HRN for Blender: hierarchical 3D face reconstruction.")
    p.epilog = ("Also: python -m engine assets check|download DIR (official HRN files). For a .blend "
                "scene: python -m hrn_blender.headless PHOTO --blend OUT.blend (needs bpy).")
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("reconstruct", help="reconstruct a 3D head from one or more photos of a face")
    add_reconstruct_arguments(r)
    return p


def add_reconstruct_arguments(parser: argparse.ArgumentParser, photos_help: str = PHOTOS_HELP) -> None:
    """The options of ``reconstruct`` (photos, --example, --out, --face-index, --device,
    --quality, --weights, --head-model, --alignment, --progress, --no-preview), for any front end that runs it."""
    parser.add_argument("photos", nargs="*", help=photos_help)
    parser.add_argument("--example", choices=EXAMPLES,
                        help="use a photo that ships with scikit-image instead of your own")
    parser.add_argument("--out", help="output folder (created; files of the same names are replaced); "
                        "checked for writing before the reconstruction starts")
    parser.add_argument("--face-index", type=_face_index, metavar="N",
                        help="in photos with several faces, use face N, counting from 0 left to right "
                             "(by the centre of each face); applies to every photo given. Default: the "
                             "largest face. The warning about several faces lists them with their N")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--quality", choices=("fast", "high"), default="fast")
    parser.add_argument("--weights", help="folder with the official HRN release (checkpoints + BFM); "
                                           "default: the built-in offline model")
    parser.add_argument("--head-model", metavar="PATH",
                        help="head to fit: a head model file (.npz), or the official HRN release "
                             "folder to fit its Basel Face Model; default: the built-in ICT head")
    parser.add_argument("--alignment", choices=("auto", "official", "mediapipe"), default="auto",
                        help="with --weights: where the face-alignment points come from; auto = the "
                             "official detectors (RetinaFace, 106-point net, FAN) when their files are "
                             "in the weights folder, else MediaPipe")
    parser.add_argument("--progress", choices=("bar", "jsonl", "none"), default="bar")
    parser.add_argument("--no-preview", action="store_true", help="do not write preview.png")


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
    existing = out.parents[len(missing) - 1] if missing else out
    if not existing.is_dir():
        where = "is a file" if existing == out else f"cannot be made: {str(existing)!r} is a file"
        raise EngineError(f"The output folder {str(out)!r} {where}; the result is a folder of "
                          "files. Give --out a folder path (it is created if missing).")
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


class Reporter:
    """Turns engine progress into a console bar or JSON lines (``mode``: bar, jsonl or none)."""

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

    def say(self, text: str) -> None:
        """A line for a person (what is happening, what was written); not in jsonl mode."""
        if self.mode != "jsonl":
            self.close()
            print(text, flush=True)

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
    """The example photo ``name`` from scikit-image, written as a PNG into ``folder``."""
    from PIL import Image

    try:
        from skimage import data
    except ImportError:
        raise EngineError("The example photos come from scikit-image, which is not installed here "
                          "(the Blender extension leaves it out); install it with `pip install "
                          "scikit-image` or give your own photo.") from None

    path = folder / f"{name}.png"
    Image.fromarray(getattr(data, name)()).save(path)
    return path


def reconstruct_command(args: argparse.Namespace, rep: Reporter) -> Path:
    """Reconstruct from ``args`` (:func:`add_reconstruct_arguments`' options), save the result
    and its preview, report warnings and where it was written; return the result folder.

    Raises:
        EngineError: bad arguments, or any engine error (Cancelled included).
    """
    from .pipeline import ReconstructionOptions, reconstruct

    if not args.photos and not args.example:
        raise EngineError("Give at least one photo, or --example astronaut to try a bundled photo.")
    out = Path(args.out or (Path(args.photos[0]).stem + "_hrn" if args.photos else f"{args.example}_hrn"))
    _check_output_folder(out)
    with tempfile.TemporaryDirectory() as tmp:
        photos = [Path(p) for p in args.photos]
        if args.example:
            photos.append(_example_photo(args.example, Path(tmp)))
        options = ReconstructionOptions(device=args.device, quality=args.quality,
                                        weights_dir=Path(args.weights) if args.weights else None,
                                        face_index=args.face_index, alignment=args.alignment,
                                        head_model=Path(args.head_model) if args.head_model else None)
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
    rep.say(f"Wrote {out}")
    return out


def run(rep: Reporter, command: Callable[[], Path]) -> int:
    """Run ``command`` (returns the result folder) and report how it ended: a done event and
    exit code 0, or an error event and :data:`~engine.progress.EXIT_ERROR` /
    :data:`~engine.progress.EXIT_CANCELLED`."""
    try:
        out = command()
    except (Cancelled, KeyboardInterrupt):
        rep.close()
        rep.emit(CANCELLED)
        return EXIT_CANCELLED
    except EngineError as err:
        rep.close()
        rep.emit(ErrorEvent(kind=type(err).__name__, message=str(err)))
        return EXIT_ERROR
    rep.emit(DoneEvent(str(out)))
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["assets"]:
        # `python -m engine assets check|download DIR`: the official HRN files.
        from .hrn_official.__main__ import main as assets_main

        return assets_main(argv)
    args = _parser().parse_args(argv)
    rep = Reporter(args.progress)
    return run(rep, lambda: reconstruct_command(args, rep))
