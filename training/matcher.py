"""One-to-one matching of the model's queries to the ground-truth objects of one image.

The cost of assigning query ``q`` to object ``n`` is a weighted sum of

- class:  ``-sigmoid(pred_logits[q])`` (a confident query is cheaper to match),
- mask:   mean sigmoid BCE between the query's mask logits and the object's mask,
- dice:   ``1 - dice`` between the query's mask probability and the object's mask,
- bbox:   L1 distance between the normalised xyxy boxes,
- giou:   ``-GIoU`` of the boxes,

the same terms DETR / Mask2Former use. Masks are compared at the *prediction* resolution:
ground-truth masks are area-downsampled to it (soft targets in [0, 1]), so 200 predicted
masks are never upsampled. ``num_mask_points`` optionally compares masks on that many
random pixels of the prediction grid instead of all of them.

``HungarianMatcher`` solves the assignment exactly (``scipy.optimize.linear_sum_assignment``);
``GreedyMatcher`` repeatedly takes the cheapest remaining (query, object) pair, as in the
original training plan. Both return ``K = min(Q, N)`` pairs and work for ``N = 0``.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, fields

import numpy as np
import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment
from torch import Tensor

from training.box_ops import generalized_box_iou


def downsample_masks(masks: Tensor, size: tuple[int, int]) -> Tensor:
    """Resize ``[N, H, W]`` bool or [0, 1] float masks to ``[N, *size]`` float32 soft masks.

    Uses area averaging, so each output value is the covered fraction of its cell and small
    objects keep a non-zero footprint. Masks already at ``size`` are only cast to float.
    """
    if masks.dim() != 3:
        raise ValueError(f"masks must be [N, H, W], got shape {tuple(masks.shape)}")
    masks = masks.float()
    if masks.shape[0] == 0:
        return masks.new_zeros(0, *size)
    if tuple(masks.shape[-2:]) == tuple(size):
        return masks
    # [N, H, W] -> [1, N, H, W] so each object is one channel of one image.
    return F.interpolate(masks[None], size=size, mode="area")[0]  # [N, h, w]


def hungarian_assignment(cost: Tensor) -> tuple[Tensor, Tensor]:
    """Minimum-total-cost one-to-one assignment of a ``[Q, N]`` cost matrix.

    Returns ``(row_idx, col_idx)`` int64 tensors of length ``min(Q, N)`` on ``cost.device``,
    sorted by row.
    """
    cost_np = _finite_cost_on_host(cost)
    rows, cols = linear_sum_assignment(cost_np)
    return _as_index(rows, cost.device), _as_index(cols, cost.device)


def greedy_assignment(cost: Tensor) -> tuple[Tensor, Tensor]:
    """Greedy one-to-one assignment: take the cheapest unused (row, col) pair until
    ``min(Q, N)`` pairs are taken. Ties go to the lower flat index. Sorted by row."""
    cost_np = _finite_cost_on_host(cost)
    num_rows, num_cols = cost_np.shape
    row_used = np.zeros(num_rows, dtype=bool)
    col_used = np.zeros(num_cols, dtype=bool)
    pairs: list[tuple[int, int]] = []
    for flat in np.argsort(cost_np, axis=None, kind="stable"):
        if len(pairs) == min(num_rows, num_cols):
            break
        row, col = divmod(int(flat), num_cols)
        if not row_used[row] and not col_used[col]:
            row_used[row] = col_used[col] = True
            pairs.append((row, col))
    pairs.sort()
    rows = np.array([row for row, _ in pairs], dtype=np.int64)
    cols = np.array([col for _, col in pairs], dtype=np.int64)
    return _as_index(rows, cost.device), _as_index(cols, cost.device)


@dataclass(frozen=True)
class CostMatcher(ABC):
    """Matching-cost weights shared by the Hungarian and greedy matchers.

    Attributes:
        cost_class: weight of ``-sigmoid(class logit)``.
        cost_mask: weight of the mean sigmoid-BCE mask cost.
        cost_dice: weight of the dice mask cost.
        cost_bbox: weight of the L1 box distance.
        cost_giou: weight of ``-GIoU``.
        num_mask_points: compare masks on this many random pixels of the prediction grid;
            ``None`` compares every pixel (144 x 144 is cheap enough for 200 queries).
    """

    cost_class: float = 2.0
    cost_mask: float = 5.0
    cost_dice: float = 5.0
    cost_bbox: float = 5.0
    cost_giou: float = 2.0
    num_mask_points: int | None = None

    def __post_init__(self) -> None:
        weights = {f.name: getattr(self, f.name) for f in fields(self) if f.name.startswith("cost_")}
        for name, value in weights.items():
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"{type(self).__name__}.{name} must be finite and >= 0, got {value}")
        if sum(weights.values()) == 0:
            raise ValueError(f"{type(self).__name__}: at least one cost weight must be positive")
        if self.num_mask_points is not None and self.num_mask_points <= 0:
            raise ValueError(f"num_mask_points must be positive or None, got {self.num_mask_points}")

    def cost_matrix(
        self,
        pred_logits: Tensor,
        pred_boxes: Tensor,
        pred_masks: Tensor,
        gt_boxes: Tensor,
        gt_masks: Tensor,
    ) -> Tensor:
        """``[Q, N]`` matching cost for one image (see ``__call__`` for the argument shapes)."""
        num_queries = _check_inputs(pred_logits, pred_boxes, pred_masks, gt_boxes, gt_masks)
        num_gt = gt_boxes.shape[0]
        if num_gt == 0:
            return pred_logits.new_zeros(num_queries, 0)
        pred_masks = pred_masks.detach().float()
        targets = downsample_masks(gt_masks, tuple(pred_masks.shape[-2:]))  # [N, h, w]
        pred_flat = pred_masks.flatten(1)  # [Q, h*w]
        target_flat = targets.flatten(1).to(pred_flat.device)  # [N, h*w]
        if self.num_mask_points is not None and self.num_mask_points < pred_flat.shape[1]:
            points = torch.randperm(pred_flat.shape[1], device=pred_flat.device)[: self.num_mask_points]
            pred_flat, target_flat = pred_flat[:, points], target_flat[:, points]

        num_points = pred_flat.shape[1]
        # BCE(x, t) = t * softplus(-x) + (1 - t) * softplus(x), summed via two matmuls.
        bce_cost = (F.softplus(-pred_flat) @ target_flat.T + F.softplus(pred_flat) @ (1 - target_flat).T) / num_points
        prob = pred_flat.sigmoid()  # [Q, P]
        dice_cost = 1 - (2 * prob @ target_flat.T + 1) / (
            prob.sum(-1)[:, None] + target_flat.sum(-1)[None, :] + 1
        )  # [Q, N]
        boxes = pred_boxes.detach().float()
        gt_boxes = gt_boxes.float().to(boxes.device)
        bbox_cost = torch.cdist(boxes, gt_boxes, p=1)  # [Q, N]
        giou_cost = -generalized_box_iou(boxes, gt_boxes)  # [Q, N]
        class_cost = -pred_logits.detach().float().sigmoid()[:, None].expand(-1, num_gt)  # [Q, N]
        return (
            self.cost_class * class_cost
            + self.cost_mask * bce_cost
            + self.cost_dice * dice_cost
            + self.cost_bbox * bbox_cost
            + self.cost_giou * giou_cost
        )

    @abstractmethod
    def assign(self, cost: Tensor) -> tuple[Tensor, Tensor]:
        """One-to-one assignment of a ``[Q, N]`` cost matrix -> ``(row_idx, col_idx)``."""

    def __call__(
        self,
        pred_logits: Tensor,
        pred_boxes: Tensor,
        pred_masks: Tensor,
        gt_boxes: Tensor,
        gt_masks: Tensor,
    ) -> tuple[Tensor, Tensor]:
        """Match the queries of ONE image to its ground-truth objects.

        Args:
            pred_logits: ``[Q]`` class logits.
            pred_boxes: ``[Q, 4]`` normalised xyxy boxes.
            pred_masks: ``[Q, h, w]`` mask logits.
            gt_boxes: ``[N, 4]`` normalised xyxy boxes (``N`` may be 0).
            gt_masks: ``[N, H, W]`` bool or [0, 1] float masks at any resolution.

        Returns:
            ``(pred_idx, gt_idx)``: int64 ``[K]`` tensors, ``K = min(Q, N)``, on the device
            of ``pred_logits``; query ``pred_idx[k]`` is matched to object ``gt_idx[k]``.
        """
        with torch.no_grad():
            cost = self.cost_matrix(pred_logits, pred_boxes, pred_masks, gt_boxes, gt_masks)
            if cost.shape[1] == 0:
                empty = torch.zeros(0, dtype=torch.int64, device=pred_logits.device)
                return empty, empty.clone()
            pred_idx, gt_idx = self.assign(cost)
        return pred_idx.to(pred_logits.device), gt_idx.to(pred_logits.device)


@dataclass(frozen=True)
class HungarianMatcher(CostMatcher):
    """Optimal (minimum total cost) matching."""

    def assign(self, cost: Tensor) -> tuple[Tensor, Tensor]:
        return hungarian_assignment(cost)


@dataclass(frozen=True)
class GreedyMatcher(CostMatcher):
    """Greedy matching on the same cost: cheapest remaining pair first."""

    def assign(self, cost: Tensor) -> tuple[Tensor, Tensor]:
        return greedy_assignment(cost)


_MATCHERS: dict[str, type[CostMatcher]] = {"hungarian": HungarianMatcher, "greedy": GreedyMatcher}


def build_matcher(name: str) -> CostMatcher:
    """``"hungarian"`` or ``"greedy"`` matcher with the default cost weights."""
    if name not in _MATCHERS:
        raise ValueError(f"unknown matcher {name!r}; expected one of {sorted(_MATCHERS)}")
    return _MATCHERS[name]()


def _check_inputs(
    pred_logits: Tensor, pred_boxes: Tensor, pred_masks: Tensor, gt_boxes: Tensor, gt_masks: Tensor
) -> int:
    """Validate one image's matcher inputs; returns Q."""
    if pred_logits.dim() != 1:
        raise ValueError(f"pred_logits must be [Q], got shape {tuple(pred_logits.shape)}")
    num_queries = pred_logits.shape[0]
    if pred_boxes.shape != (num_queries, 4):
        raise ValueError(f"pred_boxes must be [Q={num_queries}, 4], got shape {tuple(pred_boxes.shape)}")
    if pred_masks.dim() != 3 or pred_masks.shape[0] != num_queries:
        raise ValueError(f"pred_masks must be [Q={num_queries}, h, w], got shape {tuple(pred_masks.shape)}")
    if gt_boxes.dim() != 2 or gt_boxes.shape[1] != 4:
        raise ValueError(f"gt_boxes must be [N, 4], got shape {tuple(gt_boxes.shape)}")
    if gt_masks.dim() != 3 or gt_masks.shape[0] != gt_boxes.shape[0]:
        raise ValueError(
            f"gt_masks must be [N={gt_boxes.shape[0]}, H, W] to match gt_boxes, got shape {tuple(gt_masks.shape)}"
        )
    return num_queries


def _finite_cost_on_host(cost: Tensor) -> np.ndarray:
    if cost.dim() != 2:
        raise ValueError(f"cost must be [Q, N], got shape {tuple(cost.shape)}")
    cost_np = cost.detach().float().cpu().numpy()
    if not np.isfinite(cost_np).all():
        raise ValueError("matching cost contains NaN or inf (are the predictions finite?)")
    return cost_np


def _as_index(values: np.ndarray, device: torch.device) -> Tensor:
    return torch.as_tensor(np.asarray(values, dtype=np.int64), device=device)
