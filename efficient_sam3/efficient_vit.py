"""EfficientViT "b" backbones (B0, B1, B2), as used by the public EfficientSAM3 students.

Parameter and buffer names equal those of MIT Han lab's ``efficientvit_backbone_b*`` (relative to that
module), so a published EfficientSAM3 checkpoint loads with ``load_state_dict(strict=True)`` after
stripping ``CHECKPOINT_PREFIX`` (``state_dict_from_checkpoint``). ``forward`` returns the original's ``stage_final`` map.

Layout, for widths (w0..w4) and depths (d0..d4):

- ``input_stem``: 3x3 stride-2 conv + BN + hardswish to w0, then d0 residual depthwise-separable blocks.
- ``stages.0``, ``stages.1``: d1 / d2 inverted-residual (MBConv) blocks; the first has stride 2 and
  no shortcut.
- ``stages.2``, ``stages.3``: a stride-2 MBConv (biases instead of BN on its first two convs), then
  d3 / d4 EfficientViT blocks: residual ReLU linear attention (LiteMLA) + residual MBConv.

Export: every shape comes from the input's static shape, the attention runs as two batched matmuls
in float32, and ``fuse`` folds every BatchNorm into its conv (the deployment form).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from efficient_sam3.backbone import fold_batchnorm
from efficient_sam3.sam3_layout import DETECTOR_PREFIX, STUDENT_BACKBONE_PREFIX

# Where this backbone sits in a published EfficientSAM3 EfficientViT student checkpoint.
CHECKPOINT_PREFIX = DETECTOR_PREFIX + STUDENT_BACKBONE_PREFIX

# Constructor arguments of the three public variants (the original's efficientvit_backbone_b0/b1/b2).
EFFICIENT_VIT_VARIANTS: dict[str, dict] = {
    "b0": {"widths": (8, 16, 32, 64, 128), "depths": (1, 2, 2, 2, 2), "head_dim": 16, "expand_ratio": 4},
    "b1": {"widths": (16, 32, 64, 128, 256), "depths": (1, 2, 3, 3, 4), "head_dim": 16, "expand_ratio": 4},
    "b2": {"widths": (24, 48, 96, 192, 384), "depths": (1, 3, 4, 4, 6), "head_dim": 32, "expand_ratio": 4},
}
# Kernel of the depthwise conv that aggregates neighbouring q/k/v tokens in LiteMLA (one scale).
ATTENTION_AGGREGATION_KERNEL = 5
# Added to the linear attention's normaliser, as the original.
ATTENTION_EPS = 1.0e-15


class ConvLayer(nn.Module):
    """Conv, then BatchNorm (or nothing), then hardswish (or nothing); names ``conv``/``norm``/``act``."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int = 1, stride: int = 1, groups: int = 1,
                 bias: bool = False, norm: bool = True, act: bool = False) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch, kernel, stride, kernel // 2, groups=groups, bias=bias)
        self.norm = nn.BatchNorm2d(out_ch) if norm else nn.Identity()
        self.act = nn.Hardswish() if act else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.norm(self.conv(x)))

    @torch.no_grad()
    def fold_norm(self) -> None:
        """In place (eval only): BatchNorm folded into the conv, which gains a bias."""
        if isinstance(self.norm, nn.BatchNorm2d):
            self.conv = fold_batchnorm(self.conv, self.norm)
            self.norm = nn.Identity()


