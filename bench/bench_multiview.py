"""Time and peak memory of multi-view reconstruction for 2, 4 and 8 views on the CPU.

Views are renders of the built-in head (tests/test_multiview.py's known head) at yaw angles
spread over ±45 degrees with different lights (MediaPipe's detector misses some of these renders at ±60°, and a skipped view would not be timed). Each view count runs in its own process so
peak memory (ru_maxrss) is that run's.

Usage: ``python bench/bench_multiview.py [--quality fast|high] [--views 2 4 8]``.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))


def one_run(count: int, quality: str) -> dict:
    from test_multiview import _identity, known_head, render_photo

    from engine.pipeline import ReconstructionOptions, reconstruct

    parts, _ = known_head(_identity(1.5))
    yaws = [round(-45 + 90 * k / max(count - 1, 1)) for k in range(count)]
    yaws = sorted(yaws, key=abs)                  # frontal-most first
    with tempfile.TemporaryDirectory() as tmp:
        photos = [render_photo(parts, y, (0.5 * ((k % 3) - 1), 0.3, 0.5), Path(tmp) / f"v{k}.png")
                  for k, y in enumerate(yaws)]
        start = time.perf_counter()
        result = reconstruct(photos, ReconstructionOptions(device="cpu", quality=quality))
        seconds = time.perf_counter() - start
    return {"views": count, "quality": quality, "seconds": round(seconds, 1),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "used": sum(v.used for v in result.views), "timings_s": result.metadata["timings_s"],
            "skipped": [v.note for v in result.views if not v.used]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quality", default="fast")
    parser.add_argument("--views", type=int, nargs="+", default=[2, 4, 8])
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one_run(args.one, args.quality)))
        return
    for count in args.views:
        done = subprocess.run([sys.executable, __file__, "--one", str(count), "--quality", args.quality],
                              capture_output=True, text=True, cwd=ROOT)
        lines = [ln for ln in done.stdout.splitlines() if ln.startswith("{")]
        print(lines[-1] if lines else f"{count} views failed: {done.stderr[-2000:]}", flush=True)


if __name__ == "__main__":
    main()
