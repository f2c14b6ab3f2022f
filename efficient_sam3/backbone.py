"""RepViT backbone (parameter names follow timm's ``repvit_m1_1``) and its projection to SAM3's trunk.

Every block is conv + BatchNorm with re-parameterisable multi-branch token mixers; ``fuse_for_deployment``
turns the training form into single convolutions (the RepViT deployment form) for export.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from efficient_sam3.config import BackboneConfig


class ConvNorm(nn.Sequential):
    """Conv (no bias) followed by BatchNorm; names ``c`` and ``bn`` as in timm."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int = 1, stride: int = 1, padding: int = 0,
                 groups: int = 1, bn_weight_init: float = 1.0) -> None:
        super().__init__()
        self.add_module("c", nn.Conv2d(in_ch, out_ch, kernel, stride, padding, groups=groups, bias=False))
        self.add_module("bn", nn.BatchNorm2d(out_ch))
        nn.init.constant_(self.bn.weight, bn_weight_init)
        nn.init.zeros_(self.bn.bias)

    @torch.no_grad()
    def fuse(self) -> nn.Conv2d:
        return fold_batchnorm(self.c, self.bn)


def fold_batchnorm(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """Return one conv equal to ``bn(conv(x))`` in eval mode."""
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    fused = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                      groups=conv.groups, bias=True)
    conv_bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
    fused.weight.copy_(conv.weight * scale[:, None, None, None])
    fused.bias.copy_(bn.bias + (conv_bias - bn.running_mean) * scale)
    return fused


