"""Pairwise IoU and generalised IoU (GIoU) of boxes, for the losses and the matcher.

All boxes are ``[..., 4]`` float tensors of corners ``(x0, y0, x1, y1)``; the model and the SA-V
targets both use normalised ``xyxy`` in [0, 1] (format conversions: ``efficient_sam3.boxes``;
boxes of masks: ``efficient_sam3.masks.masks_to_boxes``).

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


def box_area(boxes: Tensor) -> Tensor:
    """Area of ``[..., 4]`` xyxy boxes -> ``[...]``; negative extents count as zero."""
    wh = (boxes[..., 2:] - boxes[..., :2]).clamp(min=0)  # [..., 2]
    return wh[..., 0] * wh[..., 1]


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
