"""Single-view pipeline: wall time per stage and peak memory, on a photo (default:
scikit-image's 512² astronaut).

Run: ``python -m bench.bench_pipeline [--quality fast|high] [--device cpu|cuda] [--threads N]
[--photo PATH]``.
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

from engine.pipeline import ReconstructionOptions, reconstruct  # first: sets OpenMP's wait policy before torch loads

import torch  # noqa: E402
from PIL import Image  # noqa: E402
from skimage import data  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--quality", default="fast", choices=("fast", "high"))
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--photo", help="photo to reconstruct (default: the astronaut)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        photo = Path(args.photo or Path(tmp) / "astronaut.png")
        if not args.photo:
            Image.fromarray(data.astronaut()).save(photo)
        start = time.perf_counter()
        result = reconstruct([photo], ReconstructionOptions(device=args.device, quality=args.quality))
        total = time.perf_counter() - start
    print(f"photo={photo.name} quality={args.quality} device={result.metadata['device']} threads={args.threads} "
          f"vertices={len(result.vertices)} maps={result.displacement_map.shape[0]}²")
    for stage, seconds in result.metadata["timings_s"].items():
        print(f"  {stage:10s} {seconds:7.2f} s")
    print(f"  {'total':10s} {total:7.2f} s (includes detection and model loading)")
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"  peak resident memory {peak_mb:.0f} MB")


if __name__ == "__main__":
    main()
