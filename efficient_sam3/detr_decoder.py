"""SAM3's DETR decoder (weight-compatible with transformers' ``Sam3DetrDecoder``): object queries plus
a presence token, iterative box refinement, and a box relative-position bias on vision cross-attention.

The vision grid is static (36x36 at 504 px), so its normalised coordinates are buffers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from efficient_sam3.attention import MLP, Attention, FeedForward
from efficient_sam3.boxes import box_cxcywh_to_xyxy
from efficient_sam3.config import DetrDecoderConfig
from efficient_sam3.position_encoding import sine_box_encoding

PRESENCE_LOGIT_CLAMP = 10.0


def inverse_sigmoid(x: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    x = x.clamp(min=0, max=1)
    return torch.log(x.clamp(min=eps) / (1 - x).clamp(min=eps))


@dataclass
class DecoderResult:
    """Last-layer decoder state.

    query_states: [B, Q, C] normalised query features.
    boxes_cxcywh: [B, Q, 4] refined boxes, normalised (cx, cy, w, h).
    presence_logits: [B, 1] raw presence score of the prompted concept.
    """

    query_states: torch.Tensor
    boxes_cxcywh: torch.Tensor
    presence_logits: torch.Tensor


class DetrDecoderLayer(nn.Module):
    def __init__(self, hidden_size: int, config: DetrDecoderConfig) -> None:
        super().__init__()
        self.self_attn = Attention(hidden_size, config.num_heads)
        self.self_attn_layer_norm = nn.LayerNorm(hidden_size)
        self.text_cross_attn = Attention(hidden_size, config.num_heads)
        self.text_cross_attn_layer_norm = nn.LayerNorm(hidden_size)
        self.vision_cross_attn = Attention(hidden_size, config.num_heads)
        self.vision_cross_attn_layer_norm = nn.LayerNorm(hidden_size)
        self.mlp = FeedForward(hidden_size, config.intermediate_size, nn.ReLU())
        self.mlp_layer_norm = nn.LayerNorm(hidden_size)

    def forward(self, hidden: torch.Tensor, query_pos: torch.Tensor, text: torch.Tensor, text_bias: torch.Tensor,
                vision: torch.Tensor, vision_key: torch.Tensor, vision_bias: torch.Tensor) -> torch.Tensor:
        """hidden [B, 1+Q, C] (presence token first), query_pos [B, Q, C], vision_key = vision + pos."""
        query_pos = F.pad(query_pos, (0, 0, 1, 0))  # presence token has no position: [B, 1+Q, C]
        with_pos = hidden + query_pos
        hidden = self.self_attn_layer_norm(hidden + self.self_attn(with_pos, with_pos, hidden))
        hidden = self.text_cross_attn_layer_norm(
            hidden + self.text_cross_attn(hidden + query_pos, text, text, text_bias))
        hidden = self.vision_cross_attn_layer_norm(
            hidden + self.vision_cross_attn(hidden + query_pos, vision_key, vision, vision_bias))
        return self.mlp_layer_norm(hidden + self.mlp(hidden))


class DetrDecoder(nn.Module):
    def __init__(self, hidden_size: int, config: DetrDecoderConfig, grid: int) -> None:
        super().__init__()
        self.num_heads = config.num_heads
        self.layers = nn.ModuleList(DetrDecoderLayer(hidden_size, config) for _ in range(config.num_layers))
        self.output_layer_norm = nn.LayerNorm(hidden_size)
        self.box_head = MLP(hidden_size, hidden_size, 4, 3)
        self.query_embed = nn.Embedding(config.num_queries, hidden_size)
        self.reference_points = nn.Embedding(config.num_queries, 4)
        self.presence_token = nn.Embedding(1, hidden_size)
        self.presence_head = MLP(hidden_size, hidden_size, 1, 3)
        self.presence_layer_norm = nn.LayerNorm(hidden_size)
        self.ref_point_head = MLP(2 * hidden_size, hidden_size, hidden_size, 2)
        self.box_rpb_embed_x = MLP(2, hidden_size, config.num_heads, 2)
        self.box_rpb_embed_y = MLP(2, hidden_size, config.num_heads, 2)
        self.register_buffer("grid_coords", torch.arange(grid, dtype=torch.float32) / grid, persistent=False)

    def _box_position_bias(self, boxes_cxcywh: torch.Tensor) -> torch.Tensor:
        """Log-scaled distances from each grid row/column to the box edges -> bias [B, h, 1+Q, HW]."""
        batch, queries, _ = boxes_cxcywh.shape
        grid = self.grid_coords.shape[0]
        xyxy = box_cxcywh_to_xyxy(boxes_cxcywh)  # [B, Q, 4]
        coords = self.grid_coords.view(1, 1, grid, 1)
        deltas_y = coords - xyxy[:, :, None, 1:4:2]  # [B, Q, H, 2] (top, bottom)
        deltas_x = coords - xyxy[:, :, None, 0:3:2]  # [B, Q, W, 2] (left, right)
        deltas_y = torch.sign(deltas_y * 8) * torch.log2(torch.abs(deltas_y * 8) + 1.0) / math.log2(8)
        deltas_x = torch.sign(deltas_x * 8) * torch.log2(torch.abs(deltas_x * 8) + 1.0) / math.log2(8)
        bias_y = self.box_rpb_embed_y(deltas_y)  # [B, Q, H, h]
        bias_x = self.box_rpb_embed_x(deltas_x)  # [B, Q, W, h]
        bias = bias_y[:, :, :, None, :] + bias_x[:, :, None, :, :]  # [B, Q, H, W, h]
        bias = bias.reshape(batch, queries, grid * grid, self.num_heads).permute(0, 3, 1, 2)  # [B, h, Q, HW]
        return F.pad(bias, (0, 0, 1, 0))  # presence token row: no bias -> [B, h, 1+Q, HW]

    def forward(self, vision: torch.Tensor, vision_pos: torch.Tensor, text: torch.Tensor,
                text_bias: torch.Tensor) -> DecoderResult:
        """vision [B, HW, C] (DETR encoder output, memory-enriched in video mode), vision_pos [1, HW, C],
        text [B, L, C], text_bias [B, 1, 1, L]."""
        batch = vision.shape[0]
        hidden_size = vision.shape[-1]
        queries = self.query_embed.weight[None].expand(batch, -1, -1)  # [B, Q, C]
        boxes = self.reference_points.weight[None].expand(batch, -1, -1).sigmoid()  # [B, Q, 4]
        presence = self.presence_token.weight[None].expand(batch, -1, -1)  # [B, 1, C]
        hidden = torch.cat([presence, queries], dim=1)  # [B, 1+Q, C]
        vision_key = vision + vision_pos

        new_boxes = boxes
        presence_logits = presence.new_zeros(batch, 1)
        query_states = queries
        for layer in self.layers:
            query_pos = self.ref_point_head(sine_box_encoding(boxes, hidden_size // 2))  # [B, Q, C]
            hidden = layer(hidden, query_pos, text, text_bias, vision, vision_key, self._box_position_bias(boxes))
            query_states = self.output_layer_norm(hidden[:, 1:])
            new_boxes = (self.box_head(query_states) + inverse_sigmoid(boxes)).sigmoid()
            boxes = new_boxes.detach()  # refinement does not backpropagate through earlier layers' boxes
            presence_logits = self.presence_head(self.presence_layer_norm(hidden[:, :1])).squeeze(-1)
            presence_logits = presence_logits.clamp(-PRESENCE_LOGIT_CLAMP, PRESENCE_LOGIT_CLAMP)
        return DecoderResult(query_states=query_states, boxes_cxcywh=new_boxes, presence_logits=presence_logits)
