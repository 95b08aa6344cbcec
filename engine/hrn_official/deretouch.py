"""HRN's de-retouching module: a UNet predicting a blend layer, and the albedo correction.

Network (FACTS 2.3, ``models/unet.py``): "UNet(3, 3)", double convs (3x3 conv with bias, BN,
ReLU, twice), max-pool downs, bilinear (align_corners=True) ups concatenating [skip, up],
1x1 output conv + sigmoid. The unused deep-supervision heads ``dsoutc1..4`` are part of the
state dict and are kept so loading is strict. Weights are under the key ``generator`` of
``de-retouching.pth``.

Correction (FACTS 1.16): with the texture t in [0, 1] and blend layer B,
T0 = (1 - 2B) t^2 + 2B t and A' = A0 (t + 1/phi) / (T0 + 1/phi), phi = 1e6 T0^3 + 1e-6.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

#: Resolution the UNet runs at (the 256 texture is upsampled to it).
UNET_SIZE = 512


class _DoubleConv(nn.Module):
    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(in_ch, out_ch, 3, padding=1), nn.BatchNorm2d(out_ch), nn.ReLU(True),
            nn.Conv2d(out_ch, out_ch, 3, padding=1), nn.BatchNorm2d(out_ch), nn.ReLU(True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class _In(nn.Module):
    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.conv = _DoubleConv(in_ch, out_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class _Down(nn.Module):
    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.mpconv = nn.Sequential(nn.MaxPool2d(2), _DoubleConv(in_ch, out_ch))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mpconv(x)


class _Up(nn.Module):
    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.conv = _DoubleConv(in_ch, out_ch)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True)
        dy, dx = skip.shape[2] - x.shape[2], skip.shape[3] - x.shape[3]
        x = F.pad(x, (dx // 2, dx - dx // 2, dy // 2, dy - dy // 2))
        return self.conv(torch.cat([skip, x], 1))


class _Out(nn.Module):
    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class DeRetouchUNet(nn.Module):
    """``[B, 3, H, W]`` texture in [-1, 1] -> ``[B, 3, H, W]`` blend layer in [0, 1]
    (H, W divisible by 16; the official module uses 512)."""

    def __init__(self) -> None:
        super().__init__()
        self.inc = _In(3, 64)
        self.down1, self.down2 = _Down(64, 128), _Down(128, 256)
        self.down3, self.down4 = _Down(256, 512), _Down(512, 512)
        self.up1, self.up2 = _Up(1024, 256), _Up(512, 128)
        self.up3, self.up4 = _Up(256, 64), _Up(128, 64)
        self.outc = _Out(64, 3)
        # Deep-supervision heads: trained, stored, never used at inference.
        self.dsoutc4, self.dsoutc3 = _Out(256, 3), _Out(128, 3)
        self.dsoutc2, self.dsoutc1 = _Out(64, 3), _Out(64, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1 = self.inc(x)
        x2 = self.down1(x1)
        x3 = self.down2(x2)
        x4 = self.down3(x3)
        x5 = self.down4(x4)
        y = self.up4(self.up3(self.up2(self.up1(x5, x4), x3), x2), x1)
        return torch.sigmoid(self.outc(y))


def blend_layer(net: DeRetouchUNet, texture: torch.Tensor) -> torch.Tensor:
    """The UNet's blend layer B ``[B, 3, 512, 512]`` in [0, 1] for a ``[B, 3, H, W]``
    unwrapped texture in [-1, 1] (bilinearly resized to the UNet's 512^2 first)."""
    return net(F.interpolate(texture, (UNET_SIZE, UNET_SIZE), mode="bilinear", align_corners=False))


def apply_blend(albedo: torch.Tensor, texture: torch.Tensor, blend: torch.Tensor) -> torch.Tensor:
    """De-retouched albedo A' (FACTS 1.16) at the resolution of ``albedo``.

    Args:
        albedo: ``[B, 3, H, W]`` 3DMM albedo map A0 in [0, 1].
        texture: ``[B, 3, H, W]`` unwrapped photo texture in [-1, 1].
        blend: ``[B, 3, h, w]`` blend layer (:func:`blend_layer`), bilinearly resized to H x W.

    Returns:
        ``[B, 3, H, W]`` float32 albedo with the photo's skin detail re-injected.
    """
    blend = F.interpolate(blend, texture.shape[2:], mode="bilinear", align_corners=False)
    t = (texture + 1.0) / 2.0
    retouched = (1.0 - 2.0 * blend) * t * t + 2.0 * blend * t
    phi = 1e6 * retouched ** 3 + 1e-6
    return albedo * (t + 1.0 / phi) / (retouched + 1.0 / phi)
