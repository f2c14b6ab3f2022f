"""Per-query predictions -> detections at the frame's own size (numpy + cv2).

score_prob = sigmoid(pred_logits) * sigmoid(presence_logit); queries with score_prob > score_threshold
are candidates, best first. Mask NMS runs at the model's mask resolution (the [144, 144] logits > 0;
the frame is resized to a square per axis, so IoU there approximates IoU at frame size): a candidate
whose IoU with a better kept mask exceeds ``nms_iou_threshold`` is dropped, as is one with an empty
mask. Each kept query's logits are then resized bilinearly (cv2, half-pixel centres like torch's
align_corners=False) to the frame size and thresholded at 0 (dropped if that leaves nothing).
The box is the mask's tight bounding box in pixels (``efficient_sam3.masks.mask_box``), (x1, y1, x2, y2) with x2/y2 exclusive (pixel
edges, so a one-pixel mask at (x, y) has the box (x, y, x + 1, y + 1)). Every mask is non-empty, so
the box always comes from the mask. Cost grows with the mask resolution for NMS and with the frame
size only for the kept objects.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from efficient_sam3.masks import mask_box
from efficient_sam3.tracker import mask_iou_matrix
from runtime.backends.base import DecodeOutput


@dataclass(frozen=True)
class PostprocessConfig:
    score_threshold: float = 0.5
    nms_iou_threshold: float = 0.7

    def __post_init__(self) -> None:
        if not 0.0 <= self.score_threshold < 1.0:
            raise ValueError(f"score_threshold must be in [0, 1), got {self.score_threshold}")
        if not 0.0 < self.nms_iou_threshold <= 1.0:
            raise ValueError(f"nms_iou_threshold must be in (0, 1], got {self.nms_iou_threshold}")


@dataclass(frozen=True)
class Detection:
    """One object found in one frame: mask [H, W] bool at frame size; coarse_mask [h, w] bool at the
    model's mask resolution (for NMS and tracking); box_xyxy [4] float pixels; score_prob in (0, 1);
    query = the decoder query it came from."""

    prompt: str
    mask: np.ndarray
    coarse_mask: np.ndarray
    box_xyxy: np.ndarray
    score_prob: float
    query: int


def sigmoid(logits: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.asarray(logits, dtype=np.float64)))


def score_probs(output: DecodeOutput) -> np.ndarray:
    """[Q] probability that each query is an instance of the prompt and the prompt is present."""
    return sigmoid(output.pred_logits) * float(sigmoid(output.presence_logit))


def resize_mask_logits(mask_logits: np.ndarray, frame_size: tuple[int, int]) -> np.ndarray:
    """[h, w] float logits -> [H, W] float32 logits at ``frame_size`` = (H, W), bilinear."""
    height, width = frame_size
    return cv2.resize(np.ascontiguousarray(mask_logits, dtype=np.float32), (width, height),
                      interpolation=cv2.INTER_LINEAR)


def nms_keep(masks: list[np.ndarray], iou_threshold: float) -> list[int]:
    """Greedy mask NMS over masks sorted best first -> indices kept (IoU with a kept one <= threshold)."""
    iou = mask_iou_matrix(masks, masks)  # [C, C]
    kept: list[int] = []
    for index in range(len(masks)):
        if not kept or iou[index, kept].max() <= iou_threshold:
            kept.append(index)
    return kept


def detections_from_output(output: DecodeOutput, prompt: str, frame_size: tuple[int, int],
                           config: PostprocessConfig) -> list[Detection]:
    """Threshold, mask NMS, upsample the survivors; best score first."""
    probs = score_probs(output)
    order = np.argsort(-probs, kind="stable")
    candidates = [int(q) for q in order if probs[q] > config.score_threshold and (output.pred_masks[q] > 0).any()]
    coarse = [output.pred_masks[q] > 0 for q in candidates]  # [h, w] bool each
    detections = []
    for index in nms_keep(coarse, config.nms_iou_threshold):
        query = candidates[index]
        mask = resize_mask_logits(output.pred_masks[query], frame_size) > 0  # [H, W] bool
        if mask.any():
            detections.append(Detection(prompt=prompt, mask=mask, coarse_mask=coarse[index], box_xyxy=mask_box(mask),
                                        score_prob=float(probs[query]), query=query))
    return detections