class DSConv(nn.Module):
    """Depthwise 3x3 (+BN, hardswish) then pointwise (+BN): the stem's local block."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.depth_conv = ConvLayer(channels, channels, 3, groups=channels, act=True)
        self.point_conv = ConvLayer(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.point_conv(self.depth_conv(x))


class MBConv(nn.Module):
    """Inverted residual: 1x1 expand, 3x3 depthwise (stride), 1x1 project; hardswish after the first two.

    ``fewer_norm`` (the stride-2 entry of the attention stages and every EfficientViT block): the first
    two convs have a bias and no BN; otherwise all three have BN and no bias.
    """

    def __init__(self, in_ch: int, out_ch: int, stride: int, expand_ratio: float, fewer_norm: bool) -> None:
        super().__init__()
        mid = round(in_ch * expand_ratio)
        self.inverted_conv = ConvLayer(in_ch, mid, 1, bias=fewer_norm, norm=not fewer_norm, act=True)
        self.depth_conv = ConvLayer(mid, mid, 3, stride, groups=mid, bias=fewer_norm, norm=not fewer_norm, act=True)
        self.point_conv = ConvLayer(mid, out_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.point_conv(self.depth_conv(self.inverted_conv(x)))


class LiteMLA(nn.Module):
    """Multi-scale ReLU linear attention over a [B, C, H, W] map (one aggregation scale).

    q/k/v come from a 1x1 conv; a depthwise 5x5 + grouped 1x1 conv gives a second, aggregated set.
    Each of the ``2 * heads`` groups attends with ReLU kernels:
    ``out = (v @ relu(k)^T) @ relu(q) / (1^T @ relu(k)^T @ relu(q) + eps)``, computed as the original
    does, by padding v with a row of ones so that one matmul pair yields numerator and normaliser.
    """

    def __init__(self, channels: int, head_dim: int) -> None:
        super().__init__()
        self.head_dim = head_dim
        heads = channels // head_dim
        qkv_channels = 3 * heads * head_dim
        self.qkv = ConvLayer(channels, qkv_channels, 1, norm=False)
        kernel = ATTENTION_AGGREGATION_KERNEL
        self.aggreg = nn.ModuleList([nn.Sequential(
            nn.Conv2d(qkv_channels, qkv_channels, kernel, padding=kernel // 2, groups=qkv_channels, bias=False),
            nn.Conv2d(qkv_channels, qkv_channels, 1, groups=3 * heads, bias=False),
        )])
        self.proj = ConvLayer(2 * heads * head_dim, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[B, C, H, W] -> [B, C, H, W]."""
        qkv = self.qkv(x)
        qkv = torch.cat([qkv] + [aggregate(qkv) for aggregate in self.aggreg], dim=1)  # [B, 2*3*heads*d, H, W]
        return self.proj(self.linear_attention(qkv).to(qkv.dtype))

    def linear_attention(self, qkv: torch.Tensor) -> torch.Tensor:
        """[B, G*3*d, H, W] (per group: q, k, v of d channels each) -> [B, G*d, H, W], in float32."""
        batch, _, height, width = qkv.shape
        if height * width <= self.head_dim:
            # The original switches to quadratic attention on maps this small; inputs we export never are.
            raise ValueError(f"LiteMLA needs more than {self.head_dim} tokens, got a {height}x{width} map")
        d = self.head_dim
        qkv = qkv.float().reshape(batch, -1, 3 * d, height * width)  # [B, G, 3d, N]
        q = torch.relu(qkv[:, :, :d])  # [B, G, d, N]
        k = torch.relu(qkv[:, :, d:2 * d])  # [B, G, d, N]
        v = F.pad(qkv[:, :, 2 * d:], (0, 0, 0, 1), value=1.0)  # [B, G, d+1, N], last row ones
        vk = torch.matmul(v, k.transpose(-1, -2))  # [B, G, d+1, N] @ [B, G, N, d] -> [B, G, d+1, d]
        out = torch.matmul(vk, q)  # [B, G, d+1, N]
        out = out[:, :, :-1] / (out[:, :, -1:] + ATTENTION_EPS)  # [B, G, d, N]
        return out.reshape(batch, -1, height, width)  # [B, G*d, H, W]


class ResidualBlock(nn.Module):
    """``main(x) + x``, or ``main(x)`` alone where the block changes shape (name ``main`` as the original)."""

    def __init__(self, main: nn.Module, shortcut: bool) -> None:
        super().__init__()
        self.main = main
        self.shortcut = shortcut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.main(x) + x if self.shortcut else self.main(x)


