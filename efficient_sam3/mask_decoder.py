"""SAM3's mask decoder (weight-compatible with transformers' ``Sam3MaskDecoder``) plus our mask-quality
head.

The encoder tokens first cross-attend to the prompt; a pixel decoder merges them (as the coarsest
level) with FPN levels 1 and 0 up to 144x144; each query's mask is the dot product of its embedding
with the per-pixel embedding. SAM3's semantic-segmentation branch is not part of the student.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from efficient_sam3.attention import MLP, Attention

NUM_UPSAMPLING_STAGES = 3
GROUP_NORM_GROUPS = 8


class PixelDecoder(nn.Module):
    def __init__(self, hidden_size: int) -> None:
        super().__init__()
        self.conv_layers = nn.ModuleList(
            nn.Conv2d(hidden_size, hidden_size, 3, padding=1) for _ in range(NUM_UPSAMPLING_STAGES))
        self.norms = nn.ModuleList(nn.GroupNorm(GROUP_NORM_GROUPS, hidden_size) for _ in range(NUM_UPSAMPLING_STAGES))

    def forward(self, features: list[torch.Tensor], skip_finest: bool = False) -> torch.Tensor:
        """features fine -> coarse, e.g. [B,C,144,144], [B,C,72,72], [B,C,36,36] -> [B, C, 144, 144].
        ``skip_finest`` (the fast mask path): the last stage runs at the size before it, without the finest
        level -> [B, C, 72, 72]; every stage's weights still apply, so the features keep their statistics."""
        x = features[-1]
        skips = list(reversed(features[:-1]))
        for i, skip in enumerate(skips):
            if not (skip_finest and i == len(skips) - 1):
                x = F.interpolate(x, size=skip.shape[-2:], mode="nearest") + skip
            x = F.relu(self.norms[i](self.conv_layers[i](x)))
        return x


class MaskEmbedder(nn.Module):
    def __init__(self, hidden_size: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(hidden_size, hidden_size) for _ in range(3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.layers[0](x))
        x = F.relu(self.layers[1](x))
        return self.layers[2](x)


class MaskDecoder(nn.Module):
    def __init__(self, hidden_size: int, num_heads: int, coarse_masks: bool = False) -> None:
        super().__init__()
        self.coarse_masks = coarse_masks  # MaskDecoderConfig.coarse_masks
        self.pixel_decoder = PixelDecoder(hidden_size)
        self.mask_embedder = MaskEmbedder(hidden_size)
        self.instance_projection = nn.Conv2d(hidden_size, hidden_size, kernel_size=1)
        self.prompt_cross_attn = Attention(hidden_size, num_heads)
        self.prompt_cross_attn_norm = nn.LayerNorm(hidden_size)

    def forward(self, query_states: torch.Tensor, fpn_fine: list[torch.Tensor], encoder_tokens: torch.Tensor,
                prompt: torch.Tensor, prompt_bias: torch.Tensor) -> torch.Tensor:
        """query_states [B, Q, C]; fpn_fine = [level 0 [B,C,144,144], level 1 [B,C,72,72]];
        encoder_tokens [B, G*G, C] (G = 36); prompt [B, L, C] -> mask logits [B, Q, 144, 144]."""
        encoder_tokens = encoder_tokens + self.prompt_cross_attn(
            self.prompt_cross_attn_norm(encoder_tokens), prompt, prompt, prompt_bias)
        batch, tokens, channels = encoder_tokens.shape
        grid = fpn_fine[-1].shape[-1] // 2
        encoder_map = encoder_tokens.transpose(1, 2).reshape(batch, channels, grid, grid)  # [B, C, G, G]
        pixels = self.instance_projection(  # [B, C, 4G, 4G]; coarse: [B, C, 2G, 2G]
            self.pixel_decoder([*fpn_fine, encoder_map], skip_finest=self.coarse_masks))
        mask_embed = self.mask_embedder(query_states)  # [B, Q, C]
        height, width = pixels.shape[-2:]
        masks = torch.matmul(mask_embed, pixels.flatten(2))  # [B, Q, C] @ [B, C, HW] -> [B, Q, HW]
        masks = masks.view(batch, -1, height, width)
        if self.coarse_masks:  # [B, Q, 2G, 2G] -> [B, Q, 4G, 4G], the size of level 0
            masks = F.interpolate(masks, size=fpn_fine[0].shape[-2:], mode="bilinear", align_corners=False)
        return masks


class MaskQualityHead(nn.Module):
    """Predicts each query's mask IoU with its object (a logit; sigmoid gives the IoU estimate).
    Not part of SAM3: initialised fresh when converting."""

    def __init__(self, hidden_size: int) -> None:
        super().__init__()
        self.mlp = MLP(hidden_size, hidden_size, 1, 3)

    def forward(self, query_states: torch.Tensor) -> torch.Tensor:
        return self.mlp(query_states).squeeze(-1)  # [B, Q, C] -> [B, Q]
