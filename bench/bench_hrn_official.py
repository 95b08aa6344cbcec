"""Timing of the clean-room official HRN (engine.hrn_official).

1. Forward time of each official network at its official input size, the detector chain's
   included (random weights; timing does not depend on them).
2. The full photo -> FaceReconstruction pipeline on the astronaut photo
   (:func:`engine.hrn_official.reconstruct.reconstruct_with_model`), per stage, with the
   official files in ``--assets DIR`` or, without it, with fake files in the official formats
   written to a temporary folder (random weights: the output is noise, only timed).

Run from the repository root:
``python -m bench.bench_hrn_official [--device cpu|cuda] [--repeat N] [--assets DIR] [--albedo 1024]``.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

from engine.hrn_official import pix2pix
from engine.hrn_official.deretouch import DeRetouchUNet
from engine.hrn_official.landmark106 import Landmark106Net
from engine.hrn_official.net_recon import ReconNet
from engine.hrn_official.retinaface import RetinaFace
from engine.hrn_official.s3fd import S3FD

NETS = (("net_recon (ResNet-50)", ReconNet, (1, 3, 224, 224)),
        ("mid_net (64^2, 6->3)", pix2pix.mid_net, (1, 6, 64, 64)),
        ("high_net (256^2, 9->1)", pix2pix.high_net, (1, 9, 256, 256)),
        ("de-retouching UNet (512^2)", DeRetouchUNet, (1, 3, 512, 512)),
        # The official detector chain (used when its files are present); FAN is TorchScript
        # from its file, so it is timed only within the pipeline with real files.
        ("RetinaFace (512^2)", RetinaFace, (1, 3, 512, 512)),
        ("106-point net (224^2)", Landmark106Net, (1, 3, 224, 224)),
        ("S3FD (224^2 crop)", S3FD, (1, 3, 224, 224)))


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def bench_networks(device: torch.device, repeat: int) -> None:
    for name, make, shape in NETS:
        net = make().eval().to(device)
        x = torch.rand(shape, device=device)
        with torch.no_grad():
            net(x)  # warm-up
            times = []
            for _ in range(repeat):
                _sync(device)
                t = time.perf_counter()
                net(x)
                _sync(device)
                times.append(time.perf_counter() - t)
        print(f"{name:30s} median {sorted(times)[len(times) // 2] * 1000:8.1f} ms  (min {min(times) * 1000:.1f})")


def bench_pipeline(device: torch.device, repeat: int, assets: Path, albedo_size: int) -> None:
    from PIL import Image
    from skimage import data

    from engine.detect.landmarks import detect_landmarks
    from engine.hrn_official.model import OfficialHRN
    from engine.hrn_official.reconstruct import reconstruct_with_model
    from engine.io.image_io import load_photo

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "astronaut.jpg"
        Image.fromarray(data.astronaut()).save(path, quality=95)
        photo = load_photo(path)
        t = time.perf_counter()
        landmarks = detect_landmarks(photo)
        print(f"{'MediaPipe landmarks':30s} {(time.perf_counter() - t) * 1000:8.1f} ms")
    t = time.perf_counter()
    hrn = OfficialHRN.load(assets, device)
    print(f"{'load official files':30s} {(time.perf_counter() - t) * 1000:8.1f} ms")
    reconstruct_with_model(hrn, photo, landmarks, albedo_size=albedo_size)  # warm-up
    for _ in range(repeat):
        _sync(device)
        t = time.perf_counter()
        result = reconstruct_with_model(hrn, photo, landmarks, albedo_size=albedo_size)
        _sync(device)
        stages = ", ".join(f"{k} {v * 1000:.0f}" for k, v in result.metadata["timings_s"].items())
        print(f"{'full pipeline':30s} {(time.perf_counter() - t) * 1000:8.1f} ms  ({stages} ms; "
              f"albedo {albedo_size}^2, rasterizer {result.metadata['rasterizer']}; "
              f"alignment: {result.metadata['landmarks']})")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--device", default="cpu")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--assets", type=Path, help="official HRN files (default: fake files, timing only)")
    p.add_argument("--albedo", type=int, default=1024, help="albedo map side, texels")
    p.add_argument("--skip-networks", action="store_true")
    args = p.parse_args()
    device = torch.device(args.device)
    print(f"device {device}, torch {torch.__version__}, threads {torch.get_num_threads()}")
    if not args.skip_networks:
        bench_networks(device, args.repeat)
    if args.assets is not None:
        bench_pipeline(device, args.repeat, args.assets, args.albedo)
        return
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from official_fakes import write_official_tree

    with tempfile.TemporaryDirectory() as tmp:
        write_official_tree(Path(tmp))
        bench_pipeline(device, args.repeat, Path(tmp), args.albedo)


if __name__ == "__main__":
    main()
