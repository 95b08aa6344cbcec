"""``python -m benchmark render|evaluate``: the accuracy benchmark on the head scan.

    python -m benchmark render   [--scan DIR] [--out out/benchmark] [--full] [--size 512] [--samples 32]
    python -m benchmark evaluate [--scan DIR] [--out out/benchmark] [--shots NAME ...] [--fresh]

``render`` writes ``OUT/renders/<shot>.png`` + ``.json``; ``evaluate`` reconstructs every
render (cached in ``OUT/reconstructions``), scores it and writes ``OUT/results.md`` and
``OUT/heatmaps.png``.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from engine.errors import EngineError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmark", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("render", "evaluate"):
        p = sub.add_parser(name)
        p.add_argument("--scan", type=Path, default=None,
                       help="folder of the Lee Perry-Smith scan (default ../shared/data/head_scan)")
        p.add_argument("--out", type=Path, default=Path("out/benchmark"), help="results folder")
    r = sub.choices["render"]
    r.add_argument("--full", action="store_true", help="render the large set (90 shots) too")
    r.add_argument("--size", type=int, default=512, help="image side, pixels")
    r.add_argument("--samples", type=int, default=32, help="Cycles samples per pixel")
    e = sub.choices["evaluate"]
    e.add_argument("--shots", nargs="*", default=None, help="render names to score (default: all)")
    e.add_argument("--fresh", action="store_true", help="reconstruct again, ignoring the cache")
    e.add_argument("--quality", default="fast", choices=("fast", "high"))
    args = parser.parse_args(argv)
    try:
        return run(args)
    except EngineError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


def run(args: argparse.Namespace) -> int:
    from .scan import load_scan

    t0 = time.perf_counter()
    scan = load_scan(args.scan)
    if args.command == "render":
        from .render import DEFAULT_SHOTS, full_shots, render_set

        shots = DEFAULT_SHOTS + tuple(s for s in full_shots() if s not in DEFAULT_SHOTS) if args.full else DEFAULT_SHOTS
        paths = render_set(scan, args.out / "renders", shots, args.size, args.samples, log=print)
        print(f"{len(paths)} renders in {args.out / 'renders'} ({time.perf_counter() - t0:.0f} s)")
        return 0
    from engine.pipeline import ReconstructionOptions
    from .evaluate import evaluate
    from .report import write_report

    ev = evaluate(args.out / "renders", args.out, scan, args.shots,
                  ReconstructionOptions(quality=args.quality), fresh=args.fresh)
    md, png = write_report(ev, args.out, time.perf_counter() - t0)
    print(md.read_text())
    print(f"written {md} and {png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
