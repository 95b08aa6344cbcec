"""``python -m engine.hrn_official assets check DIR`` / ``assets download DIR``.

``check`` prints every expected official file with size and whether it loads strictly; exit
code 0 when all needed files load, 1 otherwise. ``download`` fetches the missing needed files
from ModelScope (resumable; ``--detectors`` adds the official detector chain), exit 2 with a
message on failure.
"""
from __future__ import annotations

import argparse
import sys

from ..errors import EngineError
from . import assets


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m engine.hrn_official",
                                description="Official HRN release files: check or download.")
    sub = p.add_subparsers(dest="command", required=True)
    a = sub.add_parser("assets", help="check or download the official files")
    a.add_argument("action", choices=("check", "download"))
    a.add_argument("dir", help="folder holding the files (GitHub tree or ModelScope layout)")
    a.add_argument("--no-load", action="store_true", help="check: sizes only, do not load")
    a.add_argument("--detectors", action="store_true",
                   help="download: also fetch the official detector chain's files (RetinaFace, "
                        "106-point net, box regressor, S3FD, FAN), used instead of MediaPipe when present")
    args = p.parse_args(argv)
    if args.action == "check":
        statuses = assets.check(args.dir, load=not args.no_load)
        print(assets.format_report(args.dir, statuses))
        return 0 if all(s.loads is not False and s.path for s in statuses if s.entry.needed) else 1
    try:
        def bar(stage: str, fraction: float) -> None:
            print(f"\r{stage}: {fraction * 100:5.1f} %", end="", file=sys.stderr, flush=True)

        for path in assets.download_official(args.dir, progress=bar, detectors=args.detectors):
            print(f"\nfetched {path}", file=sys.stderr)
    except EngineError as err:
        print(f"\nerror: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