class EfficientViTBlock(nn.Module):
    """Residual LiteMLA (global context) then residual MBConv (local mixing)."""

    def __init__(self, channels: int, head_dim: int, expand_ratio: float) -> None:
        super().__init__()
        self.context_module = ResidualBlock(LiteMLA(channels, head_dim), shortcut=True)
        self.local_module = ResidualBlock(MBConv(channels, channels, 1, expand_ratio, fewer_norm=True), shortcut=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.local_module(self.context_module(x))


class OpSequential(nn.Module):
    """Blocks run in order, held in ``op_list`` (the original's name)."""

    def __init__(self, ops: list[nn.Module]) -> None:
        super().__init__()
        self.op_list = nn.ModuleList(ops)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for op in self.op_list:
            x = op(x)
        return x


class EfficientVitBackbone(nn.Module):
    """EfficientViT-B trunk: [B, 3, S, S] -> the stride-32 map [B, widths[-1], h, w].

    ``widths``/``depths``: five entries each (stem, two MBConv stages, two attention stages);
    ``head_dim``: channels per LiteMLA head; ``expand_ratio``: MBConv expansion outside the stem.
    See ``EFFICIENT_VIT_VARIANTS``.
    """

    def __init__(self, widths: tuple[int, ...], depths: tuple[int, ...], head_dim: int, expand_ratio: float) -> None:
        super().__init__()
        if len(widths) != 5 or len(depths) != 5:
            raise ValueError(f"EfficientViT needs 5 widths and 5 depths, got {widths} and {depths}")
        self.out_channels = widths[-1]
        stem = [ConvLayer(3, widths[0], 3, stride=2, act=True)]
        stem += [ResidualBlock(DSConv(widths[0]), shortcut=True) for _ in range(depths[0])]
        self.input_stem = OpSequential(stem)

        stages = []
        for stage_idx in (1, 2):
            in_ch, out_ch = widths[stage_idx - 1], widths[stage_idx]
            blocks = [ResidualBlock(MBConv(in_ch, out_ch, 2, expand_ratio, fewer_norm=False), shortcut=False)]
            blocks += [ResidualBlock(MBConv(out_ch, out_ch, 1, expand_ratio, fewer_norm=False), shortcut=True)
                       for _ in range(depths[stage_idx] - 1)]
            stages.append(OpSequential(blocks))
        for stage_idx in (3, 4):
            in_ch, out_ch = widths[stage_idx - 1], widths[stage_idx]
            blocks = [ResidualBlock(MBConv(in_ch, out_ch, 2, expand_ratio, fewer_norm=True), shortcut=False)]
            blocks += [EfficientViTBlock(out_ch, head_dim, expand_ratio) for _ in range(depths[stage_idx])]
            stages.append(OpSequential(blocks))
        self.stages = nn.ModuleList(stages)

    @classmethod
    def from_variant(cls, name: str) -> EfficientVitBackbone:
        if name not in EFFICIENT_VIT_VARIANTS:
            raise ValueError(f"unknown EfficientViT variant {name!r}; known: {sorted(EFFICIENT_VIT_VARIANTS)}")
        return cls(**EFFICIENT_VIT_VARIANTS[name])

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """[B, 3, S, S] -> [B, widths[-1], h, w] (each of the 5 stride-2 convs maps n to ceil(n / 2))."""
        x = self.input_stem(pixel_values)
        for stage in self.stages:
            x = stage(x)
        return x

    @torch.no_grad()
    def fuse(self) -> EfficientVitBackbone:
        """In place, eval only: fold every BatchNorm into its conv (the deployment form); returns self."""
        for module in list(self.modules()):
            if isinstance(module, ConvLayer):
                module.fold_norm()
        return self


def state_dict_from_checkpoint(checkpoint_state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The EfficientViT entries of a published EfficientSAM3 student state dict, prefix stripped; load the
    result into ``EfficientVitBackbone`` with ``strict=True``."""
    return {key[len(CHECKPOINT_PREFIX):]: value for key, value in checkpoint_state.items()
            if key.startswith(CHECKPOINT_PREFIX)}
