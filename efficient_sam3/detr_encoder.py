"""SAM3's DETR encoder (weight-compatible with transformers' ``Sam3DetrEncoder``): vision tokens
self-attend (with position encoding), cross-attend to the prompt tokens, then an MLP; pre-norm."""

from __future__ import annotations

import torch
from torch import nn

from efficient_sam3.attention import Attention, FeedForward
from efficient_sam3.config import DetrEncoderConfig


class DetrEncoderLayer(nn.Module):
    def __init__(self, hidden_size: int, config: DetrEncoderConfig) -> None:
        super().__init__()
        self.layer_norm1 = nn.LayerNorm(hidden_size)
        self.self_attn = Attention(hidden_size, config.num_heads)
        self.cross_attn = Attention(hidden_size, config.num_heads)
        self.layer_norm2 = nn.LayerNorm(hidden_size)
        self.mlp = FeedForward(hidden_size, config.intermediate_size, nn.ReLU())
        self.layer_norm3 = nn.LayerNorm(hidden_size)

    def forward(self, vision: torch.Tensor, vision_pos: torch.Tensor, prompt: torch.Tensor,
                prompt_bias: torch.Tensor) -> torch.Tensor:
        """vision [B, HW, C], vision_pos [1, HW, C], prompt [B, L, C], prompt_bias [B, 1, 1, L]."""
        normed = self.layer_norm1(vision)
        with_pos = normed + vision_pos
        vision = vision + self.self_attn(with_pos, with_pos, normed)
        vision = vision + self.cross_attn(self.layer_norm2(vision), prompt, prompt, prompt_bias)
        return vision + self.mlp(self.layer_norm3(vision))


class DetrEncoder(nn.Module):
    def __init__(self, hidden_size: int, config: DetrEncoderConfig) -> None:
        super().__init__()
        self.layers = nn.ModuleList(DetrEncoderLayer(hidden_size, config) for _ in range(config.num_layers))

    def forward(self, vision: torch.Tensor, vision_pos: torch.Tensor, prompt: torch.Tensor,
                prompt_bias: torch.Tensor) -> torch.Tensor:
        """Returns the encoded vision tokens [B, HW, C]; the prompt tokens pass through unchanged."""
        for layer in self.layers:
            vision = layer(vision, vision_pos, prompt, prompt_bias)
        return vision
