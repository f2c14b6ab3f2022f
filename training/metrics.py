"""J&F for video object segmentation, following the DAVIS 2017 / SA-V evaluation code.

- J (region similarity): IoU of the predicted and ground-truth masks; 1 when both are empty.
- F (boundary F-measure): 1-pixel boundaries from ``boundary_map`` (DAVIS ``seg2bmap``),
  each dilated by a disk of radius ``ceil(bound_th * image diagonal)``; precision is the
  fraction of predicted boundary pixels within that disk of the ground-truth boundary,
  recall the converse, ``F = 2PR / (P + R)``. Both boundaries empty -> 1; one empty -> 0.
- A video is scored per object as SA-V's official evaluator does (facebookresearch/sam2
  ``sav_dataset/utils/sav_benchmark.py``): of the evaluated frames (the first and last
  annotated frames skipped by default), an object is scored from the first frame where it is
  non-empty in the ground truth OR in the prediction onwards; the empty frames before that
  count for nothing (not as perfect). J and F are means over those frames, J&F their mean.
  An object empty in the ground truth at every evaluated frame gets no score (NaN; the
  official evaluator stops with an AssertionError on such an object).

- Concept segmentation ("every instance of a prompt") gives predictions no object ids, so
  ``score_concept_video`` first matches ground-truth objects one-to-one to predictions
  (``assign_predictions``: Hungarian on mean J over the evaluated frames, within a
  category, with "no prediction" allowed when an empty mask scores higher) and then scores
  the aligned masks with ``score_video``.

Everything here is in-memory numpy + cv2 (the training pipeline calls it directly);
``training.evaluate`` reads prediction and ground-truth files and applies the same protocol.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
from scipy.optimize import linear_sum_assignment

DEFAULT_BOUND_TH = 0.008
_FORBIDDEN = 1e9  # assignment cost of a disallowed (object, prediction) pair
_TIE_TO_EMPTY = 1e-9  # an empty mask wins a tie: no credit-less prediction is matched


def _check_masks(pred: np.ndarray, gt: np.ndarray) -> None:
    if pred.ndim != 2 or pred.shape != gt.shape:
        raise ValueError(f"expected two [H, W] masks of one shape, got {pred.shape} and {gt.shape}")


def region_similarity(pred: np.ndarray, gt: np.ndarray) -> float:
    """J: IoU of two ``[H, W]`` boolean masks; 1.0 when both are empty."""
    _check_masks(pred, gt)
    pred, gt = pred.astype(bool, copy=False), gt.astype(bool, copy=False)
    union = np.count_nonzero(pred | gt)
    if union == 0:
        return 1.0
    return np.count_nonzero(pred & gt) / union


def boundary_map(mask: np.ndarray) -> np.ndarray:
    """1-pixel-wide boundary of a ``[H, W]`` mask (DAVIS ``seg2bmap`` at full size).

    A pixel is on the boundary when it differs from its right, lower or lower-right
    neighbour, so boundaries sit half a pixel towards the origin from the true edge.
    """
    seg = mask.astype(bool)
    east = np.zeros_like(seg)
    south = np.zeros_like(seg)
    south_east = np.zeros_like(seg)
    east[:, :-1] = seg[:, 1:]
    south[:-1, :] = seg[1:, :]
    south_east[:-1, :-1] = seg[1:, 1:]
    boundary = (seg ^ east) | (seg ^ south) | (seg ^ south_east)
    boundary[-1, :] = seg[-1, :] ^ east[-1, :]
    boundary[:, -1] = seg[:, -1] ^ south[:, -1]
    boundary[-1, -1] = False
    return boundary


def _disk(radius: int) -> np.ndarray:
    """``uint8`` disk of the given radius, equal to ``skimage.morphology.disk(radius)``."""
    offsets = np.arange(-radius, radius + 1)
    xs, ys = np.meshgrid(offsets, offsets)
    return (xs**2 + ys**2 <= radius**2).astype(np.uint8)


def boundary_radius(shape: tuple[int, ...], bound_th: float = DEFAULT_BOUND_TH) -> int:
    """Dilation radius in pixels: ``ceil(bound_th * diagonal)``, or ``bound_th`` itself when
    it is >= 1 (an absolute pixel tolerance), as in DAVIS."""
    if bound_th >= 1:
        return int(bound_th)
    return int(math.ceil(bound_th * math.hypot(shape[0], shape[1])))


def boundary_f_measure(pred: np.ndarray, gt: np.ndarray, bound_th: float = DEFAULT_BOUND_TH) -> float:
    """F: boundary F-measure of two ``[H, W]`` boolean masks (see the module docstring)."""
    _check_masks(pred, gt)
    pred_boundary = boundary_map(pred)
    gt_boundary = boundary_map(gt)
    num_pred = np.count_nonzero(pred_boundary)
    num_gt = np.count_nonzero(gt_boundary)
    if num_pred == 0 and num_gt == 0:
        return 1.0
    if num_pred == 0 or num_gt == 0:
        return 0.0
    disk = _disk(boundary_radius(pred.shape, bound_th))
    pred_dilated = cv2.dilate(pred_boundary.astype(np.uint8), disk).astype(bool)
    gt_dilated = cv2.dilate(gt_boundary.astype(np.uint8), disk).astype(bool)
    precision = np.count_nonzero(pred_boundary & gt_dilated) / num_pred
    recall = np.count_nonzero(gt_boundary & pred_dilated) / num_gt
    if precision + recall == 0:
        return 0.0
    return 2 * precision * recall / (precision + recall)


def evaluated_frames(num_frames: int, skip_first_last: bool = True) -> range:
    """Indices of the frames that are scored among ``num_frames`` annotated frames."""
    if skip_first_last:
        if num_frames < 3:
            raise ValueError(f"skipping the first and last frames needs >= 3 annotated frames, got {num_frames}")
        return range(1, num_frames - 1)
    if num_frames < 1:
        raise ValueError("no annotated frame to evaluate")
    return range(num_frames)


def first_scored_frame(gt_present: np.ndarray, pred_present: np.ndarray) -> int | None:
    """Index of the first scored frame among an object's evaluated frames (official SA-V rule).

    Args:
        gt_present: ``[E]`` bool, the object is non-empty in the ground truth at each evaluated frame.
        pred_present: ``[E]`` bool, the same for the prediction.

    Returns:
        The first index where either is non-empty (the official evaluator adds the object to its
        running set there), or None when the ground truth is empty at every evaluated frame.
    """
    gt_present, pred_present = np.asarray(gt_present, bool), np.asarray(pred_present, bool)
    if gt_present.shape != pred_present.shape or gt_present.ndim != 1:
        raise ValueError(f"expected two [E] presence vectors, got {gt_present.shape} and {pred_present.shape}")
    if not gt_present.any():
        return None
    return int(np.argmax(gt_present | pred_present))


@dataclass(frozen=True)
class VideoScore:
    """Per-object scores of one video, in [0, 1] (official SA-V rule, see the module docstring).

    Attributes:
        j: ``[O]`` float64, each object's J averaged over its scored frames; NaN when unscored.
        f: ``[O]`` float64, each object's F averaged over its scored frames; NaN when unscored.
        num_frames: number of evaluated frames (annotated frames minus the first and last).
        scored_frames: ``[O]`` int64, frames each object was scored on (0: unscored).
    """

    j: np.ndarray
    f: np.ndarray
    num_frames: int
    scored_frames: np.ndarray

    @property
    def jf(self) -> np.ndarray:
        """``[O]`` per-object J&F, the mean of J and F."""
        return (self.j + self.f) / 2

    @property
    def scored(self) -> np.ndarray:
        """``[O]`` bool, objects with a score (ground truth non-empty at some evaluated frame)."""
        return self.scored_frames > 0


def _presence(masks: np.ndarray) -> np.ndarray:
    """``[..., F, H, W]`` bool -> ``[..., F]`` bool, frame has any foreground pixel."""
    return masks.any(axis=(-2, -1))


def score_video(
    gt_masks: np.ndarray,
    pred_masks: np.ndarray,
    skip_first_last: bool = True,
    bound_th: float = DEFAULT_BOUND_TH,
) -> VideoScore:
    """Score aligned masklets: prediction ``o`` is compared with ground-truth object ``o``.

    Args:
        gt_masks: ``[O, F, H, W]`` bool, the annotated frames of one video.
        pred_masks: ``[O, F, H, W]`` bool, the predictions for the same frames.
        skip_first_last: drop the first and last of the ``F`` frames (DAVIS / SA-V).
        bound_th: boundary tolerance as a fraction of the image diagonal.
    """
    if gt_masks.ndim != 4 or gt_masks.shape != pred_masks.shape:
        raise ValueError(f"expected two [O, F, H, W] arrays of one shape, got {gt_masks.shape} and {pred_masks.shape}")
    num_objects, num_frames = gt_masks.shape[:2]
    frames = list(evaluated_frames(num_frames, skip_first_last))
    j = np.full(num_objects, np.nan)
    f = np.full(num_objects, np.nan)
    scored_frames = np.zeros(num_objects, dtype=np.int64)
    for obj in range(num_objects):
        start = first_scored_frame(_presence(gt_masks[obj, frames]), _presence(pred_masks[obj, frames]))
        if start is None:
            continue
        scored = frames[start:]
        j[obj] = np.mean([region_similarity(pred_masks[obj, t], gt_masks[obj, t]) for t in scored])
        f[obj] = np.mean([boundary_f_measure(pred_masks[obj, t], gt_masks[obj, t], bound_th) for t in scored])
        scored_frames[obj] = len(scored)
    return VideoScore(j=j, f=f, num_frames=len(frames), scored_frames=scored_frames)


def mean_region_similarity(gt_masks: np.ndarray, pred_masks: np.ndarray, frames: range | list[int]) -> np.ndarray:
    """``[O, P]`` official-rule mean J over ``frames`` between every ground-truth object and every prediction.

    Args:
        gt_masks: ``[O, F, H, W]`` bool.
        pred_masks: ``[P, F, H, W]`` bool (``P`` may differ from ``O``).
        frames: indices into the ``F`` axis (the evaluated frames).

    Returns:
        Mean J from the first scored frame on (``first_scored_frame``); 0 for an object whose
        ground truth is empty at every frame of ``frames`` (it is not scored at all).
    """
    if gt_masks.ndim != 4 or pred_masks.ndim != 4 or gt_masks.shape[1:] != pred_masks.shape[1:]:
        raise ValueError(f"expected [O, F, H, W] and [P, F, H, W] arrays, got {gt_masks.shape} and {pred_masks.shape}")
    frames = list(frames)
    result = np.zeros((gt_masks.shape[0], pred_masks.shape[0]))
    for obj in range(gt_masks.shape[0]):
        gt_present = _presence(gt_masks[obj, frames])
        for pred in range(pred_masks.shape[0]):
            start = first_scored_frame(gt_present, _presence(pred_masks[pred, frames]))
            if start is not None:
                values = [region_similarity(pred_masks[pred, t], gt_masks[obj, t]) for t in frames[start:]]
                result[obj, pred] = np.mean(values)
    return result


def assign_predictions(mean_j: np.ndarray, empty_j: np.ndarray, allowed: np.ndarray) -> list[int | None]:
    """One-to-one assignment of ``O`` ground-truth objects to ``P`` candidate predictions.

    Args:
        mean_j: ``[O, P]`` mean J of each (object, prediction) pair.
        empty_j: ``[O]`` mean J of each object against an all-empty prediction.
        allowed: ``[O, P]`` bool, pairs that may be matched (same category).

    Returns:
        For each object, the index of its prediction, or None when it is best left empty.
        Maximises the summed mean J; a prediction that scores no better than an empty mask
        (a tie) is not matched.
    """
    num_objects, num_preds = mean_j.shape
    cost = np.full((num_objects, num_preds + num_objects), _FORBIDDEN)
    cost[:, :num_preds] = np.where(allowed, -mean_j, _FORBIDDEN)
    cost[np.arange(num_objects), num_preds + np.arange(num_objects)] = -empty_j - _TIE_TO_EMPTY
    rows, cols = linear_sum_assignment(cost)
    assignment: list[int | None] = [None] * num_objects
    for row, col in zip(rows, cols):
        assignment[row] = int(col) if col < num_preds else None
    return assignment


def score_concept_video(
    gt_masks: np.ndarray,
    pred_masks: np.ndarray,
    gt_categories: list[str] | None = None,
    pred_categories: list[str] | None = None,
    skip_first_last: bool = True,
    bound_th: float = DEFAULT_BOUND_TH,
) -> VideoScore:
    """In-memory version of the protocol for the training pipeline (no files).

    Args:
        gt_masks: ``[O, F, H, W]`` bool ground truth on the annotated frames.
        pred_masks: ``[P, F, H, W]`` bool predictions on the same frames, unordered.
        gt_categories / pred_categories: optional prompt per object; when given, only
            predictions of an object's category may be matched to it.

    Returns:
        Per-ground-truth-object scores in [0, 1], in ground-truth order.
    """
    frames = evaluated_frames(gt_masks.shape[1], skip_first_last)
    mean_j = mean_region_similarity(gt_masks, pred_masks, frames)
    empty_j = mean_region_similarity(gt_masks, np.zeros_like(gt_masks[:1]), frames)[:, 0]
    allowed = np.ones(mean_j.shape, dtype=bool)
    if gt_categories is not None:
        if pred_categories is None or (len(gt_categories), len(pred_categories)) != mean_j.shape:
            raise ValueError("categories must be given for both ground truth and predictions, one per object")
        allowed = np.array([[g == p for p in pred_categories] for g in gt_categories], dtype=bool).reshape(mean_j.shape)
    assignment = assign_predictions(mean_j, empty_j, allowed)
    aligned = np.stack([np.zeros_like(gt_masks[o]) if p is None else pred_masks[p] for o, p in enumerate(assignment)])
    return score_video(gt_masks, aligned, skip_first_last, bound_th)
