"""SAM3's query scoring (weight-compatible with transformers' ``Sam3DotProductScoring``): the logit of
each query is a scaled dot product between the projected query and the mean-pooled prompt."""

from __future__ import annotations

import torch
from torch import nn

from efficient_sam3.attention import MLP

SCORE_LOGIT_CLAMP = 12.0


class DotProductScoring(nn.Module):
    def __init__(self, hidden_size: int, intermediate_size: int) -> None:
        super().__init__()
        self.text_mlp = MLP(hidden_size, intermediate_size, hidden_size, 2)
        self.text_mlp_out_norm = nn.LayerNorm(hidden_size)
        self.text_proj = nn.Linear(hidden_size, hidden_size)
        self.query_proj = nn.Linear(hidden_size, hidden_size)
        self.scale = hidden_size**-0.5

    def forward(self, query_states: torch.Tensor, text: torch.Tensor, text_mask: torch.Tensor) -> torch.Tensor:
        """query_states [B, Q, C], text [B, L, C], text_mask [B, L] (1 = token) -> logits [B, Q]."""
        text = self.text_mlp_out_norm(text + self.text_mlp(text))
        valid = text_mask.to(text.dtype)[:, :, None]  # [B, L, 1]
        pooled = (text * valid).sum(dim=1) / valid.sum(dim=1).clamp(min=1.0)  # [B, C]
        proj_text = self.text_proj(pooled)  # [B, C]
        proj_queries = self.query_proj(query_states)  # [B, Q, C]
        logits = torch.matmul(proj_queries, proj_text[:, :, None]).squeeze(-1) * self.scale  # [B, Q]
        return logits.clamp(-SCORE_LOGIT_CLAMP, SCORE_LOGIT_CLAMP)
