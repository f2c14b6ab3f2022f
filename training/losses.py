"""Segmentation losses against SA-V ground truth: pure loss functions plus one weighted combiner.

Conventions
-----------
- Mask losses run at the *prediction* resolution (144 x 144 for a 504 input): ground-truth
  masks are area-downsampled to it (``training.matcher.downsample_masks``), giving soft
  targets in [0, 1] that keep small objects visible. Only matched queries are supervised,
  so memory stays at ``K x 144 x 144``.
- ``iou_scores`` from the model are treated as **logits**: ``sigmoid(iou_scores)`` is the
  predicted IoU. The IoU target is the actual IoU between the binarised predicted mask
  (``logit > 0``) and the target at the loss resolution, detached; the loss is the squared
  error between the two (SAM's choice, minimum 0).
- Per-object terms (mask, box, IoU) are averaged over every matched object in the batch
  (DETR's normalisation: each object weighs the same, whatever the image); with no object
  in the batch they are an exact zero that still belongs to the autograd graph.
- ``classification`` is an extra term beyond the training plan: SAM3-style models score
  each query, so every query gets a sigmoid focal loss (alpha 0.25, gamma 2) with target 1
  when it is matched and 0 otherwise, summed over queries and divided by
  ``max(number of matched objects, 1)`` (DETR / Deformable-DETR normalisation).
- ``presence`` is BCE-with-logits of the per-image presence logit, target "N > 0".
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields

import torch
import torch.nn.functional as F
from torch import Tensor

from training.box_ops import paired_generalized_box_iou
from training.matcher import CostMatcher, HungarianMatcher, downsample_masks

FOCAL_ALPHA = 0.25
FOCAL_GAMMA = 2.0


def _mean_over_objects(per_object: Tensor) -> Tensor:
    """Mean of a ``[K]`` tensor; 0 (still in the graph) when ``K == 0``."""
    return per_object.sum() / max(per_object.shape[0], 1)


def _check_pair(name: str, first: Tensor, second: Tensor) -> None:
    if first.shape != second.shape or first.dim() != 2:
        raise ValueError(
            f"{name}: expected two [K, P] tensors of one shape, got {tuple(first.shape)} and {tuple(second.shape)}"
        )


def dice_loss(mask_logits: Tensor, targets: Tensor) -> Tensor:
    """``1 - (2 * sum(p * t) + 1) / (sum(p) + sum(t) + 1)`` per object, ``p = sigmoid(logits)``.

    Args:
        mask_logits: ``[K, P]`` mask logits (``P`` pixels or points per object).
        targets: ``[K, P]`` targets in [0, 1].

    Returns:
        Scalar: mean over the ``K`` objects (0 when ``K == 0``).
    """
    _check_pair("dice_loss", mask_logits, targets)
    prob = mask_logits.float().sigmoid()
    numerator = 2 * (prob * targets).sum(-1) + 1  # [K]
    denominator = prob.sum(-1) + targets.sum(-1) + 1  # [K]
    return _mean_over_objects(1 - numerator / denominator)


def sigmoid_bce_loss(mask_logits: Tensor, targets: Tensor) -> Tensor:
    """Binary cross-entropy with logits, mean over the ``P`` pixels, then over the ``K``
    objects (0 when ``K == 0``). Shapes as in ``dice_loss``."""
    _check_pair("sigmoid_bce_loss", mask_logits, targets)
    per_pixel = F.binary_cross_entropy_with_logits(mask_logits.float(), targets.float(), reduction="none")
    return _mean_over_objects(per_pixel.mean(-1))


def box_l1_loss(pred_boxes: Tensor, gt_boxes: Tensor) -> Tensor:
    """L1 distance between ``[K, 4]`` normalised xyxy boxes: summed over the 4 coordinates,
    mean over the ``K`` boxes (0 when ``K == 0``)."""
    if pred_boxes.shape != gt_boxes.shape or pred_boxes.shape[-1:] != (4,):
        raise ValueError(
            f"box_l1_loss: expected two [K, 4] tensors, got {tuple(pred_boxes.shape)} and {tuple(gt_boxes.shape)}"
        )
    return _mean_over_objects((pred_boxes.float() - gt_boxes.float()).abs().sum(-1))


def box_giou_loss(pred_boxes: Tensor, gt_boxes: Tensor) -> Tensor:
    """``1 - GIoU`` of corresponding ``[K, 4]`` xyxy boxes, mean over ``K`` (0 when ``K == 0``)."""
    return _mean_over_objects(1 - paired_generalized_box_iou(pred_boxes.float(), gt_boxes.float()))


def mask_iou(mask_logits: Tensor, targets: Tensor) -> Tensor:
    """Actual IoU of the binarised predicted masks (``logit > 0``) with the targets -> ``[K]``.

    Soft targets enter as their coverage: ``inter = sum(pred * t)``,
    ``union = sum(pred) + sum(t) - inter``. Two empty masks have IoU 1.
    """
    _check_pair("mask_iou", mask_logits, targets)
    pred = (mask_logits > 0).float()
    targets = targets.float()
    inter = (pred * targets).sum(-1)  # [K]
    union = pred.sum(-1) + targets.sum(-1) - inter  # [K]
    return torch.where(union > 0, inter / union.clamp(min=1e-12), torch.ones_like(union))


def iou_prediction_loss(iou_logits: Tensor, mask_logits: Tensor, targets: Tensor) -> Tensor:
    """Squared error between ``sigmoid(iou_logits)`` and the actual (detached) mask IoU.

    Args:
        iou_logits: ``[K]`` predicted-IoU logits of the matched queries.
        mask_logits: ``[K, P]`` their mask logits.
        targets: ``[K, P]`` their targets in [0, 1].

    Returns:
        Scalar: mean over ``K`` (0 when ``K == 0``).
    """
    if iou_logits.shape != mask_logits.shape[:1]:
        raise ValueError(
            f"iou_prediction_loss: iou_logits {tuple(iou_logits.shape)} does not match masks {tuple(mask_logits.shape)}"
        )
    with torch.no_grad():
        actual_iou = mask_iou(mask_logits, targets)
    return _mean_over_objects((iou_logits.float().sigmoid() - actual_iou) ** 2)


def presence_loss(presence_logits: Tensor, is_present: Tensor) -> Tensor:
    """BCE-with-logits of "the prompted concept is in the image", mean over images.

    Args:
        presence_logits: ``[B]`` logits.
        is_present: ``[B]`` bool targets.
    """
    if presence_logits.shape != is_present.shape:
        raise ValueError(f"presence_loss: logits {tuple(presence_logits.shape)} vs targets {tuple(is_present.shape)}")
    return F.binary_cross_entropy_with_logits(presence_logits.float(), is_present.float())


def sigmoid_focal_loss(
    logits: Tensor,
    targets: Tensor,
    num_objects: int,
    alpha: float = FOCAL_ALPHA,
    gamma: float = FOCAL_GAMMA,
) -> Tensor:
    """Sigmoid focal loss (Lin et al., 2017) summed over all elements, divided by
    ``max(num_objects, 1)``.

    Per element: ``a_t * (1 - p_t) ** gamma * BCE(logit, t)`` with ``p_t = p`` for ``t = 1``
    and ``1 - p`` for ``t = 0``, ``a_t = alpha`` for ``t = 1`` and ``1 - alpha`` for ``t = 0``.
    """
    if logits.shape != targets.shape:
        raise ValueError(f"sigmoid_focal_loss: logits {tuple(logits.shape)} vs targets {tuple(targets.shape)}")
    logits, targets = logits.float(), targets.float()
    prob = logits.sigmoid()
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = prob * targets + (1 - prob) * (1 - targets)
    alpha_t = alpha * targets + (1 - alpha) * (1 - targets)
    return (alpha_t * (1 - p_t) ** gamma * ce).sum() / max(num_objects, 1)


@dataclass(frozen=True)
class LossWeights:
    """Weights of the loss terms; the total is ``sum(weight * term)``.

    ``mask`` weighs dice + BCE together; ``classification`` is the per-query focal term
    (an addition to the plan's five weights).
    """

    mask: float = 5.0
    box_l1: float = 5.0
    box_giou: float = 2.0
    iou: float = 2.0
    presence: float = 1.0
    classification: float = 2.0

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise ValueError(f"LossWeights.{f.name} must be a finite number >= 0, got {value!r}")

    def as_dict(self) -> dict[str, float]:
        return {f.name: float(getattr(self, f.name)) for f in fields(self)}


@dataclass(frozen=True)
class LossOutput:
    """Result of ``SegmentationLoss``.

    Attributes:
        total: scalar float32 tensor with grad, ``sum(weights[k] * terms[k])``.
        terms: the *unweighted* terms, keyed like ``LossWeights`` fields; detached scalars
            for logging.
        num_matched: matched (query, object) pairs in the batch.
    """

    total: Tensor
    terms: dict[str, Tensor]
    num_matched: int


@dataclass(frozen=True)
class SegmentationLoss:
    """Matches queries to ground truth per image, then computes every loss term."""

    weights: LossWeights = field(default_factory=LossWeights)
    matcher: CostMatcher = field(default_factory=HungarianMatcher)

    def __call__(
        self,
        pred_masks: Tensor,
        pred_boxes: Tensor,
        pred_logits: Tensor,
        presence_logits: Tensor,
        iou_scores: Tensor,
        gt_masks: list[Tensor],
        gt_boxes: list[Tensor],
    ) -> LossOutput:
        """Args:
            pred_masks: ``[B, Q, h, w]`` mask logits.
            pred_boxes: ``[B, Q, 4]`` normalised xyxy boxes.
            pred_logits: ``[B, Q]`` class logits (query matches the prompt).
            presence_logits: ``[B, 1]`` concept-present logits.
            iou_scores: ``[B, Q]`` predicted-IoU logits.
            gt_masks: ``B`` bool tensors ``[N_b, H, W]`` (``N_b`` may be 0; every mask non-empty).
            gt_boxes: ``B`` float tensors ``[N_b, 4]``, normalised xyxy.
        """
        batch, num_queries, height, width = _check_batch(
            pred_masks, pred_boxes, pred_logits, presence_logits, iou_scores, gt_masks, gt_boxes
        )
        device = pred_masks.device
        batch_idx, query_idx, mask_targets, box_targets = [], [], [], []
        for b in range(batch):
            targets = downsample_masks(gt_masks[b].to(device), (height, width))  # [N_b, h, w] float
            pred_idx, gt_idx = self.matcher(pred_logits[b], pred_boxes[b], pred_masks[b], gt_boxes[b], targets)
            batch_idx.append(torch.full_like(pred_idx, b))
            query_idx.append(pred_idx)
            mask_targets.append(targets[gt_idx])
            box_targets.append(gt_boxes[b].to(device).float()[gt_idx])
        batch_idx_t = torch.cat(batch_idx)  # [K]
        query_idx_t = torch.cat(query_idx)  # [K]
        matched_logits = pred_masks[batch_idx_t, query_idx_t].flatten(1)  # [K, h*w]
        matched_targets = torch.cat(mask_targets).flatten(1)  # [K, h*w]
        num_matched = int(query_idx_t.shape[0])

        class_targets = torch.zeros(batch, num_queries, device=device)
        class_targets[batch_idx_t, query_idx_t] = 1.0
        is_present = torch.tensor([g.shape[0] > 0 for g in gt_masks], device=device)
        terms = {
            "mask": dice_loss(matched_logits, matched_targets) + sigmoid_bce_loss(matched_logits, matched_targets),
            "box_l1": box_l1_loss(pred_boxes[batch_idx_t, query_idx_t], torch.cat(box_targets)),
            "box_giou": box_giou_loss(pred_boxes[batch_idx_t, query_idx_t], torch.cat(box_targets)),
            "iou": iou_prediction_loss(iou_scores[batch_idx_t, query_idx_t], matched_logits, matched_targets),
            "presence": presence_loss(presence_logits[:, 0], is_present),
            "classification": sigmoid_focal_loss(pred_logits, class_targets, num_matched),
        }
        weights = self.weights.as_dict()
        total = sum(weights[name] * value for name, value in terms.items())
        return LossOutput(
            total=total,
            terms={name: value.detach() for name, value in terms.items()},
            num_matched=num_matched,
        )


def _check_batch(
    pred_masks: Tensor,
    pred_boxes: Tensor,
    pred_logits: Tensor,
    presence_logits: Tensor,
    iou_scores: Tensor,
    gt_masks: list[Tensor],
    gt_boxes: list[Tensor],
) -> tuple[int, int, int, int]:
    """Validate batch shapes and ground truth; returns ``(B, Q, h, w)``."""
    if pred_masks.dim() != 4:
        raise ValueError(f"pred_masks must be [B, Q, h, w], got shape {tuple(pred_masks.shape)}")
    batch, num_queries, height, width = pred_masks.shape
    expected = {
        "pred_boxes": (pred_boxes, (batch, num_queries, 4)),
        "pred_logits": (pred_logits, (batch, num_queries)),
        "presence_logits": (presence_logits, (batch, 1)),
        "iou_scores": (iou_scores, (batch, num_queries)),
    }
    for name, (tensor, shape) in expected.items():
        if tuple(tensor.shape) != shape:
            raise ValueError(f"{name} must have shape {shape} (from pred_masks), got {tuple(tensor.shape)}")
    if len(gt_masks) != batch or len(gt_boxes) != batch:
        raise ValueError(f"expected {batch} gt_masks and gt_boxes entries, got {len(gt_masks)} and {len(gt_boxes)}")
    for b, (masks, boxes) in enumerate(zip(gt_masks, gt_boxes)):
        if masks.dtype != torch.bool or masks.dim() != 3:
            raise ValueError(f"gt_masks[{b}] must be a bool [N, H, W] tensor, got {masks.dtype} {tuple(masks.shape)}")
        if boxes.dim() != 2 or boxes.shape != (masks.shape[0], 4):
            raise ValueError(f"gt_boxes[{b}] must be [N={masks.shape[0]}, 4], got {tuple(boxes.shape)}")
        if masks.shape[0] > 0:
            empty = (~masks.flatten(1).any(dim=1)).nonzero().flatten().tolist()
            if empty:
                raise ValueError(
                    f"gt_masks[{b}]: objects {empty} have empty masks; pass only objects present in the frame"
                )
    return batch, num_queries, height, width
