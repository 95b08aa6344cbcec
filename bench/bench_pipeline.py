"""Single-view pipeline: wall time per stage and peak memory, on scikit-image's astronaut.

Run: ``python -m bench.bench_pipeline [--quality fast|high] [--device cpu|cuda] [--threads N]``.
Prints one line per stage plus the total and the process's peak resident memory.
``--threads`` sets torch's intra-op threads (default: torch's own choice); on a machine
shared with other busy processes, 1 thread can be many times faster than 2, as each
multi-threaded op waits for its second thread to be scheduled.
"""
from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

import torch
from PIL import Image
from skimage import data

from engine.pipeline import ReconstructionOptions, reconstruct


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--quality", default="fast", choices=("fast", "high"))
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        photo = Path(tmp) / "astronaut.png"
        Image.fromarray(data.astronaut()).save(photo)
        start = time.perf_counter()
        result = reconstruct([photo], ReconstructionOptions(device=args.device, quality=args.quality))
        total = time.perf_counter() - start
    print(f"quality={args.quality} device={result.metadata['device']} threads={args.threads} "
          f"vertices={len(result.vertices)} maps={result.displacement_map.shape[0]}²")
    for stage, seconds in result.metadata["timings_s"].items():
        print(f"  {stage:10s} {seconds:7.2f} s")
    print(f"  {'total':10s} {total:7.2f} s (includes detection and model loading)")
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"  peak resident memory {peak_mb:.0f} MB")


if __name__ == "__main__":
    main()
