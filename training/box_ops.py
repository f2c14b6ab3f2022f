"""Box format conversions, pairwise IoU and generalised IoU (GIoU).

All boxes are ``[..., 4]`` float tensors. ``xyxy`` means corners ``(x0, y0, x1, y1)``
and ``cxcywh`` means ``(centre x, centre y, width, height)``; the model and the SA-V
targets both use normalised ``xyxy`` in [0, 1].

Degenerate boxes (``x1 < x0`` or ``y1 < y0``, which an untrained head can emit) are not
rejected: their width and height are clamped at zero when computing areas, and every
denominator is clamped at a small epsilon, so IoU and GIoU stay finite for zero-area boxes
(and exact for any box of non-negligible area).
"""

from __future__ import annotations

import torch
from torch import Tensor

# Lower bound of union and enclosing areas: keeps IoU and GIoU finite for zero-area boxes.
_EPS = 1e-7


def box_cxcywh_to_xyxy(boxes: Tensor) -> Tensor:
    """``[..., 4]`` (cx, cy, w, h) -> ``[..., 4]`` (x0, y0, x1, y1)."""
    cx, cy, w, h = boxes.unbind(-1)
    return torch.stack((cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h), dim=-1)


def box_xyxy_to_cxcywh(boxes: Tensor) -> Tensor:
    """``[..., 4]`` (x0, y0, x1, y1) -> ``[..., 4]`` (cx, cy, w, h)."""
    x0, y0, x1, y1 = boxes.unbind(-1)
    return torch.stack(((x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0), dim=-1)


def box_area(boxes: Tensor) -> Tensor:
    """Area of ``[..., 4]`` xyxy boxes -> ``[...]``; negative extents count as zero."""
    wh = (boxes[..., 2:] - boxes[..., :2]).clamp(min=0)  # [..., 2]
    return wh[..., 0] * wh[..., 1]


def masks_to_boxes(masks: Tensor) -> Tensor:
    """Tight normalised xyxy boxes around binary masks.

    Args:
        masks: ``[N, H, W]`` bool (or 0/1) masks.

    Returns:
        ``[N, 4]`` float32 boxes in [0, 1]: pixel ``(x, y)`` covers ``[x, x+1) / W``, so a
        mask filling the image gives ``(0, 0, 1, 1)``. An empty mask gives ``(0, 0, 0, 0)``.
    """
    if masks.dim() != 3:
        raise ValueError(f"masks must be [N, H, W], got shape {tuple(masks.shape)}")
    num, height, width = masks.shape
    if num == 0:
        return torch.zeros(0, 4, dtype=torch.float32, device=masks.device)
    masks = masks.bool()
    cols = masks.any(dim=1)  # [N, W]
    rows = masks.any(dim=2)  # [N, H]
    xs = torch.arange(width, device=masks.device)
    ys = torch.arange(height, device=masks.device)
    x0 = torch.where(cols, xs, width).amin(dim=1)
    x1 = torch.where(cols, xs + 1, 0).amax(dim=1)
    y0 = torch.where(rows, ys, height).amin(dim=1)
    y1 = torch.where(rows, ys + 1, 0).amax(dim=1)
    boxes = torch.stack((x0 / width, y0 / height, x1 / width, y1 / height), dim=-1).float()
    empty = ~rows.any(dim=1)  # [N]
    return torch.where(empty[:, None], torch.zeros_like(boxes), boxes)


def box_iou(boxes1: Tensor, boxes2: Tensor) -> tuple[Tensor, Tensor]:
    """Pairwise IoU of ``[N, 4]`` and ``[M, 4]`` xyxy boxes.

    Returns:
        ``(iou, union)``, both ``[N, M]``.
    """
    area1 = box_area(boxes1)  # [N]
    area2 = box_area(boxes2)  # [M]
    top_left = torch.maximum(boxes1[:, None, :2], boxes2[None, :, :2])  # [N, M, 2]
    bottom_right = torch.minimum(boxes1[:, None, 2:], boxes2[None, :, 2:])  # [N, M, 2]
    inter_wh = (bottom_right - top_left).clamp(min=0)  # [N, M, 2]
    inter = inter_wh[..., 0] * inter_wh[..., 1]  # [N, M]
    union = area1[:, None] + area2[None, :] - inter
    return inter / union.clamp(min=_EPS), union


def generalized_box_iou(boxes1: Tensor, boxes2: Tensor) -> Tensor:
    """Pairwise GIoU of ``[N, 4]`` and ``[M, 4]`` xyxy boxes -> ``[N, M]`` in [-1, 1].

    GIoU = IoU - (C - U) / C, where U is the union area and C the area of the smallest
    box enclosing both (Rezatofighi et al., 2019).
    """
    iou, union = box_iou(boxes1, boxes2)
    top_left = torch.minimum(boxes1[:, None, :2], boxes2[None, :, :2])  # [N, M, 2]
    bottom_right = torch.maximum(boxes1[:, None, 2:], boxes2[None, :, 2:])  # [N, M, 2]
    enclosing_wh = (bottom_right - top_left).clamp(min=0)  # [N, M, 2]
    enclosing = enclosing_wh[..., 0] * enclosing_wh[..., 1]  # [N, M]
    return iou - (enclosing - union) / enclosing.clamp(min=_EPS)


def paired_generalized_box_iou(boxes1: Tensor, boxes2: Tensor) -> Tensor:
    """GIoU of corresponding rows of two ``[K, 4]`` xyxy box tensors -> ``[K]``."""
    if boxes1.shape != boxes2.shape:
        raise ValueError(
            f"paired boxes must have the same shape, got {tuple(boxes1.shape)} and {tuple(boxes2.shape)}"
        )
    area1 = box_area(boxes1)  # [K]
    area2 = box_area(boxes2)  # [K]
    inter_wh = (
        torch.minimum(boxes1[:, 2:], boxes2[:, 2:]) - torch.maximum(boxes1[:, :2], boxes2[:, :2])
    ).clamp(min=0)  # [K, 2]
    inter = inter_wh[:, 0] * inter_wh[:, 1]
    union = area1 + area2 - inter
    enclosing_wh = (
        torch.maximum(boxes1[:, 2:], boxes2[:, 2:]) - torch.minimum(boxes1[:, :2], boxes2[:, :2])
    ).clamp(min=0)  # [K, 2]
    enclosing = enclosing_wh[:, 0] * enclosing_wh[:, 1]
    iou = inter / union.clamp(min=_EPS)
    return iou - (enclosing - union) / enclosing.clamp(min=_EPS)
