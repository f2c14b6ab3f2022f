"""SAM3's FPN neck (weight-compatible with transformers' ``Sam3VisionNeck``).

Turns the trunk map [B, C, 36, 36] into four 256-d levels at scales 4, 2, 1 and 0.5:
[B, 256, 144, 144], [B, 256, 72, 72], [B, 256, 36, 36], [B, 256, 18, 18] at 504 px.
"""

from __future__ import annotations

import torch
from torch import nn

from efficient_sam3.contract import FPN_SCALE_FACTORS


class FpnLayer(nn.Module):
    def __init__(self, in_channels: int, fpn_dim: int, scale_factor: float) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        if scale_factor == 4.0:
            layers += [
                nn.ConvTranspose2d(in_channels, in_channels // 2, kernel_size=2, stride=2),
                nn.GELU(),
                nn.ConvTranspose2d(in_channels // 2, in_channels // 4, kernel_size=2, stride=2),
            ]
            mid = in_channels // 4
        elif scale_factor == 2.0:
            layers += [nn.ConvTranspose2d(in_channels, in_channels // 2, kernel_size=2, stride=2)]
            mid = in_channels // 2
        elif scale_factor == 1.0:
            mid = in_channels
        elif scale_factor == 0.5:
            layers += [nn.MaxPool2d(kernel_size=2, stride=2)]
            mid = in_channels
        else:
            raise ValueError(f"unsupported FPN scale factor {scale_factor}; supported: 4.0, 2.0, 1.0, 0.5")
        self.scale_layers = nn.ModuleList(layers)
        self.proj1 = nn.Conv2d(mid, fpn_dim, kernel_size=1)
        self.proj2 = nn.Conv2d(fpn_dim, fpn_dim, kernel_size=3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.scale_layers:
            x = layer(x)
        return self.proj2(self.proj1(x))


class FpnNeck(nn.Module):
    def __init__(self, in_channels: int, fpn_dim: int) -> None:
        super().__init__()
        if in_channels % 4 != 0:
            raise ValueError(f"FPN neck needs trunk channels divisible by 4, got {in_channels}")
        self.fpn_layers = nn.ModuleList(FpnLayer(in_channels, fpn_dim, s) for s in FPN_SCALE_FACTORS)

    def forward(self, trunk: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """trunk [B, C, G, G] -> 4 maps [B, fpn_dim, 4G, 4G] ... [B, fpn_dim, G/2, G/2]."""
        return tuple(layer(trunk) for layer in self.fpn_layers)
