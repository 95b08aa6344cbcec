"""HRN's face analyzer ``net_recon``: ResNet-50 trunk + seven 1x1 heads -> 257 coefficients.

Layout (FACTS 1.8, 2.1): a torchvision-style ResNet-50 (Bottleneck v1.5: stride on the 3x3
convolution; blocks [3, 4, 6, 3]; BatchNorm) without its ``fc``, global-average-pooled to
``[B, 2048, 1, 1]``, then seven 1x1 convolutions with bias (80, 64, 80, 3, 27, 2, 1 channels)
concatenated in that order. torchvision is not a dependency: the trunk is defined here with
parameter names identical to the checkpoint's (``backbone.layer1.0.conv1.weight``, ...).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

#: Number of coefficients the network predicts.
NUM_COEFFS = 257
#: Output channels of the seven heads, in concatenation order (id, exp, tex, angle, gamma,
#: translation xy, translation z).
HEAD_CHANNELS = (80, 64, 80, 3, 27, 2, 1)
#: Slices of the 257-vector (FACTS 1.8).
ID, EXP, TEX = slice(0, 80), slice(80, 144), slice(144, 224)
ANGLE, GAMMA, TRANS = slice(224, 227), slice(227, 254), slice(254, 257)


@dataclass(frozen=True)
class Coefficients:
    """The 257 outputs of ``net_recon``, split. All tensors are ``[B, k]`` float32 views.

    Units follow the official BFM file: shape in decimetres, angles in radians.
    """

    identity: torch.Tensor
    """``[B, 80]`` BFM09 shape weights."""
    expression: torch.Tensor
    """``[B, 64]`` expression weights."""
    texture: torch.Tensor
    """``[B, 80]`` albedo basis weights."""
    angles: torch.Tensor
    """``[B, 3]`` rotation angles (x pitch, y yaw, z roll), radians; R = Rz Ry Rx."""
    gamma: torch.Tensor
    """``[B, 27]`` raw SH lighting, 9 per channel, R block first; 0.8 (init_lit) is NOT yet
    added to the DC terms (see :func:`sh_coefficients`)."""
    translation: torch.Tensor
    """``[B, 3]`` translation (decimetres) applied after rotation."""

    @classmethod
    def split(cls, coeffs: torch.Tensor) -> "Coefficients":
        """Split ``[B, 257]`` network output into its named parts."""
        if coeffs.dim() != 2 or coeffs.shape[1] != NUM_COEFFS:
            raise ValueError(f"expected [B, {NUM_COEFFS}] coefficients, got {tuple(coeffs.shape)}")
        return cls(coeffs[:, ID], coeffs[:, EXP], coeffs[:, TEX], coeffs[:, ANGLE],
                   coeffs[:, GAMMA], coeffs[:, TRANS])

    def sh_coefficients(self) -> torch.Tensor:
        """``[B, 9, 3]`` final SH lighting in :mod:`engine.geometry.sh` layout (coefficient, RGB),
        with :data:`engine.geometry.sh.HRN_INIT_LIT` added to the DC term of every channel."""
        from ..geometry.sh import HRN_INIT_LIT

        sh = self.gamma.reshape(-1, 3, 9).transpose(1, 2).clone()
        sh[:, 0, :] += HRN_INIT_LIT
        return sh


class Bottleneck(nn.Module):
    """ResNet v1.5 bottleneck: 1x1 -> 3x3 (stride here) -> 1x1 (x4 channels), BN after each."""

    expansion = 4

    def __init__(self, in_ch: int, width: int, stride: int) -> None:
        super().__init__()
        out_ch = width * self.expansion
        self.conv1 = nn.Conv2d(in_ch, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, out_ch, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_ch)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or in_ch != out_ch:
            self.downsample = nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False),
                                            nn.BatchNorm2d(out_ch))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        skip = x if self.downsample is None else self.downsample(x)
        return self.relu(out + skip)


class ResNet50Trunk(nn.Module):
    """ResNet-50 without ``fc``: ``[B, 3, H, W]`` -> ``[B, 2048, 1, 1]`` (average-pooled)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        in_ch = 64
        for i, (blocks, width, stride) in enumerate(((3, 64, 1), (4, 128, 2), (6, 256, 2), (3, 512, 2))):
            layers = []
            for b in range(blocks):
                layers.append(Bottleneck(in_ch, width, stride if b == 0 else 1))
                in_ch = width * Bottleneck.expansion
            setattr(self, f"layer{i + 1}", nn.Sequential(*layers))
        self.avgpool = nn.AdaptiveAvgPool2d(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.avgpool(x)


class ReconNet(nn.Module):
    """``net_recon``: RGB crop -> 257 coefficients. Use in eval mode (BN running statistics)."""

    def __init__(self) -> None:
        super().__init__()
        self.backbone = ResNet50Trunk()
        self.final_layers = nn.ModuleList(nn.Conv2d(2048, c, 1, bias=True) for c in HEAD_CHANNELS)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """Args:
            image: ``[B, 3, 224, 224]`` float32 RGB in [0, 1] (no mean/std normalisation),
                the similarity-aligned crop of :mod:`.align`.

        Returns:
            ``[B, 257]`` float32 coefficients (split with :meth:`Coefficients.split`).
        """
        feat = self.backbone(image)
        return torch.cat([head(feat) for head in self.final_layers], 1).flatten(1)
