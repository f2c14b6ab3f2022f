"""MemoryCrossAttention: the DETR encoder's vision tokens ([B, H*W, 256], queries) attend to the
compressed memory ([B, 64, 256], keys/values). Pre-norm, batch-first, tanh-gated residual.

``out_proj`` starts at zero, so at initialisation the memory path is an exact identity and a video
model built from an image checkpoint reproduces the image model; the gate starts open (tanh(1)), so
from the second step on every memory parameter gets a gradient (a zero gate, Flamingo's choice, leaves
them none but through the gate itself, which a short video stage barely opens).

Each vision token starts out attending to the latents of its own part of the image: a learned logit
bias [N, M], initialised to a Gaussian over the latents' grid cells (see ``PerceiverResampler``). The
memory tokens carry no position encoding of their own for content attention to match against.

Parameters keep nn.MultiheadAttention's state-dict keys (``in_proj_weight``, ``in_proj_bias``,
``out_proj.*``) while the math is explicit projections + matmul + softmax (what XNNPACK delegates whole).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from efficient_sam3.attention import attend, merge_heads, split_heads
from efficient_sam3.config import MemoryConfig
from efficient_sam3.position_encoding import gaussian_locality_bias


class PackedCrossAttention(nn.Module):
    """Cross-attention with nn.MultiheadAttention's packed parameters (``batch_first=True`` semantics)."""

    def __init__(self, hidden_size: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * hidden_size, hidden_size))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * hidden_size))
        self.out_proj = nn.Linear(hidden_size, hidden_size)
        nn.init.xavier_uniform_(self.in_proj_weight)
        nn.init.zeros_(self.out_proj.bias)

    def forward(self, query: torch.Tensor, memory: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
        """query [B, N, C], memory [B, M, C], bias broadcastable to [B, h, N, M] -> [B, N, C]."""
        w_q, w_k, w_v = self.in_proj_weight.chunk(3, dim=0)
        b_q, b_k, b_v = self.in_proj_bias.chunk(3, dim=0)
        q = split_heads(F.linear(query, w_q, b_q), self.num_heads)
        k = split_heads(F.linear(memory, w_k, b_k), self.num_heads)
        v = split_heads(F.linear(memory, w_v, b_v), self.num_heads)
        return self.out_proj(merge_heads(attend(q, k, v, bias)))


class MemoryCrossAttention(nn.Module):
    def __init__(self, hidden_size: int, config: MemoryConfig, query_grid: int) -> None:
        super().__init__()
        self.norm_query = nn.LayerNorm(hidden_size)
        self.norm_memory = nn.LayerNorm(hidden_size)
        self.attn = PackedCrossAttention(hidden_size, config.num_heads)
        nn.init.zeros_(self.attn.out_proj.weight)
        latent_grid = config.latent_grid
        self.spatial_bias = nn.Parameter(  # [N, M]
            gaussian_locality_bias(query_grid, latent_grid, config.locality_sigma / latent_grid))
        self.gate = nn.Parameter(torch.ones(1))

    def forward(self, vision: torch.Tensor, memory: torch.Tensor, has_memory: torch.Tensor) -> torch.Tensor:
        """vision [B, N, C], memory [B, M, C], has_memory [B] bool (False: no valid context frame, the
        output is exactly ``vision``) -> [B, N, C]."""
        update = self.attn(self.norm_query(vision), self.norm_memory(memory), self.spatial_bias)
        gate = torch.tanh(self.gate) * has_memory.to(vision.dtype)[:, None, None]  # [B, 1, 1]
        return vision + gate * update
