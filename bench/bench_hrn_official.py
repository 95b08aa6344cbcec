"""Forward time of each official HRN network (engine.hrn_official) at its official input size.

Weights are random (timing does not depend on them); run with ``--device cuda`` on a GPU.
Run from the repository root: ``python -m bench.bench_hrn_official [--device cpu|cuda] [--repeat N]``.
"""
from __future__ import annotations

import argparse
import time

import torch

from engine.hrn_official import pix2pix
from engine.hrn_official.deretouch import DeRetouchUNet
from engine.hrn_official.net_recon import ReconNet

NETS = (("net_recon (ResNet-50)", ReconNet, (1, 3, 224, 224)),
        ("mid_net (64^2, 6->3)", pix2pix.mid_net, (1, 6, 64, 64)),
        ("high_net (256^2, 9->1)", pix2pix.high_net, (1, 9, 256, 256)),
        ("de-retouching UNet (512^2)", DeRetouchUNet, (1, 3, 512, 512)))


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--device", default="cpu")
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args()
    device = torch.device(args.device)
    print(f"device {device}, torch {torch.__version__}, threads {torch.get_num_threads()}")
    for name, make, shape in NETS:
        net = make().eval().to(device)
        x = torch.rand(shape, device=device)
        with torch.no_grad():
            net(x)  # warm-up
            times = []
            for _ in range(args.repeat):
                if device.type == "cuda":
                    torch.cuda.synchronize()
                t = time.perf_counter()
                net(x)
                if device.type == "cuda":
                    torch.cuda.synchronize()
                times.append(time.perf_counter() - t)
        print(f"{name:30s} median {sorted(times)[len(times) // 2] * 1000:8.1f} ms  (min {min(times) * 1000:.1f})")


if __name__ == "__main__":
    main()
