"""Multi-head attention as explicit projections + matmul + softmax on [B, N, C] tensors.

Measured with ExecuTorch 1.5.1 / XNNPACK: this form is delegated whole, while fused SDPA leaves its
masking ops outside the delegate and nn.MultiheadAttention leaves addmm outside.
"""

from __future__ import annotations

import torch
from torch import nn

# Additive bias for masked keys: large and finite, so a row that is fully masked never produces NaN
# and the value stays representable in float16.
MASK_NEGATIVE = -1.0e4


def split_heads(x: torch.Tensor, num_heads: int) -> torch.Tensor:
    batch, tokens, channels = x.shape
    # [B, N, C] -> [B, N, h, C/h] -> [B, h, N, C/h]
    return x.view(batch, tokens, num_heads, channels // num_heads).transpose(1, 2)


def merge_heads(x: torch.Tensor) -> torch.Tensor:
    batch, heads, tokens, head_dim = x.shape
    # [B, h, N, d] -> [B, N, h, d] -> [B, N, h*d]
    return x.transpose(1, 2).reshape(batch, tokens, heads * head_dim)


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """softmax(q k^T / sqrt(d) + bias) v on [B, h, N, d] tensors; ``bias`` broadcasts to [B, h, Nq, Nk]."""
    scores = torch.matmul(q, k.transpose(-2, -1)) * (q.shape[-1] ** -0.5)  # [B, h, Nq, Nk]
    if bias is not None:
        scores = scores + bias
    return torch.matmul(scores.softmax(dim=-1), v)  # [B, h, Nq, d]


def padding_bias(valid_mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """[B, Nk] mask (True/1 = valid key) -> additive bias [B, 1, 1, Nk] (0 or MASK_NEGATIVE)."""
    invalid = 1.0 - valid_mask.to(dtype)
    return (invalid * MASK_NEGATIVE)[:, None, None, :]


class Attention(nn.Module):
    """SAM3's attention block (``q_proj``/``k_proj``/``v_proj``/``o_proj``), weight-compatible with
    transformers' ``Sam3Attention``."""

    def __init__(self, hidden_size: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.q_proj = nn.Linear(hidden_size, hidden_size)
        self.k_proj = nn.Linear(hidden_size, hidden_size)
        self.v_proj = nn.Linear(hidden_size, hidden_size)
        self.o_proj = nn.Linear(hidden_size, hidden_size)

    def forward(
        self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, bias: torch.Tensor | None = None
    ) -> torch.Tensor:
        """query [B, Nq, C], key/value [B, Nk, C], bias broadcastable to [B, h, Nq, Nk] -> [B, Nq, C]."""
        q = split_heads(self.q_proj(query), self.num_heads)
        k = split_heads(self.k_proj(key), self.num_heads)
        v = split_heads(self.v_proj(value), self.num_heads)
        return self.o_proj(merge_heads(attend(q, k, v, bias)))


class FeedForward(nn.Module):
    """SAM3's two-layer MLP (``fc1``/``fc2``)."""

    def __init__(self, hidden_size: int, intermediate_size: int, activation: nn.Module) -> None:
        super().__init__()
        self.fc1 = nn.Linear(hidden_size, intermediate_size)
        self.fc2 = nn.Linear(intermediate_size, hidden_size)
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.activation(self.fc1(x)))


class MLP(nn.Module):
    """SAM3's decoder MLP (``layer1``..``layer3``, ReLU between layers)."""

    def __init__(self, input_dim: int, hidden_dim: int, output_dim: int, num_layers: int) -> None:
        super().__init__()
        if num_layers not in (2, 3):
            raise ValueError(f"MLP supports 2 or 3 layers, got {num_layers}")
        self.layer1 = nn.Linear(input_dim, hidden_dim)
        if num_layers == 3:
            self.layer2 = nn.Linear(hidden_dim, hidden_dim)
            self.layer3 = nn.Linear(hidden_dim, output_dim)
        else:
            self.layer2 = nn.Linear(hidden_dim, output_dim)
        self.num_layers = num_layers

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.layer1(x))
        if self.num_layers == 3:
            return self.layer3(torch.relu(self.layer2(x)))
        return self.layer2(x)
