"""TinyViT backbone (5M / 11M / 21M) as the public EfficientSAM3 students use it, written for export.

Reproduces what EfficientSAM3's ``TinyViTTrunkWrapper`` computes (``patch_embed`` then every layer of
``tiny_vit_*_224(img_size=1008, num_classes=0)``, tokens reshaped to a map) in eval mode, with three
differences that change no value:

- The input resolution is read from the input's static shape, not fixed at construction, so one module
  runs at 1008 px (a [B, C, 32, 32] map) and at 504 px ([B, C, 16, 16]). Windows that do not tile a
  stage are zero-padded on the bottom/right before attention and cropped after, as the original does
  (padded tokens are not masked there either, so they are not masked here).
- Feature maps travel between stages as [B, C, H, W]; each attention stage turns them into [B, L, C]
  tokens once at its entry and back once at its exit.
- No stochastic depth and no gradient checkpointing: this is the inference and export form.

Parameter and buffer names equal the original TinyViT's (``patch_embed.seq.0.c.weight``,
``layers.1.blocks.0.attn.attention_biases``, ...), so a published checkpoint loads with ``strict=True``
after stripping ``CHECKPOINT_PREFIX`` (``state_dict_from_checkpoint``). Keys skipped: none from the
current original, whose ``attention_bias_idxs`` buffers are non-persistent (not in its state dict). We
compute the same tables at construction and keep them non-persistent too. Older TinyViT releases saved
them; ``state_dict_from_checkpoint`` drops them because they are a function of the window size only.

Every conv + BatchNorm is a ``ConvNorm``; ``backbone.fuse_for_deployment`` folds them for export.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from efficient_sam3.attention import attend, merge_heads
from efficient_sam3.backbone import ConvNorm

# Where this backbone sits in a published EfficientSAM3 TinyViT student checkpoint.
CHECKPOINT_PREFIX = "detector.backbone.vision_backbone.trunk.model.backbone.model."
# Buffers that older TinyViT checkpoints stored and we recompute (see the module docstring).
RECOMPUTED_BUFFER_SUFFIX = "attention_bias_idxs"

# Constructor arguments per public variant (``tiny_vit_{5m,11m,21m}_224`` in the original).
TINY_VIT_VARIANTS: dict[str, dict] = {
    "5m": {"embed_dims": (64, 128, 160, 320), "depths": (2, 2, 6, 2), "num_heads": (2, 4, 5, 10),
           "window_sizes": (7, 7, 14, 7)},
    "11m": {"embed_dims": (64, 128, 256, 448), "depths": (2, 2, 6, 2), "num_heads": (2, 4, 8, 14),
            "window_sizes": (7, 7, 14, 7)},
    "21m": {"embed_dims": (96, 192, 384, 576), "depths": (2, 2, 6, 2), "num_heads": (3, 6, 12, 18),
            "window_sizes": (7, 7, 14, 7)},
}


def tokens_to_map(tokens: torch.Tensor, height: int, width: int) -> torch.Tensor:
    batch, _, channels = tokens.shape
    # [B, H*W, C] -> [B, C, H*W] -> [B, C, H, W]
    return tokens.transpose(1, 2).reshape(batch, channels, height, width)


def map_to_tokens(feature_map: torch.Tensor) -> torch.Tensor:
    # [B, C, H, W] -> [B, C, H*W] -> [B, H*W, C]
    return feature_map.flatten(2).transpose(1, 2)


def relative_offset_index(window: int) -> torch.Tensor:
    """[w*w, w*w] index into a table of w*w biases, one per |dy|, |dx| offset (row-major points).

    The original numbers offsets in the order it first meets them; from point (0, 0) it meets every
    offset (dy, dx) in row-major order, so the number is |dy| * w + |dx|.
    """
    rows = torch.arange(window).repeat_interleave(window)  # [w*w] y of each point
    cols = torch.arange(window).repeat(window)  # [w*w] x of each point
    dy = (rows[:, None] - rows[None, :]).abs()
    dx = (cols[:, None] - cols[None, :]).abs()
    return dy * window + dx  # [w*w, w*w]


class PatchEmbed(nn.Module):
    """Two stride-2 3x3 conv + BN with GELU between: [B, 3, S, S] -> [B, C, S/4, S/4]."""

    def __init__(self, in_ch: int, embed_dim: int) -> None:
        super().__init__()
        self.seq = nn.Sequential(
            ConvNorm(in_ch, embed_dim // 2, 3, 2, 1),
            nn.GELU(),
            ConvNorm(embed_dim // 2, embed_dim, 3, 2, 1),
        )

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.seq(pixel_values)


class MBConv(nn.Module):
    """Inverted residual: 1x1 expand, 3x3 depthwise, 1x1 project, add, GELU (on [B, C, H, W])."""

    def __init__(self, dim: int, expand_ratio: float) -> None:
        super().__init__()
        hidden = int(dim * expand_ratio)
        self.conv1 = ConvNorm(dim, hidden)
        self.act1 = nn.GELU()
        self.conv2 = ConvNorm(hidden, hidden, 3, 1, 1, groups=hidden)
        self.act2 = nn.GELU()
        self.conv3 = ConvNorm(hidden, dim, bn_weight_init=0.0)
        self.act3 = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.act2(self.conv2(self.act1(self.conv1(x))))
        return self.act3(self.conv3(y) + x)


class PatchMerging(nn.Module):
    """1x1 conv, stride-2 3x3 depthwise conv, 1x1 conv (BN after each, GELU between):
    [B, C, H, W] -> [B, C', (H-1)//2+1, (W-1)//2+1]."""

    def __init__(self, dim: int, out_dim: int) -> None:
        super().__init__()
        self.act = nn.GELU()
        self.conv1 = ConvNorm(dim, out_dim)
        self.conv2 = ConvNorm(out_dim, out_dim, 3, 2, 1, groups=out_dim)
        self.conv3 = ConvNorm(out_dim, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv3(self.act(self.conv2(self.act(self.conv1(x)))))


class WindowAttention(nn.Module):
    """Pre-norm multi-head attention inside one square window, with a learned bias per head and
    per |dy|, |dx| offset (LeViT style): [B', w*w, C] -> [B', w*w, C]."""

    def __init__(self, dim: int, num_heads: int, window: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.norm = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.attention_biases = nn.Parameter(torch.zeros(num_heads, window * window))
        self.register_buffer("attention_bias_idxs", relative_offset_index(window), persistent=False)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        batch, length, _ = tokens.shape
        qkv = self.qkv(self.norm(tokens))
        head_dim = self.head_dim
        # [B', N, 3C] -> [B', N, h, 3d] (per head: q, k, v) -> [B', h, N, 3d]
        qkv = qkv.view(batch, length, self.num_heads, 3 * head_dim).transpose(1, 2)
        # Slices, not split: XNNPACK takes slice_copy but not split_with_sizes_copy. 3 x [B', h, N, d]
        q, k, v = qkv[..., :head_dim], qkv[..., head_dim:2 * head_dim], qkv[..., 2 * head_dim:]
        bias = self.attention_biases[:, self.attention_bias_idxs]  # [h, N, N]
        return self.proj(merge_heads(attend(q, k, v, bias)))  # [B', N, C]


class Mlp(nn.Module):
    """LayerNorm, then Linear -> GELU -> Linear."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(self.norm(x))))


class TinyVitBlock(nn.Module):
    """Window attention, a 3x3 depthwise conv + BN on the token map, then an MLP; residuals around
    attention and MLP. Tokens [B, H*W, C] in and out; ``height``/``width`` are static ints."""

    def __init__(self, dim: int, num_heads: int, window: int, mlp_ratio: float, local_conv_size: int) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"TinyViT block width {dim} is not divisible by its {num_heads} heads")
        self.window = window
        self.attn = WindowAttention(dim, num_heads, window)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.local_conv = ConvNorm(dim, dim, local_conv_size, 1, local_conv_size // 2, groups=dim)

    def windowed_attention(self, tokens: torch.Tensor, height: int, width: int) -> torch.Tensor:
        batch, _, channels = tokens.shape
        window = self.window
        pad_bottom, pad_right = -height % window, -width % window
        x = tokens.view(batch, height, width, channels)  # [B, H, W, C]
        if pad_bottom or pad_right:
            x = F.pad(x, (0, 0, 0, pad_right, 0, pad_bottom))  # [B, pH, pW, C], zeros
        rows, cols = (height + pad_bottom) // window, (width + pad_right) // window
        # [B, nH, w, nW, w, C] -> [B, nH, nW, w, w, C] -> [B*nH*nW, w*w, C]
        windows = x.view(batch, rows, window, cols, window, channels).transpose(2, 3).reshape(
            -1, window * window, channels)
        windows = self.attn(windows)
        # [B*nH*nW, w*w, C] -> [B, nH, nW, w, w, C] -> [B, nH, w, nW, w, C] -> [B, pH, pW, C]
        x = windows.view(batch, rows, cols, window, window, channels).transpose(2, 3).reshape(
            batch, rows * window, cols * window, channels)
        if pad_bottom or pad_right:
            x = x[:, :height, :width]  # [B, H, W, C]
        return x.reshape(batch, height * width, channels)  # [B, H*W, C]

    def forward(self, tokens: torch.Tensor, height: int, width: int) -> torch.Tensor:
        tokens = tokens + self.windowed_attention(tokens, height, width)
        tokens = map_to_tokens(self.local_conv(tokens_to_map(tokens, height, width)))
        return tokens + self.mlp(tokens)


class ConvStage(nn.Module):
    """Stage 0: MBConv blocks, then patch merging; [B, C, H, W] -> [B, C', H/2, W/2]."""

    def __init__(self, dim: int, out_dim: int, depth: int, expand_ratio: float) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(MBConv(dim, expand_ratio) for _ in range(depth))
        self.downsample = PatchMerging(dim, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return self.downsample(x)


class AttentionStage(nn.Module):
    """TinyViT blocks on tokens, then patch merging unless last; [B, C, H, W] -> [B, C', H', W']."""

    def __init__(self, dim: int, out_dim: int, depth: int, num_heads: int, window: int, mlp_ratio: float,
                 local_conv_size: int, downsample: bool) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(
            TinyVitBlock(dim, num_heads, window, mlp_ratio, local_conv_size) for _ in range(depth))
        self.downsample = PatchMerging(dim, out_dim) if downsample else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, _, height, width = x.shape
        tokens = map_to_tokens(x)  # [B, H*W, C]
        for block in self.blocks:
            tokens = block(tokens, height, width)
        x = tokens_to_map(tokens, height, width)  # [B, C, H, W]
        return self.downsample(x) if self.downsample is not None else x


class TinyVitBackbone(nn.Module):
    """TinyViT trunk: [B, 3, S, S] -> last-stage map [B, embed_dims[-1], h, w], h = w = S/32 rounded up
    at each stride-2 step (32 at S=1008, 16 at S=504). Build a public variant with ``from_variant``."""

    def __init__(self, embed_dims: tuple[int, ...], depths: tuple[int, ...], num_heads: tuple[int, ...],
                 window_sizes: tuple[int, ...], mlp_ratio: float = 4.0, mbconv_expand_ratio: float = 4.0,
                 local_conv_size: int = 3) -> None:
        super().__init__()
        lengths = {"embed_dims": len(embed_dims), "depths": len(depths), "num_heads": len(num_heads),
                   "window_sizes": len(window_sizes)}
        if len(set(lengths.values())) != 1 or len(depths) < 2:
            raise ValueError(f"TinyViT needs one entry per stage (at least 2) in every list, got {lengths}")
        self.channels = embed_dims[-1]
        self.patch_embed = PatchEmbed(3, embed_dims[0])
        last = len(depths) - 1
        self.layers = nn.ModuleList([ConvStage(embed_dims[0], embed_dims[1], depths[0], mbconv_expand_ratio)])
        self.layers.extend(
            AttentionStage(embed_dims[i], embed_dims[min(i + 1, last)], depths[i], num_heads[i], window_sizes[i],
                           mlp_ratio, local_conv_size, downsample=i < last)
            for i in range(1, len(depths)))

    @classmethod
    def from_variant(cls, name: str) -> TinyVitBackbone:
        if name not in TINY_VIT_VARIANTS:
            raise ValueError(f"unknown TinyViT variant {name!r}; known: {sorted(TINY_VIT_VARIANTS)}")
        return cls(**TINY_VIT_VARIANTS[name])

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(pixel_values)  # [B, C0, S/4, S/4]
        for layer in self.layers:
            x = layer(x)
        return x  # [B, C_last, h, w]


def state_dict_from_checkpoint(checkpoint_state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The TinyViT entries of a published EfficientSAM3 student state dict, prefix stripped, minus
    any stored ``attention_bias_idxs`` (recomputed here); load the result with ``strict=True``."""
    return {key[len(CHECKPOINT_PREFIX):]: value for key, value in checkpoint_state.items()
            if key.startswith(CHECKPOINT_PREFIX) and not key.endswith(RECOMPUTED_BUFFER_SUFFIX)}
