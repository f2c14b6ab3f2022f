"""SA-V's official J&F of one video's predictions, object by object, and the means over objects and videos.

Scoring is the official one (facebookresearch/sam2 ``sav_dataset/utils/sav_benchmark.py``; parity tests in
``tests/training/test_sav_official_parity.py``): each object's annotated frames minus the first and last
(JSON predictions: restricted to the frames they cover) are its evaluated frames; it is scored from the
first evaluated frame where it is non-empty in the ground truth or in the prediction onwards
(``training.metrics.first_scored_frame``); an object empty in the ground truth at every evaluated frame is
not scored (listed under ``unscored``). Runtime JSON predictions are matched one-to-one to the ground
truth first (``training.metrics.assign_predictions``); SA-V PNG folders are read by ground-truth id.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pycocotools import mask as mask_utils

from efficient_sam3.masks import rle_area
from training.masklet_io import Masklet, PredictionVideo, load_pred_png_dir
from training.metrics import (
    DEFAULT_BOUND_TH,
    assign_predictions,
    boundary_f_measure,
    evaluated_frames,
    first_scored_frame,
    region_similarity,
)


@dataclass(frozen=True)
class ObjectResult:
    obj_id: int
    category: str | None
    pred_obj_id: int | None  # None: scored against an empty prediction
    j: float  # 0-100
    f: float  # 0-100
    num_frames: int  # frames scored (from the first where ground truth or prediction is non-empty)


class _MeanScores(ABC):
    """J, F and J&F (0-100) averaged over the objects listed by ``all_objects``."""

    @property
    @abstractmethod
    def all_objects(self) -> list[ObjectResult]: ...

    @property
    def j(self) -> float:
        return float(np.mean([o.j for o in self.all_objects]))

    @property
    def f(self) -> float:
        return float(np.mean([o.f for o in self.all_objects]))

    @property
    def jf(self) -> float:
        return (self.j + self.f) / 2


@dataclass(frozen=True)
class VideoResult(_MeanScores):
    """``objects``: scored objects; ``unscored``: ids of objects empty in the ground truth at every
    evaluated frame (no score, as in the official evaluator, which fails on them)."""

    video_id: str
    objects: list[ObjectResult]
    unscored: tuple[int, ...] = ()
    matched_masks: dict[int, Masklet] = field(default_factory=dict, repr=False, compare=False)

    @property
    def all_objects(self) -> list[ObjectResult]:
        return self.objects


@dataclass(frozen=True)
class EvalResult(_MeanScores):
    """``per_video`` scored videos; ``skipped`` maps a video id (or file) to why it was not scored.
    Overall scores average all scored objects of all videos, as the SA-V benchmark does."""

    per_video: dict[str, VideoResult]
    skipped: dict[str, str]

    @property
    def all_objects(self) -> list[ObjectResult]:
        return [o for v in self.per_video.values() for o in v.objects]


def _rle_iou(pred: dict | None, gt: dict) -> float:
    """J between two RLEs (None = empty prediction); 1 when both are empty."""
    gt_area, pred_area = rle_area(gt), rle_area(pred)
    if gt_area == 0 and pred_area == 0:
        return 1.0
    if gt_area == 0 or pred_area == 0:
        return 0.0
    return float(mask_utils.iou([pred], [gt], [0])[0, 0])


def _scored_frames(gt: Masklet, pred: Masklet | None, frames: list[int]) -> list[int]:
    """The official rule: ``frames`` from the first where ``gt`` or ``pred`` is non-empty (``[]``
    when ``gt`` is empty at all of them)."""
    gt_present = [rle_area(gt.frames[t]) > 0 for t in frames]
    pred_present = [pred is not None and rle_area(pred.frames[t]) > 0 for t in frames]
    start = first_scored_frame(np.array(gt_present, bool), np.array(pred_present, bool))
    return [] if start is None else frames[start:]


def _mean_j(gt: Masklet, pred: Masklet | None, frames: list[int]) -> float:
    scored = _scored_frames(gt, pred, frames)
    return float(np.mean([_rle_iou(None if pred is None else pred.frames[t], gt.frames[t]) for t in scored]))


def _score_object(gt: Masklet, pred: Masklet | None, frames: list[int], bound_th: float) -> ObjectResult:
    j_values, f_values = [], []
    for t in _scored_frames(gt, pred, frames):
        gt_mask = mask_utils.decode(gt.frames[t]).astype(bool)  # [H, W]
        pred_mask = np.zeros_like(gt_mask) if pred is None else mask_utils.decode(pred.frames[t]).astype(bool)
        j_values.append(region_similarity(pred_mask, gt_mask))
        f_values.append(boundary_f_measure(pred_mask, gt_mask, bound_th))
    return ObjectResult(obj_id=gt.obj_id, category=gt.category, pred_obj_id=None if pred is None else pred.obj_id,
                        j=100 * float(np.mean(j_values)), f=100 * float(np.mean(f_values)), num_frames=len(j_values))


def _evaluated(obj: Masklet, skip_first_last: bool) -> list[int]:
    annotated = sorted(obj.frames)
    return [annotated[i] for i in evaluated_frames(len(annotated), skip_first_last)]


def _check_sizes(gt: Masklet, preds: list[Masklet], frames: list[int]) -> None:
    for t in frames:
        sizes = {tuple(gt.frames[t]["size"])} | {tuple(p.frames[t]["size"]) for p in preds}
        if len(sizes) != 1:
            raise ValueError(f"frame {t}: mask sizes differ between ground truth and prediction: {sorted(sizes)}")


def _video_result(video_id: str, gt: list[Masklet], pairs: dict[int, Masklet | None], frames: dict[int, list[int]],
                  bound_th: float) -> VideoResult:
    objects = [_score_object(obj, pairs[obj.obj_id], frames[obj.obj_id], bound_th)
               for obj in gt if obj.obj_id in pairs]
    matched = {obj_id: pred for obj_id, pred in pairs.items() if pred is not None}
    return VideoResult(video_id, objects, tuple(o.obj_id for o in gt if o.obj_id not in pairs), matched)


def evaluate_video(gt: list[Masklet], prediction: PredictionVideo, skip_first_last: bool = True,
                   bound_th: float = DEFAULT_BOUND_TH) -> VideoResult:
    """Match a JSON prediction's objects to ground-truth objects and score every object of one video."""
    if not gt:
        raise ValueError("the ground truth has no objects")
    preds = prediction.masklets
    if any(o.category is not None for o in gt) and any(p.category is None for p in preds):
        raise ValueError("ground truth has masklet_category but the prediction does not")
    frames = {}
    for obj in gt:
        frames[obj.obj_id] = [t for t in _evaluated(obj, skip_first_last) if t in prediction.frame_indices]
        if not frames[obj.obj_id]:
            raise ValueError(f"object {obj.obj_id}: none of its evaluated frames is in the prediction's frame_indices")
        _check_sizes(obj, preds, frames[obj.obj_id])
    scored = [o for o in gt if any(rle_area(o.frames[t]) > 0 for t in frames[o.obj_id])]
    mean_j = np.array([[_mean_j(o, p, frames[o.obj_id]) for p in preds] for o in scored])
    mean_j = mean_j.reshape(len(scored), len(preds))  # [O, P], also when O or P is 0
    empty_j = np.array([_mean_j(o, None, frames[o.obj_id]) for o in scored])
    allowed = np.array([[o.category is None or o.category == p.category for p in preds] for o in scored], dtype=bool)
    assignment = assign_predictions(mean_j, empty_j, allowed.reshape(mean_j.shape))
    pairs = {o.obj_id: None if index is None else preds[index] for o, index in zip(scored, assignment)}
    return _video_result(prediction.video_id, gt, pairs, frames, bound_th)


def evaluate_png_video(gt: list[Masklet], pred_dir: Path, skip_first_last: bool = True,
                       bound_th: float = DEFAULT_BOUND_TH) -> VideoResult:
    """Score an SA-V PNG prediction folder whose object folders are named like the ground truth's."""
    if not gt:
        raise ValueError("the ground truth has no objects")
    frames = {obj.obj_id: _evaluated(obj, skip_first_last) for obj in gt}
    preds = load_pred_png_dir(pred_dir, frames)
    for obj in gt:
        _check_sizes(obj, [preds[obj.obj_id]], frames[obj.obj_id])
    pairs = {o.obj_id: preds[o.obj_id] for o in gt if any(rle_area(o.frames[t]) > 0 for t in frames[o.obj_id])}
    return _video_result(pred_dir.name, gt, pairs, frames, bound_th)
