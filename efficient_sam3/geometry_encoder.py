"""SAM3's geometry encoder on the text-prompt path.

SAM3's own code (facebookresearch/sam3 ``Sam3Image._encode_prompt``) runs its geometry encoder for
every prompt. With no boxes or points it still encodes one CLS token: learned embedding -> linear ->
LayerNorm, then ``num_layers`` pre-norm layers in which the token attends to itself and to the image
(FPN level 2, position encoding added to the keys), then a final LayerNorm. That token joins the
prompt after the text tokens, and every head (DETR encoder and decoder, scoring, mask decoder) sees
it. transformers' ``Sam3Model`` skips the encoder for text-only prompts; ``prompt_path`` in the
config chooses between the two.

The token depends on the image, not on the text, so one token serves every prompt of a frame.
Parameter names follow transformers' ``Sam3GeometryEncoder`` (``cls_embed``, ``final_proj``,
``prompt_layer_norm``, ``layers.N``, ``output_layer_norm``); the box-prompt parameters of both layouts
are not used on this path.
"""

from __future__ import annotations

import torch
from torch import nn

from efficient_sam3.attention import Attention, FeedForward
from efficient_sam3.config import GeometryEncoderConfig


class GeometryEncoderLayer(nn.Module):
    def __init__(self, hidden_size: int, config: GeometryEncoderConfig) -> None:
        super().__init__()
        self.layer_norm1 = nn.LayerNorm(hidden_size)
        self.self_attn = Attention(hidden_size, config.num_heads)
        self.layer_norm2 = nn.LayerNorm(hidden_size)
        self.cross_attn = Attention(hidden_size, config.num_heads)
        self.layer_norm3 = nn.LayerNorm(hidden_size)
        self.mlp = FeedForward(hidden_size, config.intermediate_size, nn.ReLU())

    def forward(self, prompt: torch.Tensor, vision_keys: torch.Tensor, vision: torch.Tensor) -> torch.Tensor:
        """prompt [B, P, C]; vision_keys = vision + position [B, HW, C]; vision [B, HW, C]."""
        normed = self.layer_norm1(prompt)
        prompt = prompt + self.self_attn(normed, normed, normed)
        prompt = prompt + self.cross_attn(self.layer_norm2(prompt), vision_keys, vision)
        return prompt + self.mlp(self.layer_norm3(prompt))


class GeometryPromptEncoder(nn.Module):
    """Encoder tokens of FPN level 2 -> the geometry CLS token [B, 1, C] of a text-only prompt."""

    def __init__(self, hidden_size: int, config: GeometryEncoderConfig) -> None:
        super().__init__()
        self.cls_embed = nn.Embedding(1, hidden_size)
        self.final_proj = nn.Linear(hidden_size, hidden_size)
        self.prompt_layer_norm = nn.LayerNorm(hidden_size)
        self.layers = nn.ModuleList(GeometryEncoderLayer(hidden_size, config) for _ in range(config.num_layers))
        self.output_layer_norm = nn.LayerNorm(hidden_size)

    def forward(self, vision: torch.Tensor, vision_pos: torch.Tensor) -> torch.Tensor:
        """vision [B, HW, C] (FPN level 2, flattened), vision_pos [1, HW, C] -> [B, 1, C]."""
        token = self.prompt_layer_norm(self.final_proj(self.cls_embed.weight))  # [1, C]
        token = token[None].expand(vision.shape[0], 1, token.shape[-1])  # [B, 1, C]
        vision_keys = vision + vision_pos
        for layer in self.layers:
            token = layer(token, vision_keys, vision)
        return self.output_layer_norm(token)
