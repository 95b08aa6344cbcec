"""HRN's ``mid_net`` and ``high_net``: pix2pix ResNet generators ("resnet_9blocks").

Layout (FACTS 2.2): reflection pad 3, 7x7 conv to 64, two stride-2 3x3 convs (128, 256),
nine residual blocks at 256 channels (pad, conv, IN, ReLU, dropout, pad, conv, IN), two
transposed convs (128, 64), reflection pad 3, 7x7 conv to the output, tanh. Instance norm
without affine parameters or running statistics; every convolution has a bias. Dropout is
part of the block (so the second conv is index 6) but inactive in eval mode. Parameters live
under ``model.<index>`` exactly as in the checkpoint, no ``module.`` prefix.

The learned output scales ``alpha`` (mid) and ``beta`` (high) are applied by the caller:
deformation = tanh-output x 0.1 x alpha, displacement = tanh-output x 0.1 x beta
(FACTS 1.17, 1.18), see :func:`scaled_output`.
"""
from __future__ import annotations

import torch
from torch import nn

NGF = 64
NUM_BLOCKS = 9
#: (input, output) channels of the two official generators.
MID_CHANNELS = (6, 3)
HIGH_CHANNELS = (9, 1)
#: Fixed factor the official code multiplies the tanh output by, besides alpha/beta.
OUTPUT_FACTOR = 0.1


def _norm(channels: int) -> nn.InstanceNorm2d:
    return nn.InstanceNorm2d(channels, affine=False, track_running_stats=False)


class ResnetBlock(nn.Module):
    """Residual block ``x + conv_block(x)`` at constant width (keys ``conv_block.{1,6}``)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.conv_block = nn.Sequential(
            nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3), _norm(dim), nn.ReLU(True),
            nn.Dropout(0.5),
            nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3), _norm(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv_block(x)


class ResnetGenerator(nn.Module):
    """pix2pix ``resnet_9blocks`` generator, ``[B, in_nc, H, W]`` -> ``[B, out_nc, H, W]`` in
    [-1, 1]; H and W must be divisible by 4."""

    def __init__(self, in_nc: int, out_nc: int) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.ReflectionPad2d(3), nn.Conv2d(in_nc, NGF, 7), _norm(NGF), nn.ReLU(True)]
        ch = NGF
        for _ in range(2):
            layers += [nn.Conv2d(ch, ch * 2, 3, stride=2, padding=1), _norm(ch * 2), nn.ReLU(True)]
            ch *= 2
        layers += [ResnetBlock(ch) for _ in range(NUM_BLOCKS)]
        for _ in range(2):
            layers += [nn.ConvTranspose2d(ch, ch // 2, 3, stride=2, padding=1, output_padding=1),
                       _norm(ch // 2), nn.ReLU(True)]
            ch //= 2
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(ch, out_nc, 7), nn.Tanh()]
        self.model = nn.Sequential(*layers)
        self.in_nc, self.out_nc = in_nc, out_nc

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] != self.in_nc or x.shape[2] % 4 or x.shape[3] % 4:
            raise ValueError(f"expected [B, {self.in_nc}, H, W] with H, W divisible by 4, "
                             f"got {tuple(x.shape)}")
        return self.model(x)


def mid_net() -> ResnetGenerator:
    """The deformation generator: P (3) + 2T-1 (3) at 64x64 -> 3 channels."""
    return ResnetGenerator(*MID_CHANNELS)


def high_net() -> ResnetGenerator:
    """The displacement generator: P (3) + T' (3) + deformation (3) at 256x256 -> 1 channel."""
    return ResnetGenerator(*HIGH_CHANNELS)


def scaled_output(raw: torch.Tensor, scale: float) -> torch.Tensor:
    """Generator output in [-1, 1] -> decimetres: ``raw * 0.1 * scale`` (scale = alpha or beta)."""
    return raw * (OUTPUT_FACTOR * scale)
