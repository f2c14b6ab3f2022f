"""Sine position encodings, numerically identical to transformers' ``Sam3SinePositionEmbedding``.

All grids in this model have static sizes, so the 2D encodings are computed once and stored as
non-persistent buffers: nothing position-related is recomputed inside an exported graph.
"""

from __future__ import annotations

import math

import torch

TEMPERATURE = 10000


def _frequencies(num_features: int, dtype: torch.dtype) -> torch.Tensor:
    dim_t = torch.arange(num_features, dtype=torch.int64).to(dtype)
    return TEMPERATURE ** (2 * torch.div(dim_t, 2, rounding_mode="floor") / num_features)


def _interleave_sin_cos(x: torch.Tensor) -> torch.Tensor:
    # [..., F] -> [..., F/2, 2] (sin of even, cos of odd) -> [..., F]
    return torch.stack((x[..., 0::2].sin(), x[..., 1::2].cos()), dim=-1).flatten(-2)


def sine_grid_encoding(height: int, width: int, channels: int) -> torch.Tensor:
    """Normalised 2D sine encoding of an ``height x width`` grid -> [channels, height, width]."""
    num_features = channels // 2
    eps, scale = 1e-6, 2 * math.pi
    y_embed = torch.arange(1, height + 1, dtype=torch.float32)[:, None].expand(height, width)
    x_embed = torch.arange(1, width + 1, dtype=torch.float32)[None, :].expand(height, width)
    y_embed = y_embed / (y_embed[-1:, :] + eps) * scale
    x_embed = x_embed / (x_embed[:, -1:] + eps) * scale
    dim_t = _frequencies(num_features, torch.float32)
    pos_x = _interleave_sin_cos(x_embed[:, :, None] / dim_t)  # [H, W, F]
    pos_y = _interleave_sin_cos(y_embed[:, :, None] / dim_t)  # [H, W, F]
    return torch.cat((pos_y, pos_x), dim=-1).permute(2, 0, 1).contiguous()  # [2F, H, W]


def sine_box_encoding(boxes: torch.Tensor, num_features: int) -> torch.Tensor:
    """Encode (cx, cy, w, h) boxes [B, Q, 4] -> [B, Q, 4 * num_features] (order y, x, w, h as SAM3)."""
    dim_t = _frequencies(num_features, boxes.dtype).to(boxes.device)
    scaled = boxes * (2 * math.pi)  # [B, Q, 4]
    pos = _interleave_sin_cos(scaled[:, :, :, None] / dim_t)  # [B, Q, 4, F]
    pos_x, pos_y, pos_w, pos_h = pos.unbind(dim=2)
    return torch.cat((pos_y, pos_x, pos_w, pos_h), dim=-1)


def cell_centres(grid: int) -> torch.Tensor:
    """Centres of a ``grid x grid`` tiling of the unit square, row-major -> [grid*grid, 2] (y, x)."""
    coords = (torch.arange(grid, dtype=torch.float32) + 0.5) / grid
    ys, xs = torch.meshgrid(coords, coords, indexing="ij")
    return torch.stack((ys.flatten(), xs.flatten()), dim=-1)


def gaussian_locality_bias(query_grid: int, key_grid: int, sigma: float) -> torch.Tensor:
    """Attention-logit prior -d^2 / (2 sigma^2) between the cells of two square grids over the same
    image (d in image widths) -> [query_grid^2, key_grid^2]. Makes a query start out attending to the
    keys near its own location."""
    distance2 = torch.cdist(cell_centres(query_grid), cell_centres(key_grid)).square()
    return -distance2 / (2 * sigma**2)