class RepVggDw(nn.Module):
    """Depthwise k x k + depthwise 1x1 + identity, then BN; re-parameterises into one depthwise conv."""

    def __init__(self, dim: int, kernel_size: int) -> None:
        super().__init__()
        self.conv = ConvNorm(dim, dim, kernel_size, 1, kernel_size // 2, groups=dim)
        self.conv1 = nn.Conv2d(dim, dim, 1, 1, 0, groups=dim)
        self.bn = nn.BatchNorm2d(dim)
        self.fused: nn.Conv2d | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fused is not None:
            return self.fused(x)
        return self.bn(self.conv(x) + self.conv1(x) + x)

    @torch.no_grad()
    def reparameterize(self) -> None:
        conv = self.conv.fuse()
        pad = conv.kernel_size[0] // 2
        weight_1x1 = F.pad(self.conv1.weight, [pad, pad, pad, pad])
        identity = F.pad(torch.ones_like(self.conv1.weight), [pad, pad, pad, pad])
        conv.weight.copy_(conv.weight + weight_1x1 + identity)
        conv.bias.copy_(conv.bias + self.conv1.bias)
        self.fused = fold_batchnorm(conv, self.bn)
        del self.conv, self.conv1, self.bn


class SqueezeExcite(nn.Module):
    """timm's SE module at rd_ratio 0.25 rounded to a multiple of 8 (``fc1``/``fc2``)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        reduced = max(8, int(dim * 0.25 + 4) // 8 * 8)
        self.fc1 = nn.Conv2d(dim, reduced, 1)
        self.fc2 = nn.Conv2d(reduced, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = self.fc2(torch.relu(self.fc1(x.mean(dim=(2, 3), keepdim=True))))
        return x * gate.sigmoid()


class RepVitMlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.conv1 = ConvNorm(dim, hidden)
        self.act = nn.GELU()
        self.conv2 = ConvNorm(hidden, dim, bn_weight_init=0.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(self.act(self.conv1(x)))


class RepViTBlock(nn.Module):
    def __init__(self, dim: int, mlp_ratio: int, kernel_size: int, use_se: bool) -> None:
        super().__init__()
        self.token_mixer = RepVggDw(dim, kernel_size)
        self.se = SqueezeExcite(dim) if use_se else nn.Identity()
        self.channel_mixer = RepVitMlp(dim, dim * mlp_ratio)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.se(self.token_mixer(x))
        return x + self.channel_mixer(x)


class RepVitStem(nn.Module):
    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.conv1 = ConvNorm(in_ch, out_ch // 2, 3, 2, 1)
        self.act1 = nn.GELU()
        self.conv2 = ConvNorm(out_ch // 2, out_ch, 3, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(self.act1(self.conv1(x)))


class RepVitDownsample(nn.Module):
    def __init__(self, in_dim: int, out_dim: int, mlp_ratio: int, kernel_size: int) -> None:
        super().__init__()
        self.pre_block = RepViTBlock(in_dim, mlp_ratio, kernel_size, use_se=False)
        self.spatial_downsample = ConvNorm(in_dim, in_dim, kernel_size, 2, (kernel_size - 1) // 2, groups=in_dim)
        self.channel_downsample = ConvNorm(in_dim, out_dim)
        self.ffn = RepVitMlp(out_dim, out_dim * mlp_ratio)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.channel_downsample(self.spatial_downsample(self.pre_block(x)))
        return x + self.ffn(x)


class RepVitStage(nn.Module):
    def __init__(self, in_dim: int, out_dim: int, depth: int, mlp_ratio: int, kernel_size: int,
                 downsample: bool) -> None:
        super().__init__()
        self.downsample = RepVitDownsample(in_dim, out_dim, mlp_ratio, kernel_size) if downsample else nn.Identity()
        # SE alternates through a stage, starting on (as timm).
        self.blocks = nn.Sequential(
            *[RepViTBlock(out_dim, mlp_ratio, kernel_size, use_se=(i % 2 == 0)) for i in range(depth)]
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.downsample(x))


class RepVitBackbone(nn.Module):
    """RepViT trunk returning the stride-16 and stride-32 stage outputs."""

    def __init__(self, config: BackboneConfig) -> None:
        super().__init__()
        dims = config.embed_dims
        self.stem = RepVitStem(3, dims[0])
        self.stages = nn.ModuleList(
            RepVitStage(dims[max(i - 1, 0)], dims[i], config.depths[i], config.mlp_ratio, config.kernel_size,
                        downsample=i > 0)
            for i in range(len(dims))
        )

    def forward(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """[B, 3, S, S] -> (stride-16 map [B, C3, S/16, S/16], stride-32 map [B, C4, S/32, S/32])."""
        x = self.stem(pixel_values)
        outputs = []
        for stage in self.stages:
            x = stage(x)
            outputs.append(x)
        return outputs[-2], outputs[-1]


class TrunkProjection(nn.Module):
    """Bring the two deepest RepViT stages to SAM3's trunk shape ([B, trunk_channels, 36, 36] at 504 px).

    Both maps are resized (bilinear, no antialias) to the trunk grid, concatenated and mixed by a
    1x1 conv + BN: cheap at 36x36 and foldable for deployment.
    """

    def __init__(self, config: BackboneConfig, grid: int) -> None:
        super().__init__()
        self.grid = grid
        self.proj = ConvNorm(config.embed_dims[-2] + config.embed_dims[-1], config.trunk_channels)

    def forward(self, maps: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """maps: the backbone's outputs, the stride-16 and stride-32 maps last."""
        stride16, stride32 = maps[-2], maps[-1]
        size = (self.grid, self.grid)
        stride16 = F.interpolate(stride16, size=size, mode="bilinear", align_corners=False)
        stride32 = F.interpolate(stride32, size=size, mode="bilinear", align_corners=False)
        return self.proj(torch.cat([stride16, stride32], dim=1))  # [B, trunk_channels, grid, grid]


class EfficientSam3Head(nn.Module):
    """The public EfficientSAM3 students' projection head (their ``trunk.model.head``): the stride-32
    map -> 1x1 conv + BN -> GELU -> 3x3 conv -> bilinear resize (no antialias) to the trunk grid.

    The students were trained at 1008 px (a 32x32 map resized to 72x72); at 504 px the same head
    resizes 16x16 to 36x36.
    """

    def __init__(self, in_channels: int, trunk_channels: int, grid: int) -> None:
        super().__init__()
        self.grid = grid
        self.proj = ConvNorm(in_channels, trunk_channels)
        self.act = nn.GELU()
        self.conv = nn.Conv2d(trunk_channels, trunk_channels, 3, padding=1)

    def forward(self, maps: torch.Tensor | tuple[torch.Tensor, ...]) -> torch.Tensor:
        """maps: the backbone's stride-32 map (TinyViT, EfficientViT), or its maps with the stride-32 one
        last (RepViT) -> [B, trunk_channels, grid, grid]."""
        stride32 = maps if isinstance(maps, torch.Tensor) else maps[-1]
        x = self.conv(self.act(self.proj(stride32)))
        if tuple(x.shape[-2:]) == (self.grid, self.grid):
            return x
        return F.interpolate(x, size=(self.grid, self.grid), mode="bilinear", align_corners=False)


@torch.no_grad()
def fuse_for_deployment(module: nn.Module) -> nn.Module:
    """In place: re-parameterise every RepVggDw and fold every ConvNorm's BN into its conv (eval only);
    modules with their own ``fold_norm`` (EfficientViT's conv layers) fold themselves."""
    for child in list(module.modules()):
        if isinstance(child, RepVggDw) and child.fused is None:
            child.reparameterize()
        elif hasattr(child, "fold_norm"):
            child.fold_norm()
    for parent in list(module.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, ConvNorm):
                setattr(parent, name, child.fuse())
    return module
